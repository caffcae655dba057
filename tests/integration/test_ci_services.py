"""examples/ci/github-services.yml, run as a GitHub runner would run it (tests/integration/github_runner.py):
the dev cluster as service containers created from the YAML alone, started before the checkout; then the
checkout, the example's own steps, a smoke job and an SDK workflow from the host over the mapped SSH port.

Brings up its own containers (not the kit's stack): no `integration` marker, so the kit starts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from slurm_dev_cluster import ssh
from slurm_dev_cluster.stack import IMAGE_REPOSITORY, Stack

from . import github_runner as gh

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "ci" / "github-services.yml"
PUBLISHED = "ghcr.io/slurm-sdk/slurm-sdk-dev"
CODE_MOUNT = "/opt/slurm_sdk_dev"
TIMEOUT = 240

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="emulates the runner's user (uid 1001): needs root")


def local_images() -> dict[str, str]:
    """The example's published images -> this checkout's images (built here when missing)."""
    stack = Stack(REPO_ROOT, project=f"hci-img-{uuid.uuid4().hex[:6]}", say=lambda _: None)
    stack.build(pull=False)
    base, accounting = stack.images(IMAGE_REPOSITORY)
    release = stack.release
    return {f"{PUBLISHED}:{release}": base, f"{PUBLISHED}:{release}-accounting": accounting}


def test_example_services_block_parses_as_documented():
    """What the runner needs: no service has a command, none picks a network, the compute nodes are told
    their names, and every service's health check says when it takes jobs."""
    jobs = yaml.safe_load(EXAMPLE.read_text())["jobs"]
    for job in jobs.values():
        services = job["services"]
        assert set(services) == {"slurmdbd", "slurmctld", "c1", "c2", "login"}
        for service, spec in services.items():
            assert "command" not in spec and "--network" not in spec["options"]
            assert "--health-cmd" in spec["options"], service
            gh.create_arguments(spec["options"])  # every flag known to the emulation
        assert services["c1"]["env"]["SLURM_NODE_NAME"] == "c1"


@pytest.fixture
def runner_job(tmp_path):
    job = gh.Job(EXAMPLE, "integration", local_images())
    try:
        yield job
    finally:
        job.remove()


