#!/bin/bash
#SBATCH --job-name=add
#SBATCH --output=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.out
#SBATCH --error=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.err

set -eo pipefail
umask 077
exec python3 -m slurm.node.runner /home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d
