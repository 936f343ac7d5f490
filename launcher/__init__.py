"""``visionq up``: every role on one machine, supervised (``launcher.up``; its command:
``launcher.commands``).

Why a folder of its own: ``up`` starts the API, the workers, the exporter and the rest, so
it knows every role; in the core (``visionq/``) it made the core import its own roles, and
in any role folder it would make that role import its siblings.  Here it imports the roles
and the core and is imported by none of them, so the folders' import graph stays a ladder
(``tests/test_layering.py``): ``visionq`` at the bottom, the roles above it, ``launcher`` on
top.  Its subcommand reaches ``visionq`` through the ``visionq.commands`` entry points.
"""
