"""pytest plugin: the dev cluster as fixtures.

Installing the ``slurm-dev-cluster`` distribution loads it in every pytest session of that environment (a
``pytest11`` entry point); a project points it at its own source with the kit settings
(``slurm_dev_cluster.kit``): ini ``slurm_sdk_project_dir``, ``slurm_sdk_project``, ``slurm_sdk_import_roots``,
``slurm_sdk_compose_files``, ``slurm_sdk_existing_cluster`` (or the command-line options
``--slurm-project-dir``, ``--slurm-project``, ``--slurm-import-root``, ``--slurm-compose-file``,
``--existing-cluster``, or the environment variables ``SLURM_SDK_PROJECT_DIR`` ...). With
``--existing-cluster CONFIG`` nothing is brought up: ``slurm_cluster`` is ``Cluster.from_env(CONFIG)``
and the fixtures that need the Docker stack skip.

Markers: ``integration`` (needs the dev cluster; runs over SSH with packaging ``none``), ``slow``,
``wheel_packaging`` (like integration, but ships the SDK as a wheel), ``slurm_defaults(name)``: the
Slurm defaults the test needs, ``"dev"`` (what every cluster test gets unless it asks) or
``"production"`` (Slurm's stock behaviour; the test then has the cluster to itself, like ``faults``).

Fixtures:
  slurm_container  session  Connection: project, host, port, user, key_path, host_key, containers
  slurm_stack      session  the harness Stack (exec into containers, logs)
  sdk_on_cluster   session  "/opt/slurm_sdk_dev", after checking every node imports the SDK from there
  cluster_mode     function "local" (unmarked), "ssh" (integration) or "wheel" (wheel_packaging)
  slurm_cluster    function a slurm.Cluster for that mode, closed after the test
  faults           function slurm_dev_cluster.faults.Faults for the stack, the cluster to itself; every fault is
                            undone at teardown, even when the test failed
  airgapped        function the Stack with its egress blocked (slurm_dev_cluster.airgap) for the test, restored after
  egress_open      function the Stack with its egress guaranteed open for the test (no air gap meanwhile)
  index_url        session  the package index the containers' pip uses, when the host reaches it (else skip)

Lifecycle: the first process that needs the stack starts it (or reuses a running one built from the
same inputs) under a file lock; other processes, including xdist workers, wait and reuse it. At the
end, the session owner (the xdist controller, or the only process) stops the stack if this session
started it, unless --keep-cluster / SLURM_SDK_KEEP_CLUSTER=1, or another session still uses it.
A stack started outside the session (``slurm-dev-cluster up``, an earlier --keep-cluster run) is left up.
A stack whose session died (a SIGKILLed controller) is adopted by the next session, which stops it.
Faults change the cluster for everyone: each cluster test holds a shared lock while it runs, a test
using ``faults`` holds it exclusively (``slurm_dev_cluster.locks.ClusterLock``), so under ``-n 2`` no other test
runs while a node is down or slurmctld is paused.
Without Docker, integration tests skip with the reason; with CI=true they fail instead.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from filelock import Timeout

from slurm_dev_cluster import airgap, kit
from slurm_dev_cluster.faults import DEV, Faults, defaults_names
from slurm_dev_cluster.locks import ClusterLock, Coordinator
from slurm_dev_cluster.preflight import PreflightError
from slurm_dev_cluster.stack import Connection, Stack, StackError, stack_inputs, state_root

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


#: The index pip uses inside the containers (no pip.conf names another one).
INDEX_URL = "https://pypi.org/simple/"
INDEX_PROBE_SECONDS = 5.0
#: How long a test waits for another process's air-gapped (or egress-needing) test to finish.
EGRESS_WAIT_SECONDS = 900.0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _unavailable(reason: str) -> None:
    """Skip for a host capability this machine lacks; under CI=true that is a failure instead."""
    if _truthy(os.environ.get("CI")):
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
        self.keep = bool(config.getoption("keep_cluster")) or _truthy(os.environ.get(KEEP_ENV))
        self.connection: Connection | None = None
        self._stack: Stack | None = None
        self._failure: tuple[str, str] | None = None  # ("skip" | "fail", reason), remembered per process
        self.item_in_setup: pytest.Item | None = None  # the test whose fixtures are being set up

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            self._stack = Stack.for_kit(self.settings, say=self._say)
        return self._stack

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
        if self.connection is None and self._failure is None:
            self._start()
        if self._failure is not None:
            action, reason = self._failure
            (pytest.skip if action == "skip" else pytest.fail)(reason)
        assert self.connection is not None
        return self.connection

    def _start(self) -> None:
        try:
            self.coordinator.register(self.session, "worker" if self.is_worker else "controller")
            with self.cluster_lock.shared(say=self._say):  # never probe a cluster while a fault is on
                self.connection = self.stack.ensure_up_shared(
                    self.coordinator, self.session, self.inputs, owner_pid=self.owner_pid
                ).connection
        except PreflightError as exc:
            in_ci = _truthy(os.environ.get("CI"))
            skip = exc.unavailable and not in_ci
            hint = "" if skip or not exc.unavailable else " (CI=true: failing instead of skipping)"
            self._failure = ("skip" if skip else "fail", f"{exc}{hint}")
        except (StackError, TimeoutError) as exc:
            self._failure = ("fail", str(exc))

    def finish(self) -> None:
        """Unregister; the session owner then stops the stack if this session started it."""
        if self.existing_cluster is not None:
            return  # nothing was brought up
        if self._stack is None and not (state_root() / self.stack.project / "state.json").exists():
            return  # no stack was ever started for this checkout: nothing to do (and no state dir made)
        coordinator = self.coordinator
        coordinator.unregister()
        if self.is_worker:
            if self.connection is not None:
                self.stack.events.record("user-done", role="worker", session=self.session)
            return
        state = self.stack.read_state()
        if state.get("started_by") != self.session and not state.get("teardown_requested"):
            return
        if self.keep:
            self._say(
                f"keeping stack {self.stack.project} up (--keep-cluster / {KEEP_ENV}); "
                "stop it with `slurm-dev-cluster down`"
            )
            # Kept: the user's now, like a stack from `harness up` (never adopted, never torn down by pytest).
            self.stack.update_state(teardown_requested=False, started_by="kept", owner=None)
            return
        try:
            with coordinator.exclusive(say=self._say):
                others = coordinator.live_users(exclude_session=self.session)
                if others:
                    pids = ", ".join(str(u.pid) for u in others)
                    self._say(
                        f"not stopping stack {self.stack.project}: still used by pid(s) {pids}; "
                        "the last session to finish stops it"
                    )
                    self.stack.update_state(teardown_requested=True)
                else:
                    self.stack.down(self.session, by=f"the end of pytest session {self.session}")
        except Exception as exc:  # a failed teardown must not hide the test results
            self._say(f"stopping the stack failed: {exc}; run `slurm-dev-cluster down`")

    def failure_sections(self) -> list[tuple[str, str]]:
        stack = self.stack
        return [
            (f"compose logs (last {LOG_TAIL_LINES} lines per service)", stack.logs_tail(LOG_TAIL_LINES)),
            ("slurm daemon logs", stack.daemon_logs_tail(LOG_TAIL_LINES)),
        ]


_HARNESS = pytest.StashKey[Harness]()


def _harness(config: pytest.Config) -> Harness:
    return config.stash[_HARNESS]


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


def _needs_cluster(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) for m in CLUSTER_MARKERS)


# ---- hooks --------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("slurm-sdk", "slurm-sdk dev cluster")
    group.addoption(
        "--keep-cluster",
        action="store_true",
        default=False,
        help=f"leave the dev cluster running after the session (also: {KEEP_ENV}=1). "
        "Default: a stack this session started is stopped at the end.",
    )
    # The test kit (slurm_dev_cluster.kit): which project the dev cluster serves. Options win over ini, ini over env.
    kit_options = [
        (
            "--slurm-project-dir",
            "slurm_project_dir",
            "slurm_sdk_project_dir",
            "string",
            kit.ENV_PROJECT_DIR,
            "the project's source, mounted read-only at /opt/project on every node (default: pytest's rootdir)",
        ),
        (
            "--slurm-project",
            "slurm_project",
            "slurm_sdk_project",
            "string",
            kit.ENV_PROJECT,
            "Compose project name of the stack (default: derived from the project directory's path)",
        ),
        (
            "--slurm-import-root",
            "slurm_import_roots",
            "slurm_sdk_import_roots",
            "linelist",
            kit.ENV_IMPORT_ROOTS,
            "directories of the project put on the nodes' PYTHONPATH (default: src and ., those that exist)",
        ),
        (
            "--slurm-compose-file",
            "slurm_compose_files",
            "slurm_sdk_compose_files",
            "linelist",
            kit.ENV_COMPOSE_FILES,
            "extra compose files layered over the kit's compose.yaml",
        ),
        (
            "--existing-cluster",
            "existing_cluster",
            "slurm_sdk_existing_cluster",
            "string",
            kit.ENV_EXISTING_CLUSTER,
            "SDK config file of a real cluster: the fixtures use it and bring no dev cluster up",
        ),
    ]
    for flag, dest, ini, kind, env, text in kit_options:
        many = kind == "linelist"
        group.addoption(
            flag,
            dest=dest,
            action="append" if many else "store",
            default=None,
            metavar="PATH" if "dir" in dest or "file" in dest or "existing" in dest else "VALUE",
            help=f"{text} (ini: {ini}; env: {env})",
        )
        parser.addini(ini, f"{text} (option {flag}; env {env})", type=kind, default=[] if many else None)


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    config.stash[_HARNESS] = Harness(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller -> worker: share the session id (so the controller knows who started the stack)
    and the inputs hash (so all workers expect the same stack)."""
    harness = _harness(node.config)
    node.workerinput["slurm_sdk_session"] = harness.session
    node.workerinput["slurm_sdk_inputs"] = harness.inputs
    node.workerinput["slurm_sdk_owner_pid"] = harness.owner_pid


