"""Shared pytest setup: the dev-cluster plugin (markers, fixtures, stack lifecycle). See harness/pytest_plugin.py."""

pytest_plugins = ["harness.pytest_plugin"]
