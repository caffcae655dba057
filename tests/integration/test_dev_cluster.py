"""The dev cluster itself: jobs over SSH, the live bind mount, and its security properties."""

from __future__ import annotations

import shlex
import uuid

import paramiko
import pytest

from slurm.diagnostics import node_info
from slurm_dev_cluster.kit import PROJECT_MOUNT, SDK_MOUNT
from slurm_dev_cluster.stack import Connection, Stack, StackError

pytestmark = pytest.mark.integration

SECRET_FILES = (
    "/etc/slurm-sdk/munge/munge.key",
    "/etc/slurm-sdk/ssh/host_ed25519",
    "/etc/slurm-sdk/ssh/client_ed25519",
)


def sbatch_wait(transport, script: str, *options: str) -> str:
    """Submit ``script`` with ``sbatch --wait`` from the login node and return the job's output."""
    out = f"~/harness-test-{uuid.uuid4().hex}.out"
    transport.run(
        f"sbatch --wait --parsable {' '.join(options)} -o {out} --wrap {shlex.quote(script)}", timeout=120
    )
    try:
        return transport.run(f"cat {out}").stdout
    finally:
        transport.run(f"rm -f {out}")


def test_a_job_caches_the_sdk_bytecode_outside_the_read_only_mount(login_transport, compute_nodes):
    """The code mounts are read-only, so the image's start-up file (images/code_mounts.py) points Python's
    bytecode at a private directory of the job's user: a task's next start loads the SDK compiled."""
    node = compute_nodes[0]
    script = "python3 -c 'import sys, slurm.node.runner; print(sys.pycache_prefix)'"
    prefix = sbatch_wait(login_transport, script, "-w", node).strip()
    assert prefix.startswith("/tmp/"), prefix
    compiled = f"{prefix}{SDK_MOUNT}/src/slurm/node"  # the source's directory, under the prefix
    listing = sbatch_wait(login_transport, f"stat -c '%a %U' {prefix}; ls {compiled}", "-w", node)
    mode, *files = listing.split("\n")
    assert mode == "700 sdk" and any(name.startswith("runner.cpython-") for name in files), listing


def test_sbatch_over_ssh_runs_on_each_compute_node(login_transport, compute_nodes):
    for node in compute_nodes:
        output = sbatch_wait(login_transport, "echo ran-on=$SLURMD_NODENAME as=$(id -un)", "-w", node)
        assert output.strip() == f"ran-on={node} as=sdk"


@pytest.mark.parametrize(
    "option", ["--export=NONE", "--export=ALL,NAME=value", "--export=NAME=value", "--get-user-env"]
)
def test_a_job_asking_for_the_login_environment_is_refused_at_submission(login_transport, option):
    """slurmd would start a login shell in new namespaces, which an unprivileged node may not create, and
    die of it: slurmctld refuses the job (images/slurm/job_submit.lua) with the cause and the fix, and the
    nodes stay up. The default (--export=ALL, the submitting environment) still runs."""
    refused = login_transport.run(f"sbatch --parsable {option} --wrap true", check=False)
    assert refused.returncode != 0 and refused.stdout.strip() == "", refused
    assert "cannot give a job the user's login environment" in refused.stderr, refused.stderr
    assert "fix: drop the option" in refused.stderr, refused.stderr
    ran = sbatch_wait(login_transport, "echo value=$NAME", "--export=ALL")
    assert ran.strip() == "value=", ran
    assert login_transport.run("sinfo -h -N -t down -o %N").stdout.strip() == "", "a node went down"


def test_a_job_reports_its_slurm_node_name(slurm_cluster, compute_nodes):
    """The runner's log line and the job's own report (slurm.node.name.node_name) both name the node as Slurm
    does."""
    job = slurm_cluster.submit(node_info)
    host = job.result(timeout=120)["host"]
    assert host in compute_nodes
    header = job.stderr().splitlines()[0]
    assert header.startswith(f"[slurm-sdk] job {job.job_id} task ") and f" on {host}, Python" in header, (
        header
    )


