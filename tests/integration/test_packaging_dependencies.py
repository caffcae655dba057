"""A user's project with dependencies runs on the real cluster through `wheel` and `sync` packaging.

The sample project (tests/sample_project) is not on the nodes' PYTHONPATH and its dependencies (humanize,
msgpack) are not installed there: every job proves where each import came from. Each test uses its own
cache root on the cluster, so "cold" really is cold; the wheelhouse and resolution caches on this host
are shared, as they would be for a user.
"""

from __future__ import annotations

import shlex
import sys
import threading
import uuid
from pathlib import Path

import pytest

from slurm import Cluster
from slurm.errors import ConfigError, DependencyError
from slurm.packaging.environment import index_reachable
from slurm_dev_cluster.pytest_plugin import ssh_backend
from slurm_dev_cluster.stack import REPO_ROOT, SDK_MOUNT, debian_release
from slurm_dev_cluster.wheelhouse import target_for

SAMPLE = REPO_ROOT / "tests/sample_project"
sys.path.insert(0, str(SAMPLE / "src"))  # this host imports the project from source, as its developer would
import sample_app  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT = 600


@pytest.fixture
def cache_root(login_transport, request):
    """A fresh cache root on the cluster. Unless the test air-gaps the stack, the stack's egress stays
    open for the whole test (``auto`` may have chosen the index), so no air-gapped test runs meanwhile."""
    if "airgapped" not in request.fixturenames:
        request.getfixturevalue("egress_open")
    root = f"{login_transport.home()}/.slurm-sdk/test-envs/{uuid.uuid4().hex[:10]}"
    yield root
    login_transport.run(f"rm -rf {shlex.quote(root)}", check=False)


def packaging(kind: str, cache_root: str, **options) -> dict:
    where = "project_dir" if kind == "wheel" else "source_dir"
    return {"type": kind, where: str(SAMPLE), "cache_root": cache_root, **options}


def run_report(connection, config: dict, n: int = 1234567):
    with Cluster(backend=ssh_backend(connection), packaging=config) as cluster:
        seen = cluster.submit(sample_app.report, n).result(timeout=TIMEOUT)
        return seen, cluster.packaging


def assert_ran_in(seen: dict, env: str, project_root: str) -> None:
    assert seen["words"] == "1.2 million" and seen["roundtrip"] == "1234567"  # both dependencies work
    assert seen["python"] == f"{env}/bin/python"
    for module in ("humanize", "msgpack"):
        assert seen[module].startswith(f"{env}/lib/"), seen
    assert seen["sample_app"].startswith(project_root + "/"), seen
    assert not seen["sample_app"].startswith(SDK_MOUNT)


@pytest.mark.parametrize("kind", ["wheel", "sync"])
def test_project_with_dependencies_runs_and_the_second_submission_reuses_the_env(
    kind, slurm_container, cache_root, login_transport
):
    seen, first = run_report(slurm_container, packaging(kind, cache_root))
    env = first.last_environment
    assert env.built and env.path.startswith(cache_root + "/envs/")
    assert_ran_in(seen, env.path, first.layer if kind == "wheel" else first.remote_dir)
    assert first.remote_dir.rsplit("/", 1)[1].startswith("sample_project-") if kind == "sync" else True

    seen_again, second = run_report(slurm_container, packaging(kind, cache_root))
    assert second.last_environment.path == env.path and not second.last_environment.built
    assert seen_again == seen
    if kind == "wheel":
        assert second.layer == first.layer  # the same project layer, found whole
    # Nothing half-built or temporary left beside it.
    listing = login_transport.run(f"ls -A {shlex.quote(cache_root)}/envs").stdout.split()
    assert sorted(listing) == sorted([Path(env.path).name, Path(env.path).name + ".lock"])


def test_workflow_children_reuse_the_parents_env(slurm_container, cache_root):
    with Cluster(backend=ssh_backend(slurm_container), packaging=packaging("sync", cache_root)) as cluster:
        seen = cluster.submit(sample_app.report_from_child, 7).result(timeout=TIMEOUT)
        env = cluster.packaging.last_environment.path
    assert seen["python"] == f"{env}/bin/python" and seen["msgpack"].startswith(env + "/")


def test_concurrent_submitters_build_the_env_once(slurm_container, cache_root):
    results: list = []

    def submit() -> None:
        results.append(run_report(slurm_container, packaging("sync", cache_root)))

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    envs = [strategy.last_environment for _, strategy in results]
    assert len({env.path for env in envs}) == 1
    # Whoever lost the race to the lock found the venv ready instead of building it again.
    assert sum(env.built for env in envs) == 1, envs
    [env] = {env.path for env in envs}
    assert all(seen["python"] == f"{env}/bin/python" for seen, _ in results)