@pytest.hookimpl(tryfirst=True)  # before fixtures: the `faults` fixture's exclusive lock must come after
def pytest_runtest_setup(item: pytest.Item) -> None:
    harness = _harness(item.config)
    harness.item_in_setup = item
    if _needs_cluster(item) and harness.existing_cluster is None:
        harness.require()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fixture wider than one test (module, class, package, session) that a cluster test needs is set up
    before that test's own shared lock is taken; it gets the shared lock for its setup, so a fault test on
    another worker (a dropped SSH session, a restarted login node) never lands in the middle of it. The
    kit's own fixtures take the locks they need themselves (a lock taken twice here could wait on itself)."""
    harness = _harness(request.config)
    item = harness.item_in_setup
    if (
        fixturedef.scope == "function"
        or fixturedef.func.__module__ == __name__
        or item is None
        or not _needs_cluster(item)
        or harness.existing_cluster is not None
    ):
        return (yield)
    with harness.cluster_lock.shared(say=harness._say):
        return (yield)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _harness(session.config).finish()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    harness = _harness(item.config)
    if report.failed and _needs_cluster(item) and harness.connection is not None:
        report.sections.extend(harness.failure_sections())
    return report


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_container(pytestconfig: pytest.Config) -> Connection:
    return _harness(pytestconfig).require()


