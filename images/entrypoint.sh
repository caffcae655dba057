#!/bin/bash
# Entrypoint for every role of the dev cluster image. Usage: entrypoint.sh init|slurmctld|slurmd|login
set -euo pipefail

SECRETS=/etc/slurm-sdk          # named volume: written by `init`, read-only for the other roles
SECRETS_READY=$SECRETS/ready    # written last by `init`: every secret and the job user's home exist
SECRETS_WAIT_SECONDS=60
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
  install -d -m 1777 /scratch   # shared scratch, as on clusters: anyone may create, only owners delete
  install -d -o "$JOB_USER" -g "$JOB_USER" -m 700 "/home/$JOB_USER/.ssh"
  install -o "$JOB_USER" -g "$JOB_USER" -m 600 "$SECRETS/ssh/client_ed25519.pub" "/home/$JOB_USER/.ssh/authorized_keys"
  touch "$SECRETS_READY"
  log init "secrets ready"
}

# The other roles start alongside `init` (compose orders nothing, so no container waits for another's
# exit to be noticed) and wait here for its secrets: a few hundred ms at most.
wait_for_secrets() {
  local _
  for _ in $(seq $((SECRETS_WAIT_SECONDS * 20))); do
    [ -e "$SECRETS_READY" ] && return 0
    sleep 0.05
  done
  echo "error: the stack's secrets ($SECRETS_READY) did not appear within ${SECRETS_WAIT_SECONDS} s." \
       "fix: the one-shot \`init\` service creates them: \`docker compose logs init\`, then \`docker compose up --wait\`" >&2
  exit 1
}

