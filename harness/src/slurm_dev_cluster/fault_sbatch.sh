#!/bin/bash
# `sbatch` while an sbatch fault is on: harness/src/slurm_dev_cluster/fault_ssh.py installs this as /usr/local/bin/sbatch in the
# login container (ahead of /usr/bin on PATH) and removes it when the fault ends. The real sbatch
# queues the job first; then, as switched by files in /run/harness-faults/:
#   sbatch-delay   hold the answer back that many seconds (so a drop can land after the job is queued)
#   sbatch-drop    a count: kill this SSH connection before the answer is sent, that many more times
# Every job id queued through it is appended to sbatch-queued, so a test can count submissions.
set -u
FAULTS=/run/harness-faults

out=$(/usr/bin/sbatch "$@")
rc=$?
[ "$rc" -eq 0 ] && printf '%s\n' "$out" | tail -n 1 | cut -d';' -f1 >> "$FAULTS/sbatch-queued"

if [ -s "$FAULTS/sbatch-delay" ]; then
  sleep "$(cat "$FAULTS/sbatch-delay")"
fi

# Take one from the drop count (under a lock: two submissions may race).
take_drop() {
  exec 9>>"$FAULTS/sbatch-drop.lock"
  flock 9
  left=$(cat "$FAULTS/sbatch-drop" 2>/dev/null || echo 0)
  [ "${left:-0}" -gt 0 ] || return 1
  echo $((left - 1)) > "$FAULTS/sbatch-drop"
}

# The SSH session process this command runs under (the first sshd ancestor, owned by the job user).
session_pid() {
  pid=$$
  while [ "$pid" -gt 1 ]; do
    case "$(cat "/proc/$pid/comm")" in sshd-session|sshd) echo "$pid"; return 0 ;; esac
    pid=$(cut -d' ' -f4 "/proc/$pid/stat")
  done
  return 1
}

if take_drop; then
  pid=$(session_pid) && kill -KILL "$pid"
  exit 255  # the connection is gone: nobody reads what we would print
fi
printf '%s\n' "$out"
exit "$rc"
