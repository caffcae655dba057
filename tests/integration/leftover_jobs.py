"""Task functions for tests/integration/test_site_defaults.py; imported by reference on the compute nodes
(nothing the cluster image lacks)."""

from __future__ import annotations

import os

from slurm import task


@task(time="00:02:00")
def leave_a_daemon(marker: str) -> tuple[str, int]:
    """Daemonize a process the classic way (fork, setsid, fork again: init adopts it, so Slurm's
    linuxproc tracking loses it) carrying ``LEFTOVER=<marker>`` in its environment; returns the node and
    the daemon's pid once the daemon is known to run."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.write(write_end, str(os.getpid()).encode())
            os.execve("/bin/sleep", ["sleep", "3600"], {**os.environ, "LEFTOVER": marker})
        os._exit(0)
    os.waitpid(child, 0)
    os.close(write_end)
    daemon = int(os.read(read_end, 32))
    os.kill(daemon, 0)  # it runs, and it is no child of this process
    return os.environ["SLURMD_NODENAME"], daemon
