"""The ``mediabroker`` command line; `main` is its entry point.

``main`` builds the parser, sets up logging and maps failures to exit
statuses; each sub-command lives in a module of its own: ``serve`` (the
daemon), ``inspect`` (devices, stats), ``media`` (snapshot, record),
``fakes`` (fake-device) and ``demo``. ``options`` and ``device_choice`` are
what they share.
"""

from mediabroker.cli.main import main

__all__ = ["main"]
