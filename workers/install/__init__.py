"""Install tools: fetch, verify (sha256) and convert the model weights that need an install
step, into ``VISIONQ_MODELS_DIR`` (``visionq install-models``, ``workers.commands``).

Only the installer imports this package; the worker's runtime finds the results through
``workers.weights`` (where each model's files are and their pins) and never imports it.
"""
