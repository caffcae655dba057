"""The pytest plugin's fixtures (listed in ``slurm_dev_cluster.pytest_plugin``, which registers them) and the
helpers tests use to build their own clusters (``ssh_backend``, ``packaging_for``, ``test_import_roots``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from filelock import Timeout

from slurm_dev_cluster.plugin_harness import defaults_of, harness_of, needs_cluster, unavailable
from slurm_dev_cluster.slurm_defaults import DEV, defaults_names

# The stack, its faults and air gap are imported in the fixtures that use them: they bring in
# python_on_whales and paramiko (~0.4 s), which every pytest process loading the plugin would pay.
if TYPE_CHECKING:
    from slurm_dev_cluster.faults import Faults
    from slurm_dev_cluster.stack import Connection, Stack

#: The index pip uses inside the containers (no pip.conf names another one).
INDEX_URL = "https://pypi.org/simple/"
INDEX_PROBE_SECONDS = 5.0
#: How long a test waits for another process's air-gapped (or egress-needing) test to finish.
EGRESS_WAIT_SECONDS = 900.0


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_container(pytestconfig: pytest.Config) -> Connection:
    return harness_of(pytestconfig).require()


@pytest.fixture(scope="session")
def slurm_stack(pytestconfig: pytest.Config, slurm_container: Connection) -> Stack:
    return harness_of(pytestconfig).stack


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
    from slurm_dev_cluster.faults import Faults

    harness = harness_of(pytestconfig)
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
    if not needs_cluster(request.node) or harness_of(request.config).existing_cluster is not None:
        yield
        return
    wanted = defaults_of(request.node)
    if wanted not in defaults_names():
        pytest.fail(f"@pytest.mark.slurm_defaults({wanted!r}): choose one of {', '.join(defaults_names())}")
    if wanted == DEV and "faults" not in request.fixturenames:
        harness = harness_of(request.config)
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

        roots = harness_of(request.config).settings.host_import_roots()
        cluster = Cluster(
            backend=LocalCommandBackend(state_dir=str(tmp_path / "local")),
            job_root=str(tmp_path / "jobs"),
            **({"packaging": {"type": "none", "pythonpath": roots}} if roots else {}),
        )
    elif harness_of(request.config).existing_cluster is not None:
        cluster = Cluster.from_env(harness_of(request.config).existing_cluster)
    else:
        connection: Connection = request.getfixturevalue("slurm_container")
        sdk_path: str = request.getfixturevalue("sdk_on_cluster")
        settings = harness_of(request.config).settings
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
    settings = harness_of(request.config).settings
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
    from slurm_dev_cluster import airgap

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
    from slurm_dev_cluster import airgap

    with _egress_guard(slurm_stack):
        try:
            airgap.block_egress(slurm_stack)
        except airgap.AirgapError as exc:
            unavailable(f"cannot air-gap the stack: {exc}")
        try:
            yield slurm_stack
        finally:
            airgap.restore_egress(slurm_stack)


@pytest.fixture
def egress_open(slurm_stack: Stack) -> Iterator[Stack]:
    """The stack with its egress open for the whole test: no ``airgapped`` test runs meanwhile."""
    from slurm_dev_cluster import airgap

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