@pytest.fixture(scope="session")
def slurm_stack(pytestconfig: pytest.Config, slurm_container: Connection) -> Stack:
    return _harness(pytestconfig).stack


@pytest.fixture(scope="session")
def sdk_on_cluster(slurm_stack: Stack, slurm_container: Connection) -> str:
    """The SDK path on the cluster, after checking each node's python3 imports ``slurm`` from it."""
    expected = f"{slurm_container.sdk_path}/src/slurm/"
    probe = ["python3", "-c", "import slurm; print(slurm.__file__)"]
    for service in ("login", *slurm_stack.topology.node_names):
        found = slurm_stack.exec(service, probe, user="sdk").strip()
        if not found.startswith(expected):
            pytest.fail(
                f"python3 on {service} imports slurm from {found!r}, not {expected}: the image's "
                "editable install is broken; rebuild with `slurm-dev-cluster down && slurm-dev-cluster up`"
            )
    return slurm_container.sdk_path


@pytest.fixture
def faults(pytestconfig: pytest.Config, slurm_stack: Stack) -> Iterator[Faults]:
    """Fault injection on the stack (``slurm_dev_cluster.faults.Faults``), with the cluster to this test alone;
    everything is undone at teardown, also when the test failed."""
    harness = _harness(pytestconfig)
    with harness.cluster_lock.exclusive(say=harness._say):
        injector = Faults(slurm_stack)
        injector.reset()  # a clean start, whatever a killed process left behind
        try:
            yield injector
        finally:
            injector.reset()


