"""Shared pytest setup: the dev-cluster plugin (markers, fixtures, stack lifecycle). See harness/pytest_plugin.py.

An install of this project (`pip install -e '.[dev]'`, as setup.sh does) registers the plugin through its
``pytest11`` entry point (the test kit); loading it here as well would register it twice. A venv made
before the entry point existed, or plugin autoloading switched off, still gets it from here.
"""

import os
from importlib.metadata import entry_points

_AUTOLOADED = not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") and any(
    ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11")
)
pytest_plugins = [] if _AUTOLOADED else ["harness.pytest_plugin"]
