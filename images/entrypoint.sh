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
  chmod 700 "$SECRETS/munge" "$SECRETS/ssh"
  chmod 600 "$SECRETS/munge/munge.key" "$SECRETS/ssh/host_ed25519" "$SECRETS/ssh/client_ed25519"
  install -d -o "$JOB_USER" -g "$JOB_USER" -m 755 "/home/$JOB_USER"
  install -d -o "$JOB_USER" -g "$JOB_USER" -m 700 "/home/$JOB_USER/.ssh"
  install -o "$JOB_USER" -g "$JOB_USER" -m 600 "$SECRETS/ssh/client_ed25519.pub" "/home/$JOB_USER/.ssh/authorized_keys"
  log init "secrets ready"
}

start_munge() {
  install -o munge -g munge -m 0400 "$SECRETS/munge/munge.key" /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
}


case "${1:-login}" in
  init)
    init ;;
  slurmctld)
    start_munge
    install -d -o slurm -g slurm /var/spool/slurmctld /var/log/slurm
    exec slurmctld -D -i ;;   # -D logs to stderr (compose logs) and to /var/log/slurm
  slurmd)
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
