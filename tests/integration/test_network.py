"""The nodes' view of the network: HTTPS through the site CA, and the air gap fault (slurm_dev_cluster.airgap).

Everything runs as the job user `sdk` over real SSH (the way a user installs by hand), except the
per-container connect probes, which need every service, not just the login node.
"""

from __future__ import annotations

import pytest

from slurm_dev_cluster.airgap import egress_blocked, egress_is_blocked

pytestmark = pytest.mark.integration

PACKAGE = "six"  # one small pure-Python wheel
PIP_DOWNLOAD = (
    "d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT && python3 -m pip download {verbose} --no-deps "
    f'--only-binary=:all: --retries 0 --timeout 10 --disable-pip-version-check -d "$d" '
    f'{PACKAGE} && ls "$d"'
)
#: A plain TCP connect to the index from a container: prints the outcome, never raises.
CONNECT_PROBE = """import socket
try:
    socket.create_connection(("pypi.org", 443), timeout=10).close(); print("connected")
except OSError as exc:
    print(type(exc).__name__)"""


def pip_download(transport, verbose: str = ""):
    """``pip download`` of one small wheel as sdk; ``-vvv`` makes pip say why a fetch failed."""
    return transport.run(PIP_DOWNLOAD.format(verbose=verbose), check=False, timeout=120)


def job_exit_code(transport, node: str) -> int:
    return transport.run(
        f"sbatch --wait -w {node} -o /dev/null --wrap true", check=False, timeout=120
    ).returncode


def test_pip_verifies_https_as_sdk_over_ssh(login_transport, egress_open, index_url):
    """The site CA is in the image's trust store the Debian way, so pip works behind the proxy."""
    run = pip_download(login_transport)
    assert run.returncode == 0, f"pip download from {index_url} failed on login as sdk:\n{run.stderr[-2000:]}"
    assert f"{PACKAGE}-" in run.stdout and ".whl" in run.stdout


def test_air_gap_refuses_egress_but_keeps_ssh_and_slurm(airgapped, login_transport, compute_nodes):
    assert egress_is_blocked(airgapped)
    run = pip_download(login_transport, "-vvv")  # SSH itself still works: this command arrived over it
    assert run.returncode != 0
    assert "Connection refused" in run.stdout + run.stderr, (run.stdout + run.stderr)[-2000:]
    for service in airgapped.cluster_services:  # every container, not only the login node
        outcome = airgapped.exec(service, ["python3", "-c", CONNECT_PROBE], user="sdk").strip()
        assert outcome == "ConnectionRefusedError", f"{service}: {outcome}"
    # Traffic inside the stack is untouched: slurmctld schedules, every node runs jobs, munge authenticates.
    for node in compute_nodes:
        assert job_exit_code(login_transport, node) == 0, node


def test_air_gap_is_lifted_on_exit_even_after_an_error(slurm_stack, egress_open, login_transport, index_url):
    with pytest.raises(RuntimeError, match="inside the air gap"):
        with egress_blocked(slurm_stack):
            assert egress_is_blocked(slurm_stack)
            raise RuntimeError("inside the air gap")
    assert not egress_is_blocked(slurm_stack)
    run = pip_download(login_transport)
    assert run.returncode == 0, run.stderr[-2000:]
