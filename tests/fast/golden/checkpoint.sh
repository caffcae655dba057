#!/bin/bash
#SBATCH --job-name=train
#SBATCH --output=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.out
#SBATCH --error=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.err
#SBATCH --time=00:10:00
#SBATCH --signal=B:USR2@90
#SBATCH --open-mode=append

set -eo pipefail
umask 077
exec python3 -c 'from slurm.node.runner import run; run()' --max-requeues 5 /home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d
