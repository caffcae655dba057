#!/bin/bash
# Readiness per role, used by compose healthchecks so that `docker compose up --wait` returns
# only when the cluster can take jobs.
#
# Until a container has first been healthy, one check keeps trying (every 0.1 s, for up to 8 s, within
# compose.yaml's 10 s timeout), so the container turns healthy when its role is ready rather than at the
# next 1 s healthcheck tick (Docker 20.10 has no start_interval). From then on each check tries once:
# the steady-state cost is unchanged. The entrypoint runs `healthcheck.sh reset` when a container
# (re)starts. The two variables below exist for tests/fast/test_healthcheck.py.
set -uo pipefail
HEALTHY_ONCE=${SLURM_SDK_HEALTHY_MARK:-/run/slurm-sdk-healthy-once}
FIRST_WAIT_SECONDS=${SLURM_SDK_HEALTH_FIRST_WAIT:-8}   # whole seconds
POLL_SECONDS=0.1

ready() {
  case "$1" in
    slurmctld)
      scontrol ping | grep -q 'is UP' || return 1
      # With accounting: ready once slurmctld has registered with slurmdbd (from then on sacct sees jobs).
      if grep -q slurmdbd /etc/slurm/accounting.conf; then
        [ -n "$(sacctmgr -n -P show cluster dev format=controlhost 2>/dev/null)" ] || return 1
      fi ;;
    slurmd)
      # Registered and usable (idle, or busy with jobs later on); not down, drained or unknown.
      local state
      state=$(sinfo -h -N -n "$(cat /run/slurm-sdk-node)" -o '%t' | awk 'NR == 1') || return 1  # a line per partition
      [[ "$state" =~ ^(idle|mix|alloc|comp)$ ]] ;;
    login)
      munge -n | unmunge >/dev/null || return 1
      ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
          -i /etc/slurm-sdk/ssh/client_ed25519 sdk@127.0.0.1 true ;;
    slurmdbd)
      sacctmgr -n -P show cluster format=cluster >/dev/null ;;
    *) echo "unknown role $1" >&2; exit 2 ;;
  esac
}

# Whether something accepts connections on host:port, with no process forked (bash's /dev/tcp). The
# start-up wait checks this before the real check, so polling costs next to nothing while the daemon is
# still starting (six containers polling sinfo/sacctmgr 10 times a second took CPU from MariaDB).
listening() {
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  exec 3>&-
}

started() {
  case "$1" in
    slurmctld) listening 127.0.0.1 6817 ;;
    slurmd) listening 127.0.0.1 6818 && listening slurmctld 6817 ;;
    login) listening 127.0.0.1 22 ;;
    slurmdbd) listening 127.0.0.1 6819 ;;
  esac
}

if [ "$1" = reset ]; then   # a (re)started container: not known healthy yet
  rm -f "$HEALTHY_ONCE"
  exit
fi
if [ -e "$HEALTHY_ONCE" ]; then
  ready "$1"
  exit
fi
deadline=$(( ${EPOCHREALTIME/./} + FIRST_WAIT_SECONDS * 1000000 ))
until started "$1" && ready "$1" 2>/dev/null; do
  if (( ${EPOCHREALTIME/./} > deadline )); then
    # Once more, its errors shown (docker inspect's health log); not while the daemon does not even
    # listen: a Slurm client then retries for seconds and the check would overrun its timeout.
    started "$1" || { echo "$1: not listening yet" >&2; exit 1; }
    ready "$1" || exit 1
    break
  fi
  sleep "$POLL_SECONDS"
done
touch "$HEALTHY_ONCE"
