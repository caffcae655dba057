#!/bin/bash
# Entrypoint for every role of the dev cluster image. Usage: entrypoint.sh init|slurmctld|slurmd|login
set -euo pipefail

SECRETS=/etc/slurm-sdk          # named volume: written by `init`, read-only for the other roles
JOB_USER=sdk

log() { echo "[$(hostname) $1] ${*:2}"; }

# One-shot: per-stack secrets and the job user's home, created once per volume, never in an image.
init() {
  mkdir -p "$SECRETS/munge" "$SECRETS/ssh"
  if [ ! -s "$SECRETS/munge/munge.key" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$SECRETS/munge/munge.key" status=none
    log init "generated munge key"
  fi
  if [ ! -s "$SECRETS/ssh/host_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "slurm-sdk-dev host" -f "$SECRETS/ssh/host_ed25519"
    log init "generated SSH host key"
  fi
  if [ ! -s "$SECRETS/ssh/client_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "slurm-sdk-dev client" -f "$SECRETS/ssh/client_ed25519"
    log init "generated SSH client key"
  fi
  if [ ! -s "$SECRETS/db/password" ]; then
    mkdir -p "$SECRETS/db"
    head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$SECRETS/db/password"
  fi
  chmod 700 "$SECRETS/munge" "$SECRETS/ssh" "$SECRETS/db"
  chmod 600 "$SECRETS/munge/munge.key" "$SECRETS/ssh/host_ed25519" "$SECRETS/ssh/client_ed25519"
  install -d -o "$JOB_USER" -g "$JOB_USER" -m 755 "/home/$JOB_USER"
  install -d -o "$JOB_USER" -g "$JOB_USER" -m 700 "/home/$JOB_USER/.ssh"
  install -o "$JOB_USER" -g "$JOB_USER" -m 600 "$SECRETS/ssh/client_ed25519.pub" "/home/$JOB_USER/.ssh/authorized_keys"
  log init "secrets ready"
}

# Accounting is on when the `accounting` profile runs a slurmdbd service in this stack; every role
# writes the same answer into slurm.conf's include so the config hash matches across nodes.
configure_accounting() {
  if getent hosts slurmdbd >/dev/null; then
    # gres/gpu as a TRES of its own (sacct AllocTRES); Slurm allows that only with slurmdbd.
    printf 'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=slurmdbd\nAccountingStorageTRES=gres/gpu\n' \
      > /etc/slurm/accounting.conf
  else
    printf 'AccountingStorageType=accounting_storage/none\n' > /etc/slurm/accounting.conf
  fi
}

# The defaults this cluster runs with (slurm.conf's last include). A fresh container starts with the dev
# defaults; a restarted one keeps what it had (harness/faults.py may have switched it, and every node
# must keep agreeing). The harness resets it on every container when a fault ends.
configure_defaults() {
  [ -e /etc/slurm/faults.conf ] || cp /etc/slurm/defaults/dev.conf /etc/slurm/faults.conf
}

# MariaDB inside the slurmdbd container (socket only, data in the container: a test cluster's
# accounting lives as long as the stack), then slurmdbd in the foreground.
run_slurmdbd() {
  local pass; pass=$(cat "$SECRETS/db/password")
  install -d -o mysql -g mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --skip-test-db >/dev/null
  runuser -u mysql -- mariadbd --skip-networking --socket=/run/mysqld/mysqld.sock &
  for _ in $(seq 1 100); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  umask 077
  cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=slurmdbd
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$pass
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
CONF
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  exec slurmdbd -D
}

start_munge() {
  configure_accounting
  configure_defaults
  install -o munge -g munge -m 0400 "$SECRETS/munge/munge.key" /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
}

# A node name is one container. `docker compose up --scale c2=2` starts a second container with the same
# hostname, which Slurm would take for the same node. Docker's DNS may list a new container only a moment
# after its process starts, so a watcher asks for the first DUPLICATE_WATCH_SECONDS (in the background:
# a normal start waits for nothing) and, on seeing another container, kills this one with the reason
# (exit 137), so `up --wait` fails naming why. A container running longer than that is left alone: the
# refused one is the newcomer.
DUPLICATE_WATCH_SECONDS=15
watch_for_duplicate_node() {
  local node=$1 main=$2 addresses
  for _ in $(seq $((DUPLICATE_WATCH_SECONDS * 2))); do
    if ! addresses=$(node_peers.py "$node" 2>&1); then   # no Docker DNS (another runtime): cannot tell
      log slurmd "warning: not checked whether another container runs node $node: $addresses"
      return 0
    fi
    addresses=$(sort <<<"$addresses" | paste -sd ' ')
    if [ "$(wc -w <<<"$addresses")" -gt 1 ]; then
      echo "error: node $node is already run by another container ($node resolves to: $addresses):" \
           "\`docker compose up --scale\` is not supported, one container per compute node." \
           "fix: \`docker compose up --scale $node=1\` (or drop --scale)" >&2
      kill -KILL "$main"
      return 1
    fi
    sleep 0.5
  done
}

case "${1:-login}" in
  init)
    init ;;
  slurmdbd)
    start_munge
    install -d -o slurm -g slurm /var/log/slurm
    run_slurmdbd ;;
  slurmctld)
    start_munge
    install -d -o slurm -g slurm /var/spool/slurmctld /var/log/slurm
    exec slurmctld -D -i ;;   # -D logs to stderr (compose logs) and to /var/log/slurm
  slurmd)
    watch_for_duplicate_node "$(hostname)" $$ &   # $$: this process, slurmd after the exec below
    start_munge
    exec slurmd -D -N "$(hostname)" ;;
  login)
    start_munge
    install -m 600 "$SECRETS/ssh/host_ed25519" /etc/ssh/ssh_host_ed25519_key
    install -m 644 "$SECRETS/ssh/host_ed25519.pub" /etc/ssh/ssh_host_ed25519_key.pub
    exec /usr/sbin/sshd -D -e ;;
  *)
    exec "$@" ;;
esac
