"""The benchmark stack and the clients that talk to it.

A dedicated compose project (``slurmsdk-bench``) keeps benchmarks away from the test stack; its state
lives where the harness keeps every project's state, so ``SLURM_SDK_PROJECT=slurmsdk-bench pytest``
(the tiers figure) finds the same stack.
"""

from __future__ import annotations

import os
import shlex
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.stack import UP_WAIT_SECONDS, Connection, Stack
from slurm_dev_cluster.topology import Topology

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"  # git-ignored
#: SLURM_SDK_BENCH_PROJECT picks another one, e.g. when several checkouts run benchmarks on one host.
BENCH_PROJECT = os.environ.get("SLURM_SDK_BENCH_PROJECT") or "slurmsdk-bench"
REPO_MOUNT = "/opt/project"  # this repository inside every container (the kit mounts the project there)
#: Packaging under which ``bench.tasks`` imports on the nodes: the repo is mounted there.
NONE_PACKAGING = {"type": "none", "pythonpath": [REPO_MOUNT]}
#: Scratch directory of the raw-sbatch baselines on the cluster's shared home.
RAW_DIR = "/home/sdk/.bench/raw"

Say = Callable[[str], None]


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


class TimedStack(Stack):
    """The harness's Stack, recording how long each phase of ``ensure_up`` took (last call only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phases: dict[str, float] = {}

    def ensure_up(self, session: str = "cli") -> Any:
        self.phases = {}
        return super().ensure_up(session)

    def _timed(self, phase: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return action()
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - started

    def preflight(self) -> None:
        self._timed("preflight", super().preflight)

    def build(self) -> None:
        self._timed("build", super().build)

    def up(self, *, force_recreate: bool = False, session: str = "cli") -> None:
        self._timed(
            "compose up -d",
            lambda: super(TimedStack, self).up(force_recreate=force_recreate, session=session),
        )

    def wait_until_ready(self, timeout: float = UP_WAIT_SECONDS) -> tuple[Connection, list[str]]:
        return self._timed(
            "wait until ready (ssh + Slurm + tiny job)",
            lambda: super(TimedStack, self).wait_until_ready(timeout),
        )

    def probe(self, connection: Connection, quick: bool = False) -> list[str]:
        return self._timed(
            "probe (ssh + quick check)" if quick else "probe (ssh + tiny srun job)",
            lambda: super(TimedStack, self).probe(connection, quick=quick),
        )


class BenchEnv:
    """Lazily started benchmark stack plus one shared SSH connection to its login node."""

    def __init__(self, *, quiet_harness: bool = True) -> None:
        self.stack = TimedStack(
            REPO_ROOT,
            project=BENCH_PROJECT,
            say=(lambda _: None) if quiet_harness else (lambda m: say(f"harness: {m}")),
        )
        self._connection: Connection | None = None
        self._transport: Any = None

    def use_topology(self, topology: Topology) -> None:
        """From now on, start the bench stack with ``topology`` (a new Stack, as a new process would make)."""
        self._forget_connection()
        self.stack = TimedStack(REPO_ROOT, project=BENCH_PROJECT, say=self.stack.say, topology=topology)

    def ensure_up(self, session: str = "bench") -> tuple[Connection, str]:
        """Start (or reuse) the bench stack the way the pytest plugin does: under the setup lock."""
        with Coordinator(self.stack.state_dir).exclusive(say=say):
            result = self.stack.ensure_up(session)
        self._forget_connection()
        self._connection = result.connection
        return result.connection, result.action

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self.ensure_up()
        assert self._connection is not None
        return self._connection

    @property
    def transport(self) -> Any:
        """One ``SSHTransport`` shared by the SDK and the raw baselines, so both use the same connection."""
        if self._transport is None:
            from slurm.transports.ssh import SSHTransport

            c = self.connection
            self._transport = SSHTransport(c.host, c.port, c.user, str(c.key_path), c.host_key)
        return self._transport

    def cluster(self, packaging: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """An SDK Cluster over the shared connection (closing it is left to ``close``)."""
        from slurm import Cluster
        from slurm.backends.slurm import SlurmBackend

        return Cluster(
            backend=SlurmBackend(self.transport), packaging=dict(packaging or NONE_PACKAGING), **options
        )

    def run(self, command: str, timeout: float | None = 600) -> str:
        """Run a shell command on the login node over the shared connection; stdout."""
        return self.transport.run(command, timeout=timeout).stdout

    def down(self) -> None:
        self._forget_connection()
        with Coordinator(self.stack.state_dir).exclusive(say=say):
            self.stack.down(session="bench")

    def close(self) -> None:
        self._forget_connection()

    def _forget_connection(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._connection = None


# ---- raw Slurm baselines (plain shell on the login node) -------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def python_wrap(expression: str) -> str:
    """``--wrap`` text running ``python3 -c 'print(<expression>)'`` on the node."""
    return shlex.quote(f"python3 -c {shlex.quote(f'import os; print({expression})')}")


def elapsed_since(started: float) -> float:
    return time.perf_counter() - started
