#!/bin/bash
#SBATCH --job-name=add
#SBATCH --output=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.out
#SBATCH --error=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.err

set -eo pipefail
umask 077
exec python3 -c 'from slurm.node.runner import run; run()' /home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d
