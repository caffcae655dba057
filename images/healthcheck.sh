#!/bin/bash
# Readiness per role, used by compose healthchecks so that `docker compose up --wait` returns
# only when the cluster can take jobs.
set -euo pipefail
case "$1" in
  slurmctld)
    scontrol ping | grep -q 'is UP'
    # With accounting: ready once slurmctld has registered with slurmdbd (from then on sacct sees jobs).
    if grep -q slurmdbd /etc/slurm/accounting.conf; then
      [ -n "$(sacctmgr -n -P show cluster dev format=controlhost 2>/dev/null)" ]
    fi ;;
  slurmd)
    # Registered and usable (idle, or busy with jobs later on); not down, drained or unknown.
    state=$(sinfo -h -N -n "$(cat /run/slurm-sdk-node)" -o '%t' | awk 'NR == 1')   # one line per partition
    [[ "$state" =~ ^(idle|mix|alloc|comp)$ ]] ;;
  login)
    munge -n | unmunge >/dev/null
    ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -i /etc/slurm-sdk/ssh/client_ed25519 sdk@127.0.0.1 true ;;
  slurmdbd)
    sacctmgr -n -P show cluster format=cluster >/dev/null ;;
  *) echo "unknown role $1" >&2; exit 2 ;;
esac