@pytest.fixture(autouse=True)
def _cluster_access(request: pytest.FixtureRequest) -> Iterator[None]:
    """Cluster tests share the cluster (shared lock); ``faults`` and non-dev ``slurm_defaults`` take it alone."""
    if not _needs_cluster(request.node) or _harness(request.config).existing_cluster is not None:
        yield
        return
    marker = request.node.get_closest_marker("slurm_defaults")
    wanted = marker.args[0] if marker and marker.args else DEV
    if wanted not in defaults_names():
        pytest.fail(f"@pytest.mark.slurm_defaults({wanted!r}): choose one of {', '.join(defaults_names())}")
    if wanted == DEV and "faults" not in request.fixturenames:
        harness = _harness(request.config)
        with harness.cluster_lock.shared(say=harness._say):
            yield
        return
    injector: Faults = request.getfixturevalue("faults")
    if wanted != DEV:  # dev is what `faults` starts from
        injector.slurm_defaults(wanted)
    yield


@pytest.fixture
def cluster_mode(request: pytest.FixtureRequest) -> str:
    if request.node.get_closest_marker("wheel_packaging"):
        return "wheel"
    if request.node.get_closest_marker("integration"):
        return "ssh"
    return "local"


@pytest.fixture
def slurm_cluster(request: pytest.FixtureRequest, cluster_mode: str, tmp_path: Path):
    """A ``slurm.Cluster`` for the test's tier, closed afterwards."""
    from slurm.cluster import Cluster

    if cluster_mode == "local":
        from slurm.backends.local import LocalCommandBackend

        roots = _harness(request.config).settings.host_import_roots()
        cluster = Cluster(
            backend=LocalCommandBackend(state_dir=str(tmp_path / "local")),
            job_root=str(tmp_path / "jobs"),
            **({"packaging": {"type": "none", "pythonpath": roots}} if roots else {}),
        )
    elif _harness(request.config).existing_cluster is not None:
        cluster = Cluster.from_env(_harness(request.config).existing_cluster)
    else:
        connection: Connection = request.getfixturevalue("slurm_container")
        sdk_path: str = request.getfixturevalue("sdk_on_cluster")
        settings = _harness(request.config).settings
        roots = test_import_roots(request, sdk_path)
        packaging = packaging_for(cluster_mode, sdk_path, roots, settings.project_dir)
        cluster = Cluster(backend=ssh_backend(connection), packaging=packaging)
    try:
        yield cluster
    finally:
        cluster.close()


def ssh_backend(connection: Connection):
    from slurm.backends.slurm import SSHBackend

    return SSHBackend(
        host=connection.host,
        port=connection.port,
        user=connection.user,
        key_filename=str(connection.key_path),
        known_host_key=connection.host_key,
    )


