"""Integration tier: tests against the Docker Compose dev cluster over real SSH (marker ``integration``).

Task functions live in ``jobs.py`` (no pytest import), because the compute nodes import them by reference.
"""
