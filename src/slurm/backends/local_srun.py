"""``srun`` inside a ``LocalCommandBackend`` job: a multi-rank task's ranks as local processes.

The local backend puts a ``srun`` on the job's ``PATH`` that runs this. It starts one process per rank
of the job's emulated nodes (``SLURM_JOB_NUM_NODES`` x ``SLURM_NTASKS_PER_NODE``, block distribution as
Slurm's default: ranks 0-1 on the first node, 2-3 on the second, ...) with the variables Slurm gives each
task of a step, and a free port on 127.0.0.1 as the master address and port (``slurm.node.ranks``), so
concurrent local jobs never collide. ``--kill-on-bad-exit``: one rank failing stops the others.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

from slurm.backends.local_state import KILL_WAIT
from slurm.node.ranks import MASTER_ADDR_ENV, MASTER_PORT_ENV, expand_hostlist

_POLL = 0.05  # where the OS cannot wait for any child without reaping it (no os.waitid)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        kill_on_bad_exit, command = _parse(args)
    except ValueError as error:
        print(f"srun (slurm-sdk local emulation): {error}", file=sys.stderr)
        return 2
    procs = [
        (rank, node, subprocess.Popen(command, env=env))
        for rank, node, env in rank_environments(os.environ, _free_port())
    ]
    signal.signal(signal.SIGTERM, lambda *_: _forward([proc for _, _, proc in procs], signal.SIGTERM))
    return _wait(procs, kill_on_bad_exit)


def _parse(args: list[str]) -> tuple[bool, list[str]]:
    kill_on_bad_exit = False
    while args and args[0].startswith("-"):
        option, _, value = args.pop(0).partition("=")
        if option in ("-K", "--kill-on-bad-exit"):
            kill_on_bad_exit = value != "0"
        elif option != "--cpus-per-task":  # one process per rank here whatever its CPUs
            raise ValueError(
                f"option {option} is not emulated (supported: --kill-on-bad-exit, --cpus-per-task)"
            )
    if not args:
        raise ValueError("no command given")
    return kill_on_bad_exit, args


def rank_environments(environ: Mapping[str, str], port: int) -> list[tuple[int, str, dict[str, str]]]:
    """(rank, node, environment) of every task of a step over the job's nodes, as Slurm sets them."""
    nodes = expand_hostlist(environ.get("SLURM_JOB_NODELIST", "")) or [socket.gethostname()]
    per_node = int(environ.get("SLURM_NTASKS_PER_NODE", "1"))
    step = {
        "SLURM_STEP_NODELIST": ",".join(nodes),
        "SLURM_STEP_NUM_NODES": str(len(nodes)),
        "SLURM_STEP_NUM_TASKS": str(len(nodes) * per_node),
        "SLURM_NTASKS": str(len(nodes) * per_node),
        "SLURM_STEP_TASKS_PER_NODE": f"{per_node}(x{len(nodes)})" if len(nodes) > 1 else str(per_node),
        MASTER_ADDR_ENV: "127.0.0.1",
        MASTER_PORT_ENV: str(port),
    }
    return [
        (
            node_rank * per_node + local_rank,
            node,
            {
                **environ,
                **step,
                "SLURM_PROCID": str(node_rank * per_node + local_rank),
                "SLURM_LOCALID": str(local_rank),
                "SLURM_NODEID": str(node_rank),
                "SLURMD_NODENAME": node,
            },
        )
        for node_rank, node in enumerate(nodes)
        for local_rank in range(per_node)
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait(procs: list[tuple[int, str, subprocess.Popen[bytes]]], kill_on_bad_exit: bool) -> int:
    """Wait for every rank; the first non-zero exit status is srun's (as Slurm's srun reports it)."""
    status = 0
    while True:
        running = [proc for _, _, proc in procs if proc.poll() is None]
        for rank, node, proc in procs:
            if proc.returncode and not status:
                status = proc.returncode if proc.returncode > 0 else 128 - proc.returncode
                print(
                    f"srun: error: {node}: task {rank}: Exited with exit code {proc.returncode}",
                    file=sys.stderr,
                )
                if kill_on_bad_exit:
                    _stop(running)
        if not running:
            return status
        _until_a_rank_exits()


def _until_a_rank_exits() -> None:
    """Block until a rank has exited, leaving it for ``Popen.poll`` to reap (WNOWAIT): srun answers the moment
    its last rank ends, as a poll every ``_POLL`` s would not (every multi-rank local job paid half of it on
    average). The ranks are srun's only children, so no other process's exit wakes it for nothing."""
    if not hasattr(os, "waitid"):
        time.sleep(_POLL)
        return
    with contextlib.suppress(ChildProcessError):  # none left: the SIGTERM handler reaped them all
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)


def _forward(procs: list[subprocess.Popen[bytes]], signum: int) -> None:
    """srun's SIGTERM handler: the signal goes on to every rank, and ``_wait`` goes on waiting for them. It
    must not wait itself: the signal can come while ``_wait`` is inside ``Popen.poll``, whose lock a wait in
    the handler could then never take, so it sat out the kill timeout (2 s) and killed ranks still writing
    their outcome. (A job's stop goes to its whole process group anyway; the launcher sends SIGKILL after
    the kill wait, as Slurm does.)"""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)  # not proc.send_signal: it polls, under the same lock


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    deadline = time.monotonic() + KILL_WAIT
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