# Accounting is on unless SLURM_SDK_ACCOUNTING=0 (compose.yaml passes the variable that also sets slurmdbd's
# replicas, so every role knows without waiting for slurmdbd to exist); every role writes the same answer
# into slurm.conf's include so the config hash matches across nodes.
configure_accounting() {
  local accounting=${SLURM_SDK_ACCOUNTING:-1}
  if [[ "$accounting" != [01] ]]; then
    echo "error: SLURM_SDK_ACCOUNTING=$accounting: use 1 (accounting, the default) or 0 (none)" >&2
    exit 2
  fi
  if [ "$accounting" = 1 ]; then
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

# MariaDB inside the slurmdbd container (socket only, its database initialised in the image, data in the
# container: a test cluster's accounting lives as long as the stack), then slurmdbd in the foreground.
# MariaDB needs no secret: it starts before the wait for `init`'s, so the two overlap.
start_mariadb() {
  install -d -o mysql -g mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --skip-test-db >/dev/null
  runuser -u mysql -- mariadbd --socket=/run/mysqld/mysqld.sock &
}

run_slurmdbd() {
  local pass; pass=$(cat "$SECRETS/db/password")
  local _ ready=""
  for _ in $(seq 1 1200); do mariadb -e 'select 1' >/dev/null 2>&1 && ready=1 && break; sleep 0.05; done
  if [ -z "$ready" ]; then
    echo "error: MariaDB did not answer on its socket within 60 s; fix: read its log above" \
         "(\`docker compose logs slurmdbd\`), then \`docker compose up --wait\` again" >&2
    exit 1
  fi
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

# With accounting, slurmctld must find slurmdbd answering when it starts: one refused connection and it
# retries only minutes later (sacct would miss every job until then). slurmctld's container starts with
# slurmdbd's (compose orders nothing) and waits here: slurmdbd listens only once its database is open.
SLURMDBD_WAIT_SECONDS=90
wait_for_slurmdbd() {
  grep -q slurmdbd /etc/slurm/accounting.conf || return 0
  wait_for_port slurmdbd 6819 "$SLURMDBD_WAIT_SECONDS" || log slurmctld \
    "warning: slurmdbd did not answer on port 6819 within ${SLURMDBD_WAIT_SECONDS} s; starting anyway:" \
    "jobs run, sacct sees them once slurmctld reconnects (\`docker compose logs slurmdbd\` says why)"
}

# Whether host:port accepts connections within the given seconds, polled every 50 ms.
wait_for_port() {
  local _
  for _ in $(seq $(($3 * 20))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# slurmctld's state volume and the accounting database's volume can part ways (a stack started before
# accounting was the default, or one volume removed by hand); slurmctld then refuses to start with
# "CLUSTER ID MISMATCH". One stack is one cluster, so the state keeps its jobs and takes the database's id.
forget_cluster_id() {
  grep -q slurmdbd /etc/slurm/accounting.conf || return 0
  rm -f /var/spool/slurmctld/clustername
}

start_munge() {
  healthcheck.sh reset   # a restarted container is not known healthy yet
  wait_for_secrets
  configure_accounting
  configure_partitions
  configure_defaults
  install -o munge -g munge -m 0400 "$SECRETS/munge/munge.key" /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
}

# The cluster's shape, from the environment compose.yaml passes to every container (one documented
# setting: SLURM_SDK_NODES, SLURM_SDK_GPUS_PER_NODE, SLURM_SDK_PARTITIONS; README "Topology").
NODE_CPUS=4
NODE_MEMORY_MB=4096
MAX_GPUS_PER_NODE=8
GPUS_PER_NODE=${SLURM_SDK_GPUS_PER_NODE:-2}
PARTITIONS=${SLURM_SDK_PARTITIONS:-debug,batch}
NODE_NAME_FILE=/run/slurm-sdk-node   # read by healthcheck.sh

# Partitions over every compute node, the first one the default. Nodes register themselves (slurmd -Z)
# with the feature `compute`, and the node set of that feature is what each partition holds, so a node
# added later (`--scale compute=N`) joins every partition. Same text on every container (config hash).
configure_partitions() {
  local name default=YES
  if ! [[ "$PARTITIONS" =~ ^[A-Za-z][A-Za-z0-9_-]*(,[A-Za-z][A-Za-z0-9_-]*)*$ ]]; then
    echo "error: SLURM_SDK_PARTITIONS=$PARTITIONS is not a comma-separated list of partition names." \
         "fix: e.g. SLURM_SDK_PARTITIONS=debug,batch (the first is the default)" >&2
    exit 2
  fi
  printf 'NodeSet=compute Feature=compute\n' > /etc/slurm/partitions.conf
  for name in ${PARTITIONS//,/ }; do
    printf 'PartitionName=%s Nodes=compute Default=%s MaxTime=INFINITE State=UP OverSubscribe=NO\n' \
      "$name" "$default" >> /etc/slurm/partitions.conf
    default=NO
  done
}

# Fake GPUs: character devices with /dev/null's numbers (root may mknod in a default container; opening
# them is allowed because they ARE /dev/null), declared in gres.conf, never detected.
make_fake_gpus() {
  local i
  if ! [[ "$GPUS_PER_NODE" =~ ^[0-9]+$ ]] || (( GPUS_PER_NODE > MAX_GPUS_PER_NODE )); then
    echo "error: SLURM_SDK_GPUS_PER_NODE=$GPUS_PER_NODE is not a number from 0 to $MAX_GPUS_PER_NODE." \
         "fix: e.g. SLURM_SDK_GPUS_PER_NODE=2" >&2
    exit 2
  fi
  printf 'AutoDetect=off\n' > /etc/slurm/gres.conf
  for ((i = 0; i < GPUS_PER_NODE; i++)); do
    rm -f "/dev/nvidia$i" && mknod -m 666 "/dev/nvidia$i" c 1 3
  done
  if (( GPUS_PER_NODE > 0 )); then
    printf 'Name=gpu File=/dev/nvidia[0-%d]\n' $((GPUS_PER_NODE - 1)) >> /etc/slurm/gres.conf
  fi
}

# A compute node registers itself (dynamic node, `slurmd -Z`): slurm.conf lists no node, so the node
# count is the number of compute containers. Its name is c<replica number> (node_name.py); slurmctld
# takes its address from the registration (the container name given here is what it would fall back to).
SLURMCTLD_WAIT_SECONDS=120
run_slurmd() {
  local node address gres=""
  read -r node address < <(node_name.py)
  echo "$node" > "$NODE_NAME_FILE"
  make_fake_gpus
  (( GPUS_PER_NODE > 0 )) && gres=" Gres=gpu:$GPUS_PER_NODE"
  # slurmd started before slurmctld listens retries its registration only every few seconds (seen: 3 s
  # after slurmctld was up): started once it listens, its first registration gets through.
  wait_for_port slurmctld 6817 "$SLURMCTLD_WAIT_SECONDS" || log slurmd \
    "warning: slurmctld did not answer on port 6817 within ${SLURMCTLD_WAIT_SECONDS} s; starting anyway" \
    "(slurmd retries its registration; \`docker compose logs slurmctld\` says why slurmctld is late)"
  log slurmd "registering as node $node (address $address, $GPUS_PER_NODE fake GPUs)"
  exec slurmd -D -Z -N "$node" \
    --conf "NodeAddr=$address NodeHostname=$address CPUs=$NODE_CPUS RealMemory=$NODE_MEMORY_MB Feature=compute$gres"
}

case "${1:-login}" in
  init)
    init ;;
  slurmdbd)
    start_mariadb
    start_munge
    install -d -o slurm -g slurm /var/log/slurm
    run_slurmdbd ;;
  slurmctld)
    start_munge
    install -d -o slurm -g slurm /var/spool/slurmctld /var/log/slurm
    wait_for_slurmdbd
    forget_cluster_id
    exec slurmctld -D -i ;;   # -D logs to stderr (compose logs) and to /var/log/slurm
  slurmd)
    start_munge
    run_slurmd ;;
  login)
    start_munge
    install -m 600 "$SECRETS/ssh/host_ed25519" /etc/ssh/ssh_host_ed25519_key
    install -m 644 "$SECRETS/ssh/host_ed25519.pub" /etc/ssh/ssh_host_ed25519_key.pub
    exec /usr/sbin/sshd -D -e ;;
  *)
    exec "$@" ;;
esac