def test_import_roots(request: pytest.FixtureRequest, sdk_path: str) -> list[str]:
    """Where the test's own modules import from, mapped into the cluster's mount of the project (this
    project at /opt/project), after the configured import roots.

    pytest imports ``tests/integration/test_x.py`` as ``integration.test_x`` (rootdir-relative package
    detection), so the directory to put on the nodes' PYTHONPATH is derived, not hard-coded.
    """
    settings = _harness(request.config).settings
    roots = settings.node_import_roots()
    module = getattr(request, "module", None)
    if module is None or not getattr(module, "__file__", None):
        return roots
    root = Path(module.__file__).resolve().parent
    for _ in module.__name__.split(".")[1:]:
        root = root.parent
    # A test outside the project has no path on the nodes; the project's root itself is on it already
    # or listed among the import roots.
    found = settings.node_path(root)
    return list(dict.fromkeys([*roots, *([found] if found and found != sdk_path else [])]))


def packaging_for(
    mode: str, sdk_path: str, extra_paths: list[str] = (), project_dir: Path | None = None
) -> dict:
    if mode == "wheel":  # the project under test, built and installed as a wheel on the nodes
        if project_dir is None:
            raise ValueError("packaging_for('wheel', ...) needs the project_dir to build")
        return {"type": "wheel", "project_dir": str(project_dir)}
    # The SDK itself imports from the mount through the image's editable install; the repo root and the
    # test packages' root make test modules importable by reference on the nodes.
    return {"type": "none", "pythonpath": list(dict.fromkeys([sdk_path, *extra_paths]))}


# ---- network faults -----------------------------------------------------------------------------


@contextmanager
def _egress_guard(stack: Stack) -> Iterator[None]:
    """One test at a time, across xdist workers, that needs the stack's egress in a known state."""
    try:
        with airgap.egress_lock(stack).acquire(timeout=EGRESS_WAIT_SECONDS):
            yield
    except Timeout:
        pytest.fail(
            f"waited {EGRESS_WAIT_SECONDS:.0f} s for {airgap.egress_lock(stack).lock_file}: another "
            "test holds the stack's air gap; check for a stuck pytest process"
        )


@pytest.fixture
def airgapped(slurm_stack: Stack) -> Iterator[Stack]:
    """The stack with every container cut off from anything outside its network (SSH from the host and
    traffic inside the stack still work); restored after the test, even when it fails."""
    with _egress_guard(slurm_stack):
        try:
            airgap.block_egress(slurm_stack)
        except airgap.AirgapError as exc:
            _unavailable(f"cannot air-gap the stack: {exc}")
        try:
            yield slurm_stack
        finally:
            airgap.restore_egress(slurm_stack)


@pytest.fixture
def egress_open(slurm_stack: Stack) -> Iterator[Stack]:
    """The stack with its egress open for the whole test: no ``airgapped`` test runs meanwhile."""
    with _egress_guard(slurm_stack):
        if airgap.egress_is_blocked(slurm_stack):
            pytest.skip(
                "the stack's egress is blocked (`slurm-dev-cluster airgap on`?); "
                "`slurm-dev-cluster airgap off` opens it"
            )
        yield slurm_stack


@pytest.fixture(scope="session")
def index_url() -> str:
    """The index the containers' pip uses, after a short HTTPS request from the host with its own CA
    trust: a test that needs the index skips with the reason where the host itself cannot reach it."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{INDEX_URL}pip/", timeout=INDEX_PROBE_SECONDS) as response:
            response.read(1)
    except (urllib.error.URLError, OSError) as exc:
        pytest.skip(
            f"the host cannot reach {INDEX_URL} within {INDEX_PROBE_SECONDS:.0f} s ({exc}); "
            "the containers cannot be expected to"
        )
    return INDEX_URL
