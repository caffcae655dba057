#!/bin/bash
# Readiness per role, used by compose healthchecks so that `docker compose up --wait` returns
# only when the cluster can take jobs.
#
# Until a container has first been healthy, one check keeps trying (every 0.1 s, for up to 8 s, within
# compose.yaml's 10 s timeout), so the container turns healthy when its role is ready rather than at the
# next healthcheck tick (every 2 s, compose.yaml; Docker 20.10 has no start_interval). From then on each
# check tries once: the steady-state cost is one quick check per tick. The entrypoint runs
# `healthcheck.sh reset` when a container (re)starts. The SLURM_SDK_* variables below exist for
# tests/fast/test_healthcheck.py: a first wait of a fraction of a second polled every few milliseconds, and
# a stand-in for slurmdbd on a port of its own (so tests on one host never meet another's listener).
#
# Two facts the harness's readiness check (harness/src/slurm_dev_cluster/stack.py READY_CHECK, run over SSH on the login node)
# needs too are answered here only: `healthcheck.sh unready-nodes c1,c2` and `healthcheck.sh cluster-name`.
set -uo pipefail
HEALTHY_ONCE=${SLURM_SDK_HEALTHY_MARK:-/run/slurm-sdk-healthy-once}
FIRST_WAIT_MS=${SLURM_SDK_HEALTH_FIRST_WAIT_MS:-8000}
SLURM_CONF=${SLURM_SDK_SLURM_CONF:-/etc/slurm/slurm.conf}
POLL_SECONDS=${SLURM_SDK_HEALTH_POLL_SECONDS:-0.1}
SLURMDBD_PORT=${SLURM_SDK_SLURMDBD_PORT:-6819}
# The states of a node that is registered and usable (idle, or busy with jobs later on); not down,
# drained, not responding (a `*` suffix) or unknown.
READY_NODE_STATE='^(idle|mix|alloc|comp)$'

cluster_name() {
  awk -F= '$1 == "ClusterName" { print $2 }' "$SLURM_CONF"
}

# This container's slurmctld (slurmctld, or a further cluster's controller: images/multicluster.compose.yaml).
controller() {
  awk -F= '$1 == "SlurmctldHost" { print $2 }' "$SLURM_CONF"
}

# The nodes of $1 (comma-separated) that are not ready, as `node=state ` each (`none`: Slurm does not
# list it); nothing when all are. $2: another cluster's name (`sinfo -M`, which adds a `CLUSTER:` line).
unready_nodes() {
  local -A states=()
  local node state
  while IFS='=' read -r node state; do   # a line per node and partition, all in the same state
    states[$node]=$state
  done < <(sinfo ${2:+-M "$2"} -h -N -n "$1" -o '%N=%t' 2>/dev/null)
  for node in ${1//,/ }; do
    [[ "${states[$node]:-none}" =~ $READY_NODE_STATE ]] || printf '%s=%s ' "$node" "${states[$node]:-none}"
  done
}

ready() {
  case "$1" in
    slurmctld)
      scontrol ping | grep -q 'is UP' || return 1
      # With accounting: ready once slurmctld has registered with slurmdbd (from then on sacct sees jobs).
      if grep -q slurmdbd /etc/slurm/accounting.conf; then
        [ -n "$(sacctmgr -n -P show cluster "$(cluster_name)" format=controlhost 2>/dev/null)" ] || return 1
      fi ;;
    slurmd)
      local node
      node=$(cat /run/slurm-sdk-node) && [ -n "$node" ] || return 1
      [ -z "$(unready_nodes "$node")" ] ;;
    login)
      munge -n | unmunge >/dev/null || return 1
      ssh -q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
          -i /etc/slurm-sdk/ssh/client_ed25519 sdk@127.0.0.1 true ;;
    slurmdbd)
      sacctmgr -n -P show cluster format=cluster >/dev/null ;;
    slurmrestd)   # answers HTTP (a request without a token gets 401); the harness checks a real token
      exec 3<>/dev/tcp/127.0.0.1/6820 || return 1
      printf 'GET /openapi/v3 HTTP/1.0\r\n\r\n' >&3
      local status; read -r -t 5 _ status _ <&3; exec 3>&-
      [[ "$status" =~ ^[1-5][0-9][0-9]$ ]] ;;
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
    slurmd) listening 127.0.0.1 6818 && listening "$(controller)" 6817 ;;
    login) listening 127.0.0.1 22 ;;
    slurmdbd) listening 127.0.0.1 "$SLURMDBD_PORT" ;;
    slurmrestd) listening 127.0.0.1 6820 ;;
  esac
}

case "$1" in
  reset)   # a (re)started container: not known healthy yet
    rm -f "$HEALTHY_ONCE"
    exit ;;
  unready-nodes) unready_nodes "${2:-}" "${3:-}"; exit 0 ;;
  cluster-name) cluster_name; exit ;;
esac
if [ -e "$HEALTHY_ONCE" ]; then
  ready "$1"
  exit
fi
deadline=$(( ${EPOCHREALTIME/./} + FIRST_WAIT_MS * 1000 ))
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
