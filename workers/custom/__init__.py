"""Custom models from the folder (``visionq.custom_models``) on the ``custom`` queue.

``preprocess`` fits an image to the model input, ``runtimes`` runs ONNX / TFLite /
TensorFlow graphs, ``decode`` turns raw outputs into labelled boxes or scores (YOLOv5,
YOLOv8 and SSD layouts, NMS), ``model`` puts them together as a ``workers.model`` plugin and
``cache`` keeps the recently used ones loaded, a few at a time.
"""
