"""Shared pytest setup. The dev-cluster plugin (markers, fixtures, stack lifecycle) is not named here: this
repository's tests get it exactly as any project does, from the installed slurm-dev-cluster distribution."""
