"""The pytest plugin's per-process view of the dev cluster (``Harness``): kit settings, the stack started
lazily under the session's locks, and its teardown by the session that started it.

``slurm_dev_cluster.pytest_plugin`` (the hooks) and ``slurm_dev_cluster.plugin_fixtures`` (the fixtures)
reach it through ``harness_of(config)``.
"""

from __future__ import annotations

import os
import sys
import uuid
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slurm_dev_cluster import kit
from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.inputs import stack_inputs
from slurm_dev_cluster.locks import ClusterLock, Coordinator
from slurm_dev_cluster.naming import alone_project, default_project, state_root
from slurm_dev_cluster.slurm_defaults import DEV, defaults_names

# The stack and its preflight are imported when a test first needs the cluster: they bring in
# python_on_whales and paramiko (~0.4 s), which every pytest process loading this plugin would pay.
if TYPE_CHECKING:
    from slurm_dev_cluster.stack import Connection, Stack

MARKERS = {
    "integration": "needs the Docker dev cluster; runs over SSH with packaging 'none'",
    "slow": "takes tens of seconds or more (deselect with -m 'not slow')",
    "wheel_packaging": "needs the dev cluster; ships the SDK to the cluster as a wheel",
    "slurm_defaults(name)": "Slurm defaults the test runs with: 'dev' (the default) or 'production' "
    "(Slurm's stock behaviour; the test gets the cluster to itself)",
}
CLUSTER_MARKERS = ("integration", "wheel_packaging")
KEEP_ENV = "SLURM_SDK_KEEP_CLUSTER"
LOG_TAIL_LINES = 50
#: "0" keeps the tests that take the cluster alone on the session's one stack (a host short of memory).
ALONE_STACK_ENV = "SLURM_SDK_ALONE_STACK"
#: The lane of a process that uses the session's stack; a process that took one of the groups of tests that
#: take the cluster alone uses that group's stack, and its lane is the group's name (``alone_group``).
SHARED = "shared"


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def unavailable(reason: str) -> None:
    """Skip for a host capability this machine lacks; under CI=true that is a failure instead."""
    if truthy(os.environ.get("CI")):
        pytest.fail(f"{reason} (CI=true: failing instead of skipping)")
    pytest.skip(reason)