def _started_at(stack: Stack) -> dict[str, str]:
    return {c.name: str(c.state.started_at) for c in stack.docker.compose.ps()}


def test_job_sees_host_edit_without_rebuild_or_restart(login_transport, slurm_stack, slurm_container):
    scratch_dir = slurm_stack.project_source / ".slurm-sdk" / "harness-tests"  # gitignored
    scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir / f"mount-{uuid.uuid4().hex}.txt"
    in_container = f"{PROJECT_MOUNT}/{scratch.relative_to(slurm_stack.project_source)}"
    before = _started_at(slurm_stack)
    try:
        scratch.write_text("first version\n")
        assert sbatch_wait(login_transport, f"cat {in_container}") == "first version\n"
        scratch.write_text("second version, edited on the host\n")
        assert sbatch_wait(login_transport, f"cat {in_container}") == "second version, edited on the host\n"
    finally:
        scratch.unlink(missing_ok=True)
    assert _started_at(slurm_stack) == before, "containers were restarted or recreated"


@pytest.mark.parametrize("mount", [f"{SDK_MOUNT}/src/slurm", PROJECT_MOUNT])
def test_sdk_and_project_mounts_are_read_only_everywhere(slurm_stack, mount):
    names = slurm_stack.container_names()
    containers = {c.name: c for c in slurm_stack.docker.compose.ps()}
    assert set(slurm_stack.cluster_services) <= set(names)
    for service in slurm_stack.cluster_services:
        mounts = [m for m in containers[names[service]].mounts if m.destination == mount]
        assert len(mounts) == 1 and mounts[0].rw is False, f"{service}: {mounts}"
        # Not just declared: a write from inside, even as root, really fails.
        with pytest.raises(Exception, match="Read-only file system"):
            slurm_stack.exec(service, ["touch", f"{mount}/.write-probe"])


def test_no_container_is_privileged(slurm_stack):
    containers = slurm_stack.docker.compose.ps(all=True)
    assert len(containers) >= len(slurm_stack.cluster_services)
    assert [c.name for c in containers if c.host_config.privileged] == []
    # One capability, on the compute nodes only: slurmstepd reads job processes' /proc/<pid>/io to
    # enforce memory (README, "Resources like production").
    added = {c.name: sorted(c.host_config.cap_add) for c in containers if c.host_config.cap_add}
    compute = {slurm_stack.container_names()[node] for node in slurm_stack.topology.node_names}
    assert set(added) <= compute and all(
        caps in (["SYS_PTRACE"], ["CAP_SYS_PTRACE"]) for caps in added.values()
    ), added


def test_image_carries_no_keys(slurm_stack):
    """Debian's packages generate a munge key and SSH host keys at install time, and the accounting image's
    build runs munge with a throwaway key; no image may keep one: every key in a running stack is that
    stack's own, made by slurmctld's container on its first start."""
    names = slurm_stack.container_names()
    for service in {"login", *({"slurmdbd"} & set(names))}:
        image = slurm_stack.docker.container.inspect(names[service]).image
        listing = slurm_stack.docker.run(
            image,
            ["sh", "-c", "ls -A /etc/munge /etc/ssh /etc/slurm-sdk /run/munge 2>&1; true"],
            entrypoint="",
            remove=True,
        )
        assert "munge.key" not in listing, service
        assert "ssh_host_" not in listing, service
        assert "client_ed25519" not in listing, service


def test_ssh_port_listens_on_loopback_only(slurm_stack, slurm_container):
    bindings = {}
    for container in slurm_stack.docker.compose.ps():
        for port, hosts in (container.network_settings.ports or {}).items():
            for host in hosts or []:
                bindings[(container.name, port)] = (host["HostIp"], int(host["HostPort"]))
    login = slurm_container.containers["login"]
    assert bindings == {(login, "22/tcp"): ("127.0.0.1", slurm_container.port)}


