"""An example downstream project: Slurm tasks of its own, tested with slurm-sdk's test kit."""
