#!/bin/bash
#SBATCH --job-name=train
#SBATCH --output=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.out
#SBATCH --error=/home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d/slurm-%j.err
#SBATCH --time=00:10:00
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=2

set -eo pipefail
umask 077
srun --kill-on-bad-exit=1 --cpus-per-task=2 python3 -c 'from slurm.node.runner import run; run()' --rank /home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d || echo "[slurm-sdk] srun exited with status $?" >&2
exec python3 -c 'from slurm.node.runner import run; run()' --gather-ranks 4 /home/sdk/.slurm-sdk/jobs/20250101-000000-train-0a1b2c3d
