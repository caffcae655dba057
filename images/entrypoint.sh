#!/bin/bash
# Entrypoint for every role of the dev cluster image.
# Usage: entrypoint.sh slurmctld|slurmdbd|slurmd|login (a daemon's role), or init (the stack's secrets only).
# With no command (a CI services block cannot give one: docs/ci.md), the role comes from $SLURM_ROLE
# (default login); a command, where there is one (compose.yaml), wins.
set -euo pipefail

SECRETS=/etc/slurm-sdk          # named volume: written by slurmctld's container, read-only for the others
SECRETS_READY=$SECRETS/ready    # written last by create_secrets: every secret and the job user's home exist
SECRETS_WAIT_SECONDS=60
JWT_KEY=$SECRETS/jwt/jwt_hs256.key   # slurm.conf AuthAltParameters; slurmdbd.conf gets it when it exists
JOB_USER=sdk

log() { echo "[$(hostname) $1] ${*:2}"; }

# Run a command every 50 ms until it succeeds (0) or the seconds run out (1). Every start-up wait of the
# entrypoint is one of these, so no container waits longer than 50 ms past what it needs.
poll_until() {
  local seconds=$1 _
  shift
  for _ in $(seq $((seconds * 20))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

# Whether host:port accepts connections (bash's /dev/tcp: no process forked).
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Per-stack secrets and the job user's home, created once per volume, never in an image. slurmctld's
# container does it before it starts slurmctld (a separate one-shot container cost a container start:
# about 0.5 s of a 3 s start on this 2-core host, and compose had login wait for its exit).
create_secrets() {
  mkdir -p "$SECRETS/munge" "$SECRETS/ssh"
  if [ ! -s "$SECRETS/munge/munge.key" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$SECRETS/munge/munge.key" status=none
    log secrets "generated munge key"
  fi
  if [ ! -s "$SECRETS/ssh/host_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "slurm-sdk-dev host" -f "$SECRETS/ssh/host_ed25519"
    log secrets "generated SSH host key"
  fi
  if [ ! -s "$SECRETS/ssh/client_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "slurm-sdk-dev client" -f "$SECRETS/ssh/client_ed25519"
    log secrets "generated SSH client key"
  fi
  # The JWT signing key (slurm.conf AuthAltParameters): readable by SlurmUser only, which slurmctld and
  # slurmdbd run as; the job user never sees it (a token is asked for with `scontrol token`).
  if [ ! -s "$JWT_KEY" ]; then
    install -d -o slurm -g slurm -m 700 "$SECRETS/jwt"
    dd if=/dev/urandom bs=32 count=1 of="$JWT_KEY" status=none
    log secrets "generated JWT key"
  fi
  chown -R slurm:slurm "$SECRETS/jwt" && chmod 700 "$SECRETS/jwt" && chmod 600 "$JWT_KEY"
  chmod 700 "$SECRETS/munge" "$SECRETS/ssh"
  chmod 600 "$SECRETS/munge/munge.key" "$SECRETS/ssh/host_ed25519" "$SECRETS/ssh/client_ed25519"
  install -d -o "$JOB_USER" -g "$JOB_USER" -m 755 "/home/$JOB_USER"
  install -d -m 1777 /scratch   # shared scratch, as on clusters: anyone may create, only owners delete
  install -d -o "$JOB_USER" -g "$JOB_USER" -m 700 "/home/$JOB_USER/.ssh"
  install -o "$JOB_USER" -g "$JOB_USER" -m 600 "$SECRETS/ssh/client_ed25519.pub" "/home/$JOB_USER/.ssh/authorized_keys"
  touch "$SECRETS_READY"
  log secrets "secrets ready"
}

# The other roles start alongside slurmctld's container (compose orders nothing) and wait here for the
# secrets it creates: a few hundred ms at most.
wait_for_secrets() {
  poll_until "$SECRETS_WAIT_SECONDS" test -e "$SECRETS_READY" && return 0
  echo "error: the stack's secrets ($SECRETS_READY) did not appear within ${SECRETS_WAIT_SECONDS} s." \
       "fix: slurmctld's container creates them: \`docker compose logs slurmctld\`, then \`docker compose up --wait\`" >&2
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
    # A site's policy, which lives in slurmdbd (ensure_site_accounts): a job needs an association (user
    # and account) and a QOS it may use, and limits hold; QOS `high` preempts QOS `low`, whose jobs Slurm
    # requeues (docs/dev-cluster.md "Accounts, QOS and preemption"). Without slurmdbd there is no QOS, so
    # neither enforcement nor preemption. send_user_signal: a job preempted in QOS low's GraceTime gets the
    # signal it asked for (--signal, e.g. submitit's USR2) instead of SIGTERM, so clients that checkpoint
    # only on their own signal checkpoint at preemption too.
    # Slurm before 23.02 (bookworm's 22.05) has no PreemptParameters and refuses a slurm.conf naming it;
    # there the same switch is preempt_send_user_signal in SlurmctldParameters (22.05's slurmctld reads it
    # from that line only: named in SchedulerParameters it is accepted and ignored, so a preempted job got
    # SIGTERM, which the batch shell of a --signal=B: job never sees, and ran on through GraceTime).
    local preempt_parameters=('PreemptParameters=send_user_signal')
    if (( $(slurm_release) < 2302 )); then
      preempt_parameters=('SlurmctldParameters=preempt_send_user_signal')
    fi
    printf '%s\n' 'AccountingStorageType=accounting_storage/slurmdbd' 'AccountingStorageHost=slurmdbd' \
      'AccountingStorageTRES=gres/gpu' 'AccountingStorageEnforce=associations,limits,qos,safe' \
      'PreemptType=preempt/qos' 'PreemptMode=REQUEUE' "${preempt_parameters[@]}" \
      > /etc/slurm/accounting.conf
  else
    printf 'AccountingStorageType=accounting_storage/none\n' > /etc/slurm/accounting.conf
  fi
}

# How jobs are confined (slurm.conf's enforcement.conf include; every role writes the same answer, so the
# config hash matches). SLURM_SDK_CGROUPS=0 (default): no cgroups and no privilege; memory by sampling
# (OverMemoryKill: a job over its memory is killed and recorded FAILED). 1 (images/cgroups.compose.yaml,
# which gives the compute nodes CAP_SYS_ADMIN and a private cgroup namespace): Slurm's cgroup plugins on
# the cgroup v1 controllers each compute node mounts (mount_cgroups), so the kernel confines memory and
# cores and an OOM kill is recorded OUT_OF_MEMORY. Devices are not constrained: the fake GPUs are
# /dev/null's numbers (make_fake_gpus), and denying an unallocated one would deny /dev/null itself.
CGROUPS=${SLURM_SDK_CGROUPS:-0}
CGROUP_ROOT=/run/slurm-cgroup
CGROUP_CONTROLLERS=(cpuset memory freezer devices cpuacct)
configure_enforcement() {
  if [[ "$CGROUPS" != [01] ]]; then
    echo "error: SLURM_SDK_CGROUPS=$CGROUPS: use 0 (no cgroups, the default) or 1 (cgroup enforcement," \
         "with images/cgroups.compose.yaml)" >&2
    exit 2
  fi
  if [ "$CGROUPS" = 1 ]; then
    printf '%s\n' 'ProctrackType=proctrack/cgroup' 'TaskPlugin=task/cgroup' \
      'JobAcctGatherType=jobacct_gather/cgroup' > /etc/slurm/enforcement.conf
    printf '%s\n' 'CgroupPlugin=cgroup/v1' "CgroupMountpoint=$CGROUP_ROOT" 'ConstrainRAMSpace=yes' \
      'ConstrainCores=yes' 'ConstrainDevices=no' > /etc/slurm/cgroup.conf
  else
    # Unprivileged nodes cannot load a job's login environment (sbatch --export=NONE and the like): slurmd
    # needs new namespaces for it and dies when refused, so slurmctld refuses such a job at submission with
    # the cause and the fix (/etc/slurm/job_submit.lua).
    printf '%s\n' 'ProctrackType=proctrack/linuxproc' 'TaskPlugin=task/none' \
      'JobAcctGatherType=jobacct_gather/linux' 'JobAcctGatherParams=OverMemoryKill' \
      'JobSubmitPlugins=lua' > /etc/slurm/enforcement.conf
    rm -f /etc/slurm/cgroup.conf
  fi
}

# A compute node with SLURM_SDK_CGROUPS=1 mounts the cgroup v1 controllers Slurm's plugins use, writable,
# under CGROUP_ROOT: Docker mounts the container's own read-only. In a private cgroup namespace the mount's
# root is the container's cgroup, so the node sees and changes nothing of the host's. Mounting needs
# CAP_SYS_ADMIN. A cgroup v2 host (one unified hierarchy) is not handled: its controllers cannot be mounted
# per name.
mount_cgroups() {
  local controller
  [ "$CGROUPS" = 1 ] || return 0
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    echo "error: SLURM_SDK_CGROUPS=1 needs a cgroup v1 host (this one runs cgroup v2)." \
         "fix: drop images/cgroups.compose.yaml (memory is then enforced by sampling)" >&2
    exit 2
  fi
  for controller in "${CGROUP_CONTROLLERS[@]}"; do
    install -d "$CGROUP_ROOT/$controller"
    mountpoint -q "$CGROUP_ROOT/$controller" && continue
    mount -t cgroup -o "$controller" cgroup "$CGROUP_ROOT/$controller" || {
      echo "error: could not mount the cgroup controller $controller (SLURM_SDK_CGROUPS=1)." \
           "fix: the compute node needs CAP_SYS_ADMIN and \`cgroup: private\`: start it with" \
           "images/cgroups.compose.yaml" >&2
      exit 2
    }
  done
  log slurmd "cgroup enforcement: ${CGROUP_CONTROLLERS[*]} mounted at $CGROUP_ROOT"
}

# The defaults this cluster runs with (slurm.conf's last include). A fresh container starts with the dev
# defaults; a restarted one keeps what it had (harness/src/slurm_dev_cluster/fault_slurm.py may have switched it, and every node
# must keep agreeing). The harness resets it on every container when a fault ends.
configure_defaults() {
  [ -e /etc/slurm/faults.conf ] || cp /etc/slurm/defaults/dev.conf /etc/slurm/faults.conf
}

# MariaDB inside the slurmdbd container (socket only, data on the `accounting-db` volume), then slurmdbd in
# the foreground. The database, its user and Slurm's tables with the cluster `dev` in them are created when
# the image is built (`prepare_accounting_database`), so a new stack's slurmdbd only checks them: creating
# them here took 1.3 s (slurmdbd's tables) + 1.8 s (slurmctld registering a new cluster) of every start.
# MariaDB needs no secret: it starts before the wait for the stack's secrets, so the two overlap.
ACCOUNTING_DB=slurm_acct_db
MARIADB_WAIT_SECONDS=60
MARIADB_SOCKET=/run/mysqld/mysqld.sock

# A client is started only once the socket exists: a failing `mariadb` every 50 ms costs CPU that
# MariaDB's own start-up, the slowest step of a stack's start, needs on a 2-core host.
mariadb_answers() { [ -S "$MARIADB_SOCKET" ] && mariadb -e 'select 1'; }

start_mariadb() {
  install -d -o mysql -g mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --skip-test-db >/dev/null
  runuser -u mysql -- mariadbd --socket="$MARIADB_SOCKET" &
  poll_until "$MARIADB_WAIT_SECONDS" mariadb_answers || {
    echo "error: MariaDB did not answer on its socket within $MARIADB_WAIT_SECONDS s; fix: read its log above" \
         "(\`docker compose logs slurmdbd\`), then \`docker compose up --wait\` again" >&2
    exit 1
  }
}

# slurmdbd logs in as the database user `slurm` by unix socket (MariaDB's unix_socket plugin checks that
# the connecting process runs as OS user slurm): no password, so no secret in slurmdbd.conf or the image.
# Idempotent; at start-up too, for a database volume from before (its user had a password).
ensure_database_user() {
  mariadb -e "CREATE DATABASE IF NOT EXISTS $ACCOUNTING_DB;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
    ALTER USER 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
    GRANT ALL ON $ACCOUNTING_DB.* TO 'slurm'@'localhost';"
}

write_slurmdbd_conf() {
  install -d -o slurm -g slurm /var/log/slurm /run/slurmdbd
  install -o slurm -g slurm -m 600 /dev/stdin /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$ACCOUNTING_DB
StorageUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd/slurmdbd.pid
CONF
  # Tokens (slurmrestd's accounting calls) need the same key slurmctld signs with; at image build there is
  # no key (nor any token), so the line is only written in a stack.
  if [ -s "$JWT_KEY" ]; then
    printf 'AuthAltTypes=auth/jwt\nAuthAltParameters=jwt_key=%s\n' "$JWT_KEY" >> /etc/slurm/slurmdbd.conf
  fi
}

# slurmdbd runs as SlurmUser from its first instruction (setpriv execs it: no parent left to relay signals).
AS_SLURM=(setpriv --reuid=slurm --regid=slurm --init-groups)

run_slurmdbd() {
  ensure_database_user
  exec "${AS_SLURM[@]}" slurmdbd -D
}

# Image build (accounting stage): the database as a new stack's slurmdbd finds it, Slurm's tables and the
# cluster included. slurmdbd and sacctmgr need munge, so a throwaway key and munged live for this step
# only (removed before the layer is written: no key in the image); slurmctld is not needed.
prepare_accounting_database() {
  local cluster; cluster=$(healthcheck.sh cluster-name)
  write_slurmdbd_conf
  start_mariadb
  ensure_database_user
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  printf 'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n' \
    > /etc/slurm/accounting.conf
  touch /etc/slurm/partitions.conf /etc/slurm/faults.conf /etc/slurm/enforcement.conf
  "${AS_SLURM[@]}" slurmdbd -D &
  local slurmdbd=$!
  poll_until 60 listening localhost 6819 || { echo "error: slurmdbd did not start" >&2; exit 1; }
  sacctmgr -i add cluster "$cluster" >/dev/null
  ensure_site_accounts
  kill "$slurmdbd" && wait "$slurmdbd" || true
  mariadb -e 'SHUTDOWN'
  pkill -x munged || true
  poll_until 60 bash -c '! pgrep -x "mariadbd|munged"' || { echo "error: MariaDB did not stop" >&2; exit 1; }
  rm -f /etc/munge/munge.key /etc/slurm/accounting.conf /etc/slurm/partitions.conf /etc/slurm/faults.conf \
    /etc/slurm/enforcement.conf \
    /var/log/slurm/* /run/munge/*
}

# With accounting, slurmctld must find slurmdbd answering when it starts: one refused connection and it
# retries only minutes later (sacct would miss every job until then). slurmctld's container starts with
# slurmdbd's (compose orders nothing) and waits here: slurmdbd listens only once its database is open.
SLURMDBD_WAIT_SECONDS=90
wait_for_slurmdbd() {
  grep -q slurmdbd /etc/slurm/accounting.conf || return 0
  poll_until "$SLURMDBD_WAIT_SECONDS" listening slurmdbd 6819 || log slurmctld \
    "warning: slurmdbd did not answer on port 6819 within ${SLURMDBD_WAIT_SECONDS} s; starting anyway:" \
    "jobs run, sacct sees them once slurmctld reconnects (\`docker compose logs slurmdbd\` says why)"
}

# A site's accounts and QOS, in slurmdbd's database (AccountingStorageEnforce refuses a job without them):
# the job user has a default account and a second one, and may use QOS normal (its default), high and
# low; high preempts low (PreemptType=preempt/qos, PreemptMode=REQUEUE: accounting.conf), and a preempted
# low job has LOW_GRACE_TIME seconds between its signal and SIGKILL to checkpoint. Made when the
# image is built (prepare_accounting_database); slurmctld's container makes them again when a database
# from an older image lacks them. Cluster-wide admins: root (Slurm's own).
SITE_ACCOUNTS=(research physics)   # the first is the job user's default
# A site gives minutes; 30 s outlasts a checkpoint's save on a busy host and keeps preemption tests short.
LOW_GRACE_TIME=30
site_accounts_exist() {
  [ -n "$(sacctmgr -n -P show association where cluster="$(healthcheck.sh cluster-name)" \
    user="$JOB_USER" account="${SITE_ACCOUNTS[1]}" format=qos)" ] &&
    [ "$(sacctmgr -n -P show qos where name=low format=gracetime)" = "00:00:$LOW_GRACE_TIME" ]
}
ensure_site_accounts() {
  local cluster; cluster=$(healthcheck.sh cluster-name)
  site_accounts_exist 2>/dev/null && return 0
  # Each step is idempotent in effect: `add` of what exists fails with "Nothing new added" (ignored).
  # The image's database holds the first cluster; a further one (images/multicluster.compose.yaml) is
  # added here by its own controller, before that controller starts.
  sacctmgr -i add cluster "$cluster" >/dev/null 2>&1 || true
  sacctmgr -i add qos high,low >/dev/null 2>&1 || true
  sacctmgr -i modify qos where name=high set priority=100 preempt=low >/dev/null
  sacctmgr -i modify qos where name=low set priority=0 gracetime="$LOW_GRACE_TIME" >/dev/null
  sacctmgr -i add account "${SITE_ACCOUNTS[@]}" cluster="$cluster" \
    description="dev cluster account" organization=dev >/dev/null 2>&1 || true
  sacctmgr -i add user "$JOB_USER" cluster="$cluster" account="$(IFS=,; echo "${SITE_ACCOUNTS[*]}")" \
    defaultaccount="${SITE_ACCOUNTS[0]}" qos=normal,high,low defaultqos=normal >/dev/null 2>&1 || true
  site_accounts_exist || {
    echo "error: the accounts and QOS of the job user $JOB_USER could not be created in slurmdbd." \
         "fix: \`sacctmgr show association user=$JOB_USER\` on slurmctld says what is there;" \
         "\`slurm-dev-cluster down\` then \`up\` starts from a fresh database" >&2
    return 1
  }
}

# slurmctld's state volume and the accounting database's volume can part ways (a stack started before
# accounting was the default, or one volume removed by hand); slurmctld then refuses to start with
# "CLUSTER ID MISMATCH". One stack is one cluster, so the state keeps its jobs and takes the database's id.
forget_cluster_id() {
  grep -q slurmdbd /etc/slurm/accounting.conf || return 0
  rm -f /var/spool/slurmctld/clustername
}

# Which Slurm cluster this container belongs to. The image's slurm.conf is the stack's first cluster
# (ClusterName=dev, SlurmctldHost=slurmctld); a further cluster on the same slurmdbd
# (images/multicluster.compose.yaml) gives its controller and its compute nodes SLURM_SDK_CLUSTER_NAME
# and SLURM_SDK_CONTROLLER (that controller's hostname), written into this container's slurm.conf at
# every start, so the controller and its nodes agree (config hash). The login node keeps the first
# cluster and reaches the others with `-M`: Slurm's commands ask slurmdbd where each cluster's controller is.
CLUSTER_NAME=${SLURM_SDK_CLUSTER_NAME:-}
CONTROLLER=${SLURM_SDK_CONTROLLER:-slurmctld}
configure_cluster() {
  [ -n "$CLUSTER_NAME" ] || return 0
  if ! [[ "$CLUSTER_NAME" =~ ^[a-z][a-z0-9_]{0,39}$ && "$CONTROLLER" =~ ^[A-Za-z][A-Za-z0-9-]*$ ]]; then
    echo "error: SLURM_SDK_CLUSTER_NAME=$CLUSTER_NAME SLURM_SDK_CONTROLLER=$CONTROLLER: need a Slurm cluster" \
         "name (lower-case letters, digits, _) and a hostname. fix: e.g. SLURM_SDK_CLUSTER_NAME=two" \
         "SLURM_SDK_CONTROLLER=slurmctld-two" >&2
    exit 2
  fi
  sed -i -e "s/^ClusterName=.*/ClusterName=$CLUSTER_NAME/" -e "s/^SlurmctldHost=.*/SlurmctldHost=$CONTROLLER/" \
    /etc/slurm/slurm.conf
}

# Opt-in federation of every cluster of the stack (SLURM_SDK_FEDERATION=1, given to a further cluster's
# controller by images/multicluster.compose.yaml): job ids become unique across the clusters, a job submitted
# without -M may run on any of them (`--cluster-constraint=<name>` steers it: each cluster has its name as
# its feature), and dependencies may cross clusters. 0 (default) takes the federation away.
FEDERATION=${SLURM_SDK_FEDERATION:-0}
FEDERATION_NAME=devfed
configure_federation() {
  local members member
  case "$FEDERATION" in
    1)
      members=$(sacctmgr -n -P show cluster format=cluster | paste -sd, -)
      for member in ${members//,/ }; do   # each cluster's feature is its name: --cluster-constraint=two
        sacctmgr -i modify cluster "$member" set features="$member" >/dev/null 2>&1 || true
      done
      sacctmgr -i add federation "$FEDERATION_NAME" clusters="$members" >/dev/null 2>&1 \
        || sacctmgr -i modify federation "$FEDERATION_NAME" set clusters="$members" >/dev/null 2>&1 || true
      sacctmgr -n -P show federation "$FEDERATION_NAME" format=cluster | grep -qx "$CLUSTER_NAME" \
        || log slurmctld "warning: federation $FEDERATION_NAME of $members could not be made (sacctmgr show federation)" ;;
    0) sacctmgr -i remove federation "$FEDERATION_NAME" >/dev/null 2>&1 || true ;;
    *)
      echo "error: SLURM_SDK_FEDERATION=$FEDERATION: use 0 (separate clusters, the default) or 1 (one federation)" >&2
      exit 2 ;;
  esac
}

start_munge() {
  healthcheck.sh reset   # a restarted container is not known healthy yet
  wait_for_secrets
  configure_cluster
  configure_accounting
  configure_enforcement
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
# Time limits as a site sets them: a job without --time gets an hour, none may ask for more than a day
# (sbatch refuses it at submit). The test suite's longest job asks for minutes.
PARTITION_DEFAULT_TIME=01:00:00
PARTITION_MAX_TIME=1-00:00:00

# Partitions over every compute node, the first one the default. Nodes register themselves (slurmd -Z)
# with the feature `compute`, and the node set of that feature is what each partition holds, so a node
# added later (`docker compose up c3`) joins every partition. Same text on every container (config hash).
configure_partitions() {
  local name default=YES
  if ! [[ "$PARTITIONS" =~ ^[A-Za-z][A-Za-z0-9_-]*(,[A-Za-z][A-Za-z0-9_-]*)*$ ]]; then
    echo "error: SLURM_SDK_PARTITIONS=$PARTITIONS is not a comma-separated list of partition names." \
         "fix: e.g. SLURM_SDK_PARTITIONS=debug,batch (the first is the default)" >&2
    exit 2
  fi
  printf 'NodeSet=compute Feature=compute\n' > /etc/slurm/partitions.conf
  for name in ${PARTITIONS//,/ }; do
    printf 'PartitionName=%s Nodes=compute Default=%s DefaultTime=%s MaxTime=%s State=UP OverSubscribe=NO\n' \
      "$name" "$default" "$PARTITION_DEFAULT_TIME" "$PARTITION_MAX_TIME" >> /etc/slurm/partitions.conf
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

# Slurm's release as a number to compare: `slurmd -V` says "slurm-wlm 22.05.8" -> 2205.
slurm_release() { slurmd -V | awk '{ split($2, v, "."); printf "%d%02d\n", v[1], v[2] }'; }

# Slurm before 24.11 (measured on bookworm's 22.05) keeps the address a dynamic node first registered
# from, in its state too: a compute container that restarts or is recreated gets a new IP from Docker,
# possibly another node's old one, and c<n>'s jobs then go to another container (which runs them under its
# own node name). So, in the background while slurmd registers, tell slurmctld this node's address until
# its record shows it (at most a minute; slurmctld may still be starting). 24.11 takes the address of
# every registration itself.
ADDRESS_REFRESH_SECONDS=60
refresh_node_address() {
  local node=$1 address=$2 ip
  (( $(slurm_release) < 2411 )) || return 0
  ip=$(getent hosts "$address" | awk '{ print $1; exit }')
  [ -n "$ip" ] || return 0
  (
    for _ in $(seq "$ADDRESS_REFRESH_SECONDS"); do
      shown=$(timeout 5 scontrol show node "$node" 2>/dev/null | grep -o 'NodeAddr=[^ ]*' || true)
      [ "$shown" = "NodeAddr=$ip" ] && exit 0
      if [ -n "$shown" ] && timeout 5 scontrol update nodename="$node" nodeaddr="$ip" 2>/dev/null; then
        log slurmd "told slurmctld that node $node is now at $ip (it had ${shown#NodeAddr=}; Slurm before 24.11)"
      fi
      sleep 1
    done
  ) &
}

# A compute node registers itself (dynamic node, `slurmd -Z`): slurm.conf lists no node, so the node
# count is the number of compute containers. Its name is its hostname, c<n> (compose.yaml, node_name.py),
# which is also the DNS name every container reaches it by: slurmctld is given that name as its address.
SLURMCTLD_WAIT_SECONDS=120
run_slurmd() {
  local node address gres=""
  read -r node address < <(node_name.py)
  echo "$node" > "$NODE_NAME_FILE"
  make_fake_gpus
  mount_cgroups
  (( GPUS_PER_NODE > 0 )) && gres=" Gres=gpu:$GPUS_PER_NODE"
  # slurmd started before slurmctld listens retries its registration only every few seconds (seen: 3 s
  # after slurmctld was up): started once it listens, its first registration gets through.
  poll_until "$SLURMCTLD_WAIT_SECONDS" listening "$CONTROLLER" 6817 || log slurmd \
    "warning: slurmctld did not answer on port 6817 within ${SLURMCTLD_WAIT_SECONDS} s; starting anyway" \
    "(slurmd retries its registration; \`docker compose logs slurmctld\` says why slurmctld is late)"
  refresh_node_address "$node" "$address"
  log slurmd "registering as node $node (address $address, $GPUS_PER_NODE fake GPUs)"
  exec slurmd -D -Z -N "$node" \
    --conf "NodeAddr=$address NodeHostname=$address CPUs=$NODE_CPUS RealMemory=$NODE_MEMORY_MB Feature=compute$gres"
}

# The login node forbids every kind of SSH forwarding (images/sshd_config) unless SLURM_SDK_SSH_FORWARDING=1
# (compose.yaml passes it): then TCP and agent forwarding are allowed, from a file sshd reads before
# images/sshd_config (for each keyword the first value sshd reads wins). Written or removed at every start,
# so a recreated login node follows the setting.
FORWARDING_CONF=/etc/ssh/sshd_config.d/00-forwarding.conf
configure_forwarding() {
  local forwarding=${SLURM_SDK_SSH_FORWARDING:-0}
  if [[ "$forwarding" != [01] ]]; then
    echo "error: SLURM_SDK_SSH_FORWARDING=$forwarding: use 0 (no forwarding, the default) or 1 (TCP and agent forwarding)" >&2
    exit 2
  fi
  if [ "$forwarding" = 1 ]; then
    printf 'AllowTcpForwarding yes\nAllowAgentForwarding yes\n' > "$FORWARDING_CONF"
    log login "SSH forwarding allowed (SLURM_SDK_SSH_FORWARDING=1): TCP and agent"
  else
    rm -f "$FORWARDING_CONF"
  fi
}

# slurmrestd (service `slurmrestd`, compose profile `rest`): Slurm's REST API on port 6820, clients
# authenticated by the token in each request (rest_auth/jwt; SLURM_JWT=daemon has slurmrestd pass it on
# to slurmctld and slurmdbd). It refuses to run as root or SlurmUser, so it runs as its own account.
# It unshares its System V IPC and file namespaces at start, which an unprivileged container may not do
# (fatal "Unable to unshare"); the container already isolates both, so those two steps are turned off.
SLURMRESTD_PORT=6820
run_slurmrestd() {
  SLURMRESTD_SECURITY=disable_unshare_sysv,disable_unshare_files SLURM_JWT=daemon exec setpriv --reuid=slurmrestd --regid=slurmrestd --clear-groups \
    slurmrestd -a rest_auth/jwt "0.0.0.0:$SLURMRESTD_PORT"
}

ROLES="slurmctld slurmdbd slurmd login slurmrestd"
if [ $# -eq 0 ]; then
  role=${SLURM_ROLE:-login}
  if [[ " $ROLES " != *" $role "* ]]; then
    echo "error: SLURM_ROLE=$role is not a role of this image. fix: one of: $ROLES" >&2
    exit 2
  fi
  set -- "$role"
fi

case "$1" in
  init)
    create_secrets ;;
  prepare-accounting-database)   # images/Dockerfile, accounting stage
    prepare_accounting_database ;;
  slurmdbd)
    start_mariadb &   # overlaps the wait for the secrets; slurmdbd needs both
    mariadb_started=$!
    start_munge
    wait "$mariadb_started" || exit 1
    write_slurmdbd_conf
    run_slurmdbd ;;
  slurmctld)
    # The stack's own slurmctld writes the secrets; a further cluster's controller waits for them
    # (start_munge), so every cluster shares one munge key.
    [ "$CONTROLLER" != slurmctld ] || create_secrets
    start_munge
    install -d -o slurm -g slurm /var/spool/slurmctld /var/log/slurm
    wait_for_slurmdbd
    if grep -q slurmdbd /etc/slurm/accounting.conf; then
      ensure_site_accounts || log slurmctld "warning: jobs of $JOB_USER are refused until its accounts exist"
      [ "$CONTROLLER" = slurmctld ] || configure_federation
    fi
    forget_cluster_id
    exec slurmctld -D -i ;;   # -D logs to stderr (compose logs) and to /var/log/slurm
  slurmd)
    start_munge
    run_slurmd ;;
  slurmrestd)
    start_munge
    run_slurmrestd ;;
  login)
    start_munge
    configure_forwarding
    install -m 600 "$SECRETS/ssh/host_ed25519" /etc/ssh/ssh_host_ed25519_key
    install -m 644 "$SECRETS/ssh/host_ed25519.pub" /etc/ssh/ssh_host_ed25519_key.pub
    exec /usr/sbin/sshd -D -e ;;
  *)
    exec "$@" ;;
esac
