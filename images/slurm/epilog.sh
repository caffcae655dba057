#!/bin/bash
# Epilog (slurm.conf), run by slurmd as root on every node of a job once the job has ended: kill what the
# job left behind. proctrack/linuxproc (no cgroups in an unprivileged container) follows a job's processes
# by their parent chain only, so a task that double-forks a daemon (its parent exits, init adopts it)
# escapes it and would run on after the job. Every process a job starts inherits SLURM_JOB_ID, so each
# process of the job's user whose environment holds this job's id is killed. A process that scrubs its
# environment is not found: production sites use proctrack/cgroup for that.
# Reading another user's /proc/<pid>/environ needs CAP_SYS_PTRACE, which compose.yaml gives compute nodes.
# Every job's end waits for this script (squeue lists the job COMPLETING until it is done), so it forks as
# little as it can: one pgrep lists the user's processes, one grep -z reads each one's environment.
set -u
[ -n "${SLURM_JOB_ID:-}" ] && [ -n "${SLURM_JOB_UID:-}" ] && [ "$SLURM_JOB_UID" != 0 ] || exit 0
marker="SLURM_JOB_ID=$SLURM_JOB_ID"
LOG=/var/log/slurm/epilog.log   # what was killed, for whoever wonders where a process went
# Twice: a leftover forking at the moment of the first pass leaves a child the second pass sees.
for _ in 1 2; do
  pids=$(pgrep -u "$SLURM_JOB_UID") || break   # none left: nothing to kill
  for pid in $pids; do
    if grep -qzxF "$marker" "/proc/$pid/environ" 2>/dev/null; then
      command=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)
      kill -KILL "$pid" 2>/dev/null \
        && echo "[$(date +%FT%T)] killed process $pid (${command% }) left behind by job $SLURM_JOB_ID" >> "$LOG"
    fi
  done
done
exit 0