class Harness:
    """Per-process view of the stack: started lazily, shared by every test of the process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = _kit_settings(config)
        workerinput = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        self.session = (workerinput or {}).get("slurm_sdk_session") or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # The process whose end ends the session (the xdist controller): a stack it owns outlives it
        # only if it died without tearing down, and the next session then adopts the stack.
        self.owner_pid = int((workerinput or {}).get("slurm_sdk_owner_pid") or os.getpid())
        # The image inputs as the session began: every worker expects the same stack, even if files change.
        self.inputs = (workerinput or {}).get("slurm_sdk_inputs") or stack_inputs(self.settings)
        self.keep = bool(config.getoption("keep_cluster")) or truthy(os.environ.get(KEEP_ENV))
        self.workers = int((workerinput or {}).get("workercount") or 1)
        self.connection: Connection | None = None
        #: Which stack this process uses (``SHARED`` or ``ALONE``), decided by its first cluster test.
        self.lane: str | None = None
        self._stacks: dict[str, Stack] = {}
        self._failure: tuple[str, str] | None = None  # ("skip" | "fail", reason), remembered per process
        self.item_in_setup: pytest.Item | None = None  # the test whose fixtures are being set up

    @property
    def stack(self) -> Stack:
        """The stack this process's cluster tests use (the session's until a lane is chosen)."""
        return self.stack_of(self.lane or SHARED)

    def stack_of(self, lane: str) -> Stack:
        if lane not in self._stacks:
            from slurm_dev_cluster.stack import Stack

            settings = replace(self.settings, project=self._project_of(lane))
            self._stacks[lane] = Stack.for_kit(settings, say=self._say)
        return self._stacks[lane]

    @property
    def _shared_project(self) -> str:
        return self.settings.project or default_project(self.settings.project_dir.resolve())

    def _project_of(self, lane: str) -> str:
        """The session's project, or for a group that takes the cluster alone ``<project>-alone`` (faults on
        the dev defaults) or ``<project>-alone-<defaults>``."""
        if lane == SHARED:
            return self._shared_project
        return alone_project(self._shared_project, alone_groups()[lane])

    def _lane_for(self, item: pytest.Item | None) -> str:
        """The stack of a process whose first cluster test is ``item``. Under ``-n 2 --dist loadgroup`` each
        worker gets one of the two groups of tests that take the cluster alone (the fault tests on the dev
        defaults, the tests run with the production defaults: the largest units of work) as its first, so
        it takes a stack of its own: the faults it injects and the Slurm defaults it switches stall nobody,
        the two groups' waits on Slurm's timers overlap, and the tests it runs after its group (any test)
        use that stack too, so every session or module fixture of the process sees one cluster. A worker
        without a group (``-n 4``) uses the session's stack. One process running both kinds (``-n 0``,
        ``--dist load``) keeps the session's one stack, where a test that takes the cluster alone holds it
        exclusively."""
        split = (
            self.is_worker
            and self.workers > 1
            and getattr(self.config.option, "loadgroup", False)
            and (os.environ.get(ALONE_STACK_ENV) or "1").strip() != "0"
        )
        group = alone_group(item) if split and item is not None else None
        return group or SHARED

    @property
    def coordinator(self) -> Coordinator:
        return Coordinator(self.stack.state_dir)

    @property
    def cluster_lock(self) -> ClusterLock:
        return ClusterLock(self.stack.state_dir)

    def _say(self, message: str) -> None:
        role = f"worker {os.environ.get('PYTEST_XDIST_WORKER', '?')}" if self.is_worker else "harness"
        with self._uncaptured():
            # stderr: an xdist worker's stdout never reaches the terminal, its stderr does.
            print(f"[{role}] {message}", file=sys.stderr, flush=True)

    def _uncaptured(self):
        capman = self.config.pluginmanager.getplugin("capturemanager")
        return capman.global_and_fixture_disabled() if capman else nullcontext()

    @property
    def existing_cluster(self) -> Path | None:
        """The SDK config of a real cluster to use instead of a dev cluster (``--existing-cluster``)."""
        return self.settings.existing_cluster

    def require(self) -> Connection:
        """The running stack, started if needed; skips or fails the test when that is impossible."""
        if self.existing_cluster is not None:
            pytest.skip(
                f"needs the Docker dev cluster, but the session uses an existing cluster "
                f"({self.existing_cluster}, --existing-cluster)"
            )
        if self.lane is None:
            self.lane = self._lane_for(self.item_in_setup)
            if self.lane != SHARED:
                self._say(
                    f"this worker runs the tests of {self.lane}, which take the cluster alone, on a stack of "
                    f"their own: {self.stack.project} ({ALONE_STACK_ENV}=0 keeps them on the session's stack)"
                )
        if self.connection is None and self._failure is None:
            self._start()
        if self._failure is not None:
            action, reason = self._failure
            (pytest.skip if action == "skip" else pytest.fail)(reason)
        assert self.connection is not None
        return self.connection

    def _start(self) -> None:
        from slurm_dev_cluster.preflight import PreflightError

        try:
            self.coordinator.register(self.session, "worker" if self.is_worker else "controller")
            with self.cluster_lock.shared(say=self._say):  # never probe a cluster while a fault is on
                self.connection = self.stack.ensure_up_shared(
                    self.coordinator, self.session, self.inputs, owner_pid=self.owner_pid
                ).connection
        except PreflightError as exc:
            in_ci = truthy(os.environ.get("CI"))
            skip = exc.unavailable and not in_ci
            hint = "" if skip or not exc.unavailable else " (CI=true: failing instead of skipping)"
            self._failure = ("skip" if skip else "fail", f"{exc}{hint}")
        except (StackError, TimeoutError) as exc:
            self._failure = ("fail", str(exc))

    def finish(self) -> None:
        """Unregister; the session owner then stops each stack this session started (the session's, and
        the ones workers started for the tests that take the cluster alone)."""
        if self.existing_cluster is not None:
            return  # nothing was brought up
        if self.is_worker:
            if self.lane is not None:
                self.coordinator.unregister()
                if self.connection is not None:
                    self.stack.events.record("user-done", role="worker", session=self.session)
            return
        for lane in (SHARED, *alone_groups()):
            self._finish_stack(lane)

    def _finish_stack(self, lane: str) -> None:
        project = self._project_of(lane)
        if lane not in self._stacks and not (state_root() / project / "state.json").exists():
            return  # this stack was never started: nothing to do (and no state dir made)
        stack = self.stack_of(lane)
        coordinator = Coordinator(stack.state_dir)
        coordinator.unregister()
        state = stack.read_state()
        if state.get("started_by") != self.session and not state.get("teardown_requested"):
            return
        if self.keep:
            self._say(
                f"keeping stack {stack.project} up (--keep-cluster / {KEEP_ENV}); "
                f"stop it with `SLURM_SDK_PROJECT={stack.project} slurm-dev-cluster down`"
            )
            # Kept: the user's now, like a stack from `harness up` (never adopted, never torn down by pytest).
            stack.update_state(teardown_requested=False, started_by="kept", owner=None)
            return
        try:
            with coordinator.exclusive(say=self._say):
                others = coordinator.live_users(exclude_session=self.session)
                if others:
                    pids = ", ".join(str(u.pid) for u in others)
                    self._say(
                        f"not stopping stack {stack.project}: still used by pid(s) {pids}; "
                        "the last session to finish stops it"
                    )
                    stack.update_state(teardown_requested=True)
                else:
                    stack.down(self.session, by=f"the end of pytest session {self.session}")
        except Exception as exc:  # a failed teardown must not hide the test results
            self._say(
                f"stopping the stack failed: {exc}; run `SLURM_SDK_PROJECT={stack.project} slurm-dev-cluster down`"
            )

    def failure_sections(self) -> list[tuple[str, str]]:
        stack = self.stack
        return [
            (f"compose logs (last {LOG_TAIL_LINES} lines per service)", stack.logs_tail(LOG_TAIL_LINES)),
            ("slurm daemon logs", stack.daemon_logs_tail(LOG_TAIL_LINES)),
        ]


HARNESS_KEY = pytest.StashKey[Harness]()


def harness_of(config: pytest.Config) -> Harness:
    return config.stash[HARNESS_KEY]


def _kit_settings(config: pytest.Config) -> kit.KitSettings:
    """The kit settings: command-line option, else ini option (paths relative to the ini file), else
    environment, else the defaults (the project is pytest's rootdir). A bad setting stops the session
    before any test."""
    base = config.inipath.parent if config.inipath else config.rootpath

    def given(option: str, ini: str) -> object:
        return config.getoption(option) or config.getini(ini) or None

    try:
        return kit.resolve(
            project_dir=given("slurm_project_dir", "slurm_sdk_project_dir"),
            project=given("slurm_project", "slurm_sdk_project"),
            import_roots=given("slurm_import_roots", "slurm_sdk_import_roots"),
            compose_files=given("slurm_compose_files", "slurm_sdk_compose_files"),
            existing_cluster=given("existing_cluster", "slurm_sdk_existing_cluster"),
            base_dir=base,
        )
    except kit.KitError as exc:
        raise pytest.UsageError(f"slurm-sdk test kit: {exc}") from None


def needs_cluster(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) for m in CLUSTER_MARKERS)


#: The xdist group (``--dist loadgroup``) of the fault tests on the dev defaults; the tests run with other
#: Slurm defaults form one group each, ``<ALONE_GROUP>-<defaults>`` (``alone_groups``).
ALONE_GROUP = "slurm-cluster-alone"


def alone_groups() -> dict[str, str]:
    """Each group of tests that take the cluster alone, and the Slurm defaults its stack runs with."""
    return {ALONE_GROUP if name == DEV else f"{ALONE_GROUP}-{name}": name for name in defaults_names()}


def defaults_of(item: pytest.Item) -> str:
    """The Slurm defaults a test asks for (``@pytest.mark.slurm_defaults(name)``); ``dev`` if it names none."""
    marker = item.get_closest_marker("slurm_defaults")
    return str(marker.args[0]) if marker and marker.args else DEV


def alone_group(item: pytest.Item) -> str | None:
    """The group of a cluster test that holds the cluster exclusively (the ``_cluster_access`` fixture's rule,
    read from the item before it runs), or None: one group per Slurm defaults other than ``dev`` it asks
    for (``@pytest.mark.slurm_defaults``), else the fault tests' group if it injects ``faults``. Split so,
    the production tests, which wait out Slurm's stock timers for minutes, can run beside the fault tests
    instead of after them."""
    if not needs_cluster(item):
        return None
    wanted = defaults_of(item)
    if wanted == DEV:
        return ALONE_GROUP if "faults" in getattr(item, "fixturenames", ()) else None
    # An unknown name gets no group: the _cluster_access fixture fails the test, naming the choices.
    return {defaults: group for group, defaults in alone_groups().items()}.get(wanted)


def needs_cluster_alone(item: pytest.Item) -> bool:
    return alone_group(item) is not None


def schedule(items: list[pytest.Item]) -> None:
    """Order the session for two workers sharing one cluster: tests without the cluster first, then the
    cluster tests, and the tests that take the cluster alone marked as xdist groups (``alone_group``).
    Under ``--dist loadgroup`` xdist hands out the largest units of work first, so each worker starts with
    one group, on a stack of its own, and runs its tests one after another; a fault test then stalls
    nobody, where spread over both workers each one idled the other until its own test ended. Without
    ``--dist loadgroup`` the group markers change nothing. The sort is stable: within each part,
    collection order."""
    for item in items:
        group = alone_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=needs_cluster)


def name_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup``, end each grouped test's node id with ``@<group>``, which is how the xdist
    controller learns the groups. pytest-xdist 3.8 writes that suffix to ``item._nodeid``, which pytest 9.2 no
    longer reads (the id lives in ``item._id``), so every group was silently spread over the workers; this
    does the same through pytest's own id type, and does nothing once xdist's suffix is there."""
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers under --dist loadgroup
        return
    for item in items:
        groups = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default"))
            for m in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(groups))
        if groups and not item.nodeid.endswith(suffix):
            from _pytest.nodeid import coerce_node_id  # pytest >= 9.2, the only one that gets here

            item._id = coerce_node_id(item.nodeid + suffix)
