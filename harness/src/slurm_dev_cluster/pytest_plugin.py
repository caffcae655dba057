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
runs while a node is down or slurmctld is paused. Tests without the cluster run first, and those that take
the cluster alone form two xdist groups, the fault tests and the tests on production defaults: under
``--dist loadgroup`` each worker starts with one, on a stack of its own, then runs the rest
(``plugin_harness.schedule``).
Without Docker, integration tests skip with the reason; with CI=true they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slurm_dev_cluster import kit, plugin_fixtures

# The fixtures live in plugin_fixtures; pytest registers those it finds in this plugin module, so each is
# imported by name here. The helpers are re-exported for tests that build their own clusters.
from slurm_dev_cluster.plugin_fixtures import (  # noqa: F401
    _cluster_access,
    airgapped,
    cluster_mode,
    egress_open,
    faults,
    index_url,
    packaging_for,
    sdk_on_cluster,
    slurm_cluster,
    slurm_container,
    slurm_stack,
    ssh_backend,
    test_import_roots,
)
from slurm_dev_cluster.plugin_harness import (
    HARNESS_KEY,
    KEEP_ENV,
    MARKERS,
    Harness,
    harness_of,
    name_groups,
    needs_cluster,
    schedule,
)

#: Fixtures defined by the kit take the locks they need themselves (see pytest_fixture_setup).
KIT_FIXTURE_MODULES = frozenset({__name__, plugin_fixtures.__name__})


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
    config.stash[HARNESS_KEY] = Harness(config)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    schedule(items)  # before xdist's own hook, which reads the xdist_group markers this adds
    yield
    name_groups(config, items)  # after it: its group suffix is lost on pytest >= 9.2


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller -> worker: share the session id (so the controller knows who started the stack)
    and the inputs hash (so all workers expect the same stack)."""
    harness = harness_of(node.config)
    node.workerinput["slurm_sdk_session"] = harness.session
    node.workerinput["slurm_sdk_inputs"] = harness.inputs
    node.workerinput["slurm_sdk_owner_pid"] = harness.owner_pid


@pytest.hookimpl(tryfirst=True)  # before fixtures: the `faults` fixture's exclusive lock must come after
def pytest_runtest_setup(item: pytest.Item) -> None:
    harness = harness_of(item.config)
    harness.item_in_setup = item
    if needs_cluster(item) and harness.existing_cluster is None:
        harness.require()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fixture wider than one test (module, class, package, session) that a cluster test needs is set up
    before that test's own shared lock is taken; it gets the shared lock for its setup, so a fault test on
    another worker (a dropped SSH session, a restarted login node) never lands in the middle of it. The
    kit's own fixtures take the locks they need themselves (a lock taken twice here could wait on itself)."""
    harness = harness_of(request.config)
    item = harness.item_in_setup
    if (
        fixturedef.scope == "function"
        or fixturedef.func.__module__ in KIT_FIXTURE_MODULES
        or item is None
        or not needs_cluster(item)
        or harness.existing_cluster is not None
    ):
        return (yield)
    with harness.cluster_lock.shared(say=harness._say):
        return (yield)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    harness_of(session.config).finish()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    harness = harness_of(item.config)
    if report.failed and needs_cluster(item) and harness.connection is not None:
        report.sections.extend(harness.failure_sections())
    return report