def test_client_key_is_copied_out_private(slurm_stack, slurm_container: Connection):
    key = slurm_container.key_path
    assert key.parent == slurm_stack.state_dir
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text() == slurm_stack.exec("login", ["cat", "/etc/slurm-sdk/ssh/client_ed25519"]) + "\n"


def test_password_login_is_refused(slurm_container: Connection):
    transport = paramiko.Transport((slurm_container.host, slurm_container.port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password(slurm_container.user, "any-password")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_running_stack_is_reused_only_when_built_from_the_current_inputs(slurm_stack):
    current = slurm_stack.inputs()  # the images' inputs, and what the containers mount
    assert slurm_stack.plan(current)[0] == "reuse"
    # As if compose.yaml or images/ had changed since the build (not done for real: other tests use the stack).
    action, why = slurm_stack.plan("0" * 64)
    assert action == "rebuild" and "changed since it was built" in why


def _secret_hashes(stack: Stack, runner) -> dict[str, str]:
    output = runner(["sha256sum", *SECRET_FILES])
    hashes = {path: digest for digest, path in (line.split() for line in output.splitlines())}
    assert set(hashes) == set(SECRET_FILES)
    return hashes


@pytest.mark.slow
def test_two_fresh_stacks_get_different_secrets(slurm_stack, tmp_path):
    """Secrets come from each stack's first start (slurmctld's container, `entrypoint.sh init`), never from
    the image: two stacks never share them."""
    other = Stack(
        slurm_stack.repo_root,
        project=f"slurmsdk-secrets-{uuid.uuid4().hex[:8]}",
        state_dir=tmp_path / "state",
        say=lambda _: None,
    )
    try:
        other.docker.compose.run("slurmctld", ["init"], tty=False, remove=True)  # volumes and secrets
        theirs = _secret_hashes(
            other, lambda cmd: other.docker.compose.run("slurmctld", cmd, tty=False, remove=True)
        )
        ours = _secret_hashes(slurm_stack, lambda cmd: slurm_stack.exec("login", cmd))
        for path in SECRET_FILES:
            assert ours[path] != theirs[path], f"{path} is the same in two fresh stacks"
        image_keys = other.docker.compose.run(
            "slurmctld",
            ["sh", "-c", "ls /etc/munge/munge.key /etc/ssh/ssh_host_*key 2>/dev/null; true"],
            tty=False,
            remove=True,
        )
        assert image_keys.strip() == "", f"keys baked into the image: {image_keys}"
    finally:
        other.docker.compose.down(volumes=True, remove_orphans=True, quiet=True)


@pytest.mark.slow
def test_a_container_that_stops_while_the_stack_starts_ends_the_wait_naming_it(slurm_stack, tmp_path):
    """`harness up` waits for Slurm itself (not for compose's healthchecks); a container that exits meanwhile
    (here slurmctld, as when it refuses its state) ends that wait at once with its logs, instead of the wait
    running out its 300 s and blaming nothing in particular."""
    override = tmp_path / "slurmctld-fails.yaml"
    override.write_text(
        "services:\n  slurmctld:\n"
        '    command: ["bash", "-c", "echo \'fatal: test stand-in for a refused state\' >&2; exit 3"]\n'
    )
    failing = Stack(
        slurm_stack.repo_root,
        project=f"slurmsdk-stops-{uuid.uuid4().hex[:8]}",
        state_dir=tmp_path / "state",
        compose_files=[override],
        say=lambda _: None,
    )
    try:
        with pytest.raises(StackError) as stopped:
            failing.ensure_up(session="test-stops")
        message = str(stopped.value)
        assert "slurmctld (exited (3)) stopped while the stack was starting" in message
        assert "fatal: test stand-in for a refused state" in message  # its logs, in the error
    finally:
        failing.docker.compose.down(volumes=True, remove_orphans=True, quiet=True)