def test_a_changed_or_vanished_interpreter_gets_a_new_env(slurm_container, cache_root, login_transport):
    def sync_with(python: str) -> dict:  # wheelhouse: three cold builds without asking the index thrice
        return packaging("sync", cache_root, python=python, install_from="wheelhouse")

    q = shlex.quote
    home = login_transport.home()
    link_a, link_b = f"{home}/py-{uuid.uuid4().hex[:8]}-a", f"{home}/py-{uuid.uuid4().hex[:8]}-b"
    login_transport.run(f'ln -s "$(readlink -f /usr/bin/python3)" {q(link_a)}')
    try:
        seen, first = run_report(slurm_container, sync_with(link_a))
        env_a = first.last_environment.path
        assert_ran_in(seen, env_a, first.remote_dir)

        # The interpreter moves: the env made from it is not reused, a new one is built from the new path.
        login_transport.run(f"mv {q(link_a)} {q(link_b)}")
        seen_b, moved = run_report(slurm_container, sync_with(link_b))
        env_b = moved.last_environment
        assert env_b.built and env_b.path != env_a
        assert_ran_in(seen_b, env_b.path, moved.remote_dir)
        # The old interpreter path is gone: submitting with it fails at submit, naming the option.
        with pytest.raises(ConfigError, match=r"does not run on the cluster.*option python"):
            run_report(slurm_container, sync_with(link_a))

        # Same key, but the venv's interpreter link vanished (what a Debian upgrade does to an old venv):
        # detected and rebuilt, not "bin/python: No such file or directory".
        login_transport.run(f"rm -f {q(env_b.path)}/bin/python")
        seen_c, repaired = run_report(slurm_container, sync_with(link_b))
        assert repaired.last_environment.path == env_b.path and repaired.last_environment.built
        assert seen_c["roundtrip"] == "1234567"
        # (A half-built venv, without .ready, is rebuilt the same way: tests/fast covers the script.)
    finally:
        login_transport.run(f"rm -f {q(link_a)} {q(link_b)}", check=False)


def test_unresolvable_dependency_fails_at_submit_and_queues_nothing(
    slurm_container, cache_root, login_transport, tmp_path
):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("humanize>=4\nno-such-package-for-slurm-sdk-zz>=1\n")
    job_root = f"{cache_root}/jobs"
    config = packaging("sync", cache_root, requirements=str(requirements))
    with Cluster(backend=ssh_backend(slurm_container), packaging=config, job_root=job_root) as cluster:
        with pytest.raises(DependencyError) as info:
            cluster.submit(sample_app.report, 1)
    message = str(info.value)
    assert "cannot install no-such-package-for-slurm-sdk-zz" in message
    assert f"CPython {target_for(debian_release()).python}" in message  # the nodes' Python
    assert "_x86_64" in message and "Fix:" in message
    # No job directory nor submission record (the job root itself may exist: it is secured first).
    leftovers = login_transport.run(
        f"find {shlex.quote(job_root)} -mindepth 1 2>/dev/null || true"
    ).stdout.split()
    assert not [path for path in leftovers if "report" in path], leftovers
    assert not login_transport.exists(f"{cache_root}/envs")  # and no half-made env


def test_air_gapped_cluster_gets_a_wheelhouse(airgapped, slurm_container, cache_root, login_transport):
    """The nodes cannot reach any index: `auto` notices within seconds and ships the wheels from here."""
    assert not index_reachable(login_transport, "python3", "humanize")
    for kind in ("wheel", "sync"):  # own cache roots: both would share one venv (same dependencies)
        seen, strategy = run_report(slurm_container, packaging(kind, f"{cache_root}/{kind}"))
        env = strategy.last_environment
        assert env.built and env.install_from == "wheelhouse"
        assert_ran_in(seen, env.path, strategy.layer if kind == "wheel" else strategy.remote_dir)


def test_online_cluster_installs_from_its_index(slurm_container, cache_root, login_transport):
    if not index_reachable(login_transport, "python3", "humanize"):
        pytest.skip(
            "the nodes' pip cannot reach a package index (no route, or the site CA is not trusted in "
            "the image): the index path cannot run here"
        )
    seen, strategy = run_report(slurm_container, packaging("sync", cache_root, install_from="index"))
    assert strategy.last_environment.install_from == "index"
    assert_ran_in(seen, strategy.last_environment.path, strategy.remote_dir)
