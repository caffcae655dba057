#!/bin/bash
#SBATCH --job-name=square
#SBATCH --output=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%A_%a.out
#SBATCH --error=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%A_%a.err
#SBATCH --time=30
#SBATCH --mem=512

set -eo pipefail
umask 077
export PYTHONPATH=/opt/slurm_sdk_dev/src"${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -c 'from slurm.node.runner import run; run()' /home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d
