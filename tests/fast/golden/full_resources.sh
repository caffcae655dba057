#!/bin/bash
#SBATCH --job-name=train
#SBATCH --output=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.out
#SBATCH --error=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.err
#SBATCH --time=1-02:00:00
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --gres=gpu:a100:2
#SBATCH --partition=gpu
#SBATCH --account=proj
#SBATCH --no-requeue
#SBATCH --constraint=fast
#SBATCH --exclusive
#SBATCH --mail-type=END

set -eo pipefail
umask 077
export PYTHONPATH='/opt/code:/shared/my libs'"${PYTHONPATH:+:$PYTHONPATH}"
exec /opt/venv/bin/python -c 'from slurm.node.runner import run; run()' /home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d