@pytest.fixture
def runner_root():
    """The runner's directories, where its user (not root) can reach them (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="hci-runner-"))
    try:
        yield root
    finally:
        shutil.rmtree(root)


def test_services_block_runs_jobs_from_the_checkout(runner_job: gh.Job, runner_root: Path, tmp_path):
    from slurm import Cluster, JobFailedError

    workspace, runner_temp = gh.make_runner_dirs(runner_root)
    t0 = time.monotonic()
    runner_job.start_services()
    created = time.monotonic() - t0
    healthy = runner_job.wait_healthy()
    print(
        f"\nservices: created+started in {created:.2f} s, all healthy {created + healthy:.2f} s after the first create"
    )

    # Before the checkout: the code volume is empty. A job fails naming it, not with an ImportError.
    login = runner_job.containers["login"]
    port = runner_job.ports["login"]["22"]
    key = tmp_path / "client_key"
    key.write_text(runner_job.docker.execute(login, ["cat", "/etc/slurm-sdk/ssh/client_ed25519"]) + "\n")
    key.chmod(0o600)
    host_key = " ".join(
        runner_job.docker.execute(login, ["cat", "/etc/slurm-sdk/ssh/host_ed25519.pub"]).split()[:2]
    )
    early = {
        "backend": {
            "type": "ssh",
            "host": "127.0.0.1",
            "port": port,
            "user": "sdk",
            "key_filename": str(key),
            "known_host_key": host_key,
        },
        "packaging": {"type": "none", "pythonpath": [CODE_MOUNT]},
    }
    early_path = tmp_path / "early.yaml"
    early_path.write_text(yaml.safe_dump(early))
    from . import ci_jobs

    with Cluster.from_env(early_path) as cluster:
        job = cluster.submit(ci_jobs.where_am_i)
        with pytest.raises(JobFailedError) as failed:
            job.result(timeout=TIMEOUT)
    text = str(failed.value)
    assert f"code mount {CODE_MOUNT} is empty" in text, text
    assert "ImportError" not in text and "ModuleNotFoundError" not in text, text

    # actions/checkout, then the example's own steps (python and the venv: this host's).
    gh.checkout(REPO_ROOT, workspace)
    runner_job.run_step("code", workspace, runner_temp)
    runner_job.run_step("client", workspace, runner_temp)
    (workspace / ".venv").symlink_to(REPO_ROOT / ".venv")
    smoke = runner_job.run_step("smoke", workspace, runner_temp)
    assert "c1" in smoke.stdout and "c2" in smoke.stdout, smoke.stdout
    # One test of the suite the step runs (all of it is the real CI's job), as root: this host's venv
    # Python lives under /root. No bytecode or cache left in the runner user's workspace.
    narrowed = {
        "PYTEST_ADDOPTS": "-p no:cacheprovider -k test_remote_exception_comes_back_with_its_traceback",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    tests = runner_job.run_step("tests", workspace, runner_temp, narrowed, as_root=True)
    assert " passed" in tests.stdout, tests.stdout[-2000:]

    # From the host over the mapped port: a shell job, and an SDK workflow whose child imports the tree.
    config = Path(runner_job.env_file_values["SLURM_SDK_CONFIG"])
    client = ssh.connect("127.0.0.1", port, "sdk", key, host_key)
    try:
        code, out, err = ssh.run(
            client, "sbatch --wait --parsable -o smoke-%j.out --wrap 'hostname' && cat smoke-*.out"
        )
    finally:
        client.close()
    assert code == 0 and ("c1" in out or "c2" in out), (out, err)
    with Cluster.from_env(config) as cluster:
        seen = cluster.submit(ci_jobs.parent).result(timeout=TIMEOUT)
    assert seen["child"] == f"{CODE_MOUNT}/tests/integration/ci_jobs.py", seen
    assert seen["child_host"] in ("c1", "c2"), seen
    print(f"services: first SDK workflow done {time.monotonic() - t0:.2f} s after the first create")


def test_services_block_with_the_job_in_a_container(runner_root: Path):
    """integration-in-container: the job's steps run in a container on the services' network. It reaches
    the login node as ``login:22`` (nothing published), fills the code volume from its own checkout, and
    runs the suite's SDK tests and an SDK workflow through the config its own step wrote."""
    images = local_images()
    # The example's python:3.11-slim is not on this host (no registry): the node image stands in, with
    # this host's Python and venv mounted at their own paths for the steps that run Python.
    job = gh.Job(
        EXAMPLE, "integration-in-container", {**images, "python:3.11-slim": images[next(iter(images))]}
    )
    host_python = str(Path(sys.base_prefix).resolve())
    try:
        workspace, _ = gh.make_runner_dirs(runner_root)
        job.start_services()
        job.wait_healthy()
        job.start_job_container(
            runner_root / "work", [(host_python, host_python, "ro"), (str(REPO_ROOT), str(REPO_ROOT), "ro")]
        )
        inside = f"{job.CONTAINER_WORK}/{workspace.relative_to(runner_root / 'work')}"
        gh.checkout(REPO_ROOT, workspace)
        job.run_step_in_container("code", inside)
        job.run_step_in_container("client", inside)
        config = job.env_file_values["SLURM_SDK_CONFIG"]
        assert config.startswith(f"{job.CONTAINER_WORK}/_temp/"), config
        (workspace / ".venv").symlink_to(REPO_ROOT / ".venv")  # the example's install step, done ahead
        quiet = {
            "PYTEST_ADDOPTS": "-p no:cacheprovider -k test_remote_exception_comes_back_with_its_traceback"
        }
        tests = job.run_step_in_container("tests", inside, {**quiet, "PYTHONDONTWRITEBYTECODE": "1"})
        assert " passed" in tests, tests[-2000:]
        workflow = (
            "import json; from slurm import Cluster; from tests.integration import ci_jobs\n"
            f"with Cluster.from_env({config!r}) as cluster:\n"
            "    print(json.dumps(cluster.submit(ci_jobs.parent).result(timeout=240)))\n"
        )
        out = job.docker.execute(
            job.containers["<job>"],
            [".venv/bin/python", "-c", workflow],
            workdir=inside,
            envs={"PYTHONDONTWRITEBYTECODE": "1"},
        )
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["child"] == f"{CODE_MOUNT}/tests/integration/ci_jobs.py", seen
        assert seen["child_host"] in ("c1", "c2"), seen
    finally:
        job.remove()
