"""Coordination between the processes that share one dev-cluster stack.

Two mechanisms, both plain files in the stack's state directory:

* ``setup.lock`` (a ``filelock.FileLock``): held by whoever inspects, starts or stops the stack,
  so exactly one process runs ``compose up`` and the others wait, then reuse its result.
* ``users/<pid>.json``: one registration per process using the stack, tagged with its pytest
  session. A session owner tears the stack down only when no live process of *another* session
  is registered. A crashed process leaves a file behind, but its pid is dead (or was reused by a
  process with another start time), so it is ignored and cleaned up: a crash never tears the
  stack down and never keeps it up forever.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

#: How long a process waits for another one to finish building/starting the stack.
SETUP_WAIT_SECONDS = 1800.0


@dataclass(frozen=True)
class User:
    pid: int
    start_time: str  # /proc start time, so a recycled pid is not mistaken for the original process
    session: str
    role: str  # "controller", "worker" or "cli": for humans reading the directory


def process_start_time(pid: int) -> str:
    """Start time of ``pid`` in clock ticks since boot ("" when unknown, e.g. not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may contain spaces; fields after its closing paren are safe.
    return stat.rsplit(")", 1)[1].split()[19]


def is_alive(user: User) -> bool:
    try:
        os.kill(user.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return not user.start_time or process_start_time(user.pid) in ("", user.start_time)


class Coordinator:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.users_dir = state_dir / "users"
        self.users_dir.mkdir(parents=True, exist_ok=True)
        self._users_lock = FileLock(str(state_dir / "users.lock"))
        self.setup_lock = FileLock(str(state_dir / "setup.lock"))

    @contextmanager
    def exclusive(self, say=print, timeout: float = SETUP_WAIT_SECONDS) -> Iterator[None]:
        """Hold the setup lock; tell the user when we have to wait for another process."""
        try:
            self.setup_lock.acquire(timeout=0)
        except Timeout:
            say(
                f"another process is starting or stopping this stack; waiting (lock {self.setup_lock.lock_file})"
            )
            try:
                self.setup_lock.acquire(timeout=timeout)
            except Timeout:
                raise TimeoutError(
                    f"waited {timeout:.0f} s for {self.setup_lock.lock_file}; the process holding it may be stuck. "
                    "Check `slurm-dev-cluster status`; delete the lock file only if no harness process is running."
                ) from None
        try:
            yield
        finally:
            self.setup_lock.release()

    def register(self, session: str, role: str, pid: int | None = None) -> User:
        pid = os.getpid() if pid is None else pid
        user = User(pid=pid, start_time=process_start_time(pid), session=session, role=role)
        with self._users_lock:
            self._user_file(pid).write_text(json.dumps(asdict(user)))
        return user

    def unregister(self, pid: int | None = None) -> None:
        with self._users_lock:
            self._user_file(os.getpid() if pid is None else pid).unlink(missing_ok=True)

    def live_users(self, *, exclude_session: str | None = None) -> list[User]:
        """Registered processes still alive; stale registrations are deleted on the way."""
        live = []
        with self._users_lock:
            for path in sorted(self.users_dir.glob("*.json")):
                user = _read_user(path)
                if user is None or not is_alive(user):
                    path.unlink(missing_ok=True)
                elif user.session != exclude_session:
                    live.append(user)
        return live

    def _user_file(self, pid: int) -> Path:
        return self.users_dir / f"{pid}.json"


def _read_user(path: Path) -> User | None:
    try:
        return User(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # half-written or foreign file: treat as stale


class EventLog:
    """Append-only, human-readable record of what happened to the stack (``compose-up``, ``reuse``,
    ``compose-down``, ``adopt``, ``fault`` ...), each written after it happened.

    Tests read it to check, e.g., that ``pytest -n 4`` ran ``compose up`` exactly once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock")

    def record(self, event: str, **fields: object) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in fields.items())
        with self._lock, self.path.open("a") as fh:
            fh.write(f"{stamp} pid={os.getpid()} event={event} {extras}".rstrip() + "\n")

    @contextmanager
    def outcome(self, event: str, **fields: object) -> Iterator[None]:
        """Record ``event`` once the block is over, with ``result=ok`` or ``result=failed``: the log says what
        happened, never what was only attempted."""
        try:
            yield
        except BaseException as exc:
            self.record(event, **fields, result="failed", error=type(exc).__name__)
            raise
        self.record(event, **fields, result="ok")

    def events(self) -> list[dict[str, str]]:
        """Parsed lines: ``{"time": ..., "pid": ..., "event": ..., <fields>}``."""
        if not self.path.exists():
            return []
        parsed = []
        for line in self.path.read_text().splitlines():
            stamp, _, rest = line.partition(" ")
            entry = {"time": stamp}
            entry.update(part.split("=", 1) for part in rest.split() if "=" in part)
            parsed.append(entry)
        return parsed


class ClusterLock:
    """Readers-writer lock over the running cluster, between the processes of every test session.

    A fault (a paused slurmctld, production defaults, a stopped node) changes the cluster for everyone,
    so a test injecting one must be alone on it: each cluster test holds this lock *shared* while it
    runs; the ``faults`` fixture holds it *exclusively*. ``fcntl.flock`` on ``cluster.lock``; a second
    lock, the turnstile, is taken by a waiting writer, so a stream of shared holders cannot starve it
    (readers pass the turnstile before they take their shared lock). A process that dies releases
    its locks with its file descriptors.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "cluster.lock"
        self.turnstile = state_dir / "cluster.turnstile"

    @contextmanager
    def shared(self, say=print, timeout: float = SETUP_WAIT_SECONDS) -> Iterator[None]:
        with _flocked(self.turnstile, fcntl.LOCK_EX, say, timeout, "a fault test is waiting for the cluster"):
            pass  # only queue behind a writer that waits; never hold the turnstile while testing
        with _flocked(self.path, fcntl.LOCK_SH, say, timeout, "a fault test has the cluster to itself"):
            yield

    @contextmanager
    def exclusive(self, say=print, timeout: float = SETUP_WAIT_SECONDS) -> Iterator[None]:
        with ExitStack() as held:
            with _flocked(
                self.turnstile, fcntl.LOCK_EX, say, timeout, "another fault test waits for the cluster"
            ):
                held.enter_context(
                    _flocked(
                        self.path,
                        fcntl.LOCK_EX,
                        say,
                        timeout,
                        "other tests use the cluster; a fault needs it alone",
                    )
                )
            yield


@contextmanager
def _flocked(path: Path, mode: int, say, timeout: float, why: str) -> Iterator[None]:
    """``flock(path, mode)``, polled so that the wait is bounded and announced once."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"waited {timeout:.0f} s for {path} ({why}); is a test stuck? "
                        "`slurm-dev-cluster status` lists the processes using the stack"
                    ) from None
                if not announced:
                    say(f"waiting: {why} (lock {path})")
                    announced = True
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock
