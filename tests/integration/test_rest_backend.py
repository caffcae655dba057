"""The SDK through slurmrestd (RestBackend) on the dev cluster with the compose profile `rest`: a submit
and its result, a map, a cancel, a dependency, a failing task; and the docs' curl. Files go over SSH.
Then what a long wait meets: slurmrestd frozen or restarted, a token that expires, and how many requests
slurmrestd serves while a job is waited on."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from slurm import Cluster, JobState
from slurm.errors import BackendError
from slurm_dev_cluster import plugin_fixtures
from slurm_dev_cluster.inputs import rest_enabled
from slurm_dev_cluster.naming import debian_release
from slurm_dev_cluster.stack import Stack

from . import jobs
from .waiting import wait_until

pytestmark = pytest.mark.integration
TIMEOUT = 300
DOCS = Path(__file__).resolve().parents[2] / "docs" / "rest.md"
#: The API versions each release's slurmrestd serves (docs/rest.md); the backend picks the newest.
SERVED_API = {
    "bookworm": ("v0.0.36", "v0.0.37", "v0.0.38"),
    "trixie": ("v0.0.40", "v0.0.41", "v0.0.42"),
    "forky": ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"),
}


def _files(slurm_container):
    """An SSH transport of the test's own (a backend closes its transport when it is closed)."""
    from slurm.transports.ssh import SSHTransport

    return SSHTransport(
        slurm_container.host,
        slurm_container.port,
        slurm_container.user,
        str(slurm_container.key_path),
        slurm_container.host_key,
    )


def _cluster(backend, request, sdk_on_cluster, **settings) -> Cluster:
    roots = plugin_fixtures.test_import_roots(request, sdk_on_cluster)
    packaging = plugin_fixtures.packaging_for("ssh", sdk_on_cluster, roots)
    return Cluster(backend=backend, packaging=packaging, **settings)


@pytest.fixture(scope="module")
def rest_url(slurm_stack: Stack) -> str:
    if not rest_enabled():
        pytest.skip("the stack runs without slurmrestd: set SLURM_SDK_COMPOSE_PROFILES=rest")
    return slurm_stack.rest_url()


@pytest.fixture
def rest_cluster(request, rest_url, slurm_container, sdk_on_cluster):
    from slurm.backends.rest import RestBackend, scontrol_token

    files = _files(slurm_container)
    cluster = _cluster(
        RestBackend(rest_url, files, renew_token=scontrol_token(files)), request, sdk_on_cluster
    )
    yield cluster
    cluster.close()


def test_a_task_runs_and_returns_its_result(rest_cluster, compute_nodes):
    job = rest_cluster.submit(jobs.where, 21)
    value, host, slurm_job_id = job.result(timeout=TIMEOUT)
    assert (value, slurm_job_id) == (21, job.job_id)
    assert host in compute_nodes
    assert job.last_state is JobState.COMPLETED


def test_a_map_runs_as_an_array(rest_cluster):
    array = rest_cluster.map(jobs.where, range(4))
    results = array.results(timeout=TIMEOUT)
    assert [value for value, _, _ in results] == [0, 1, 2, 3]
    assert {job.job_id.split("_")[0] for job in array.jobs} == {array.jobs[0].job_id.split("_")[0]}


def test_a_failing_task_raises_its_error(rest_cluster):
    job = rest_cluster.submit(jobs.explode, "boom through REST")
    with pytest.raises(jobs.IntentionalError, match="boom through REST"):
        job.result(timeout=TIMEOUT)
    assert job.last_state is JobState.FAILED


def test_a_dependency_runs_after_its_parent(rest_cluster, login_transport):
    marker = f"{login_transport.home()}/rest-dependency-{uuid.uuid4().hex}.txt"
    try:
        first = rest_cluster.submit(jobs.sleep_then_return, 2)
        second = rest_cluster.submit(jobs.write_marker.after(first), marker, "second")
        assert second.result(timeout=TIMEOUT) == "second"
        assert first.query_state() is JobState.COMPLETED
        assert login_transport.read_bytes(marker).decode() == "second\n"
    finally:
        login_transport.run(f"rm -f {marker}")


def test_a_running_job_is_cancelled(rest_cluster):
    job = rest_cluster.submit(jobs.sleep_then_return, 600)
    deadline = time.monotonic() + TIMEOUT
    while job.query_state() is not JobState.RUNNING:
        assert not job.last_state.is_terminal, f"job ended before it could be cancelled: {job.last_state}"
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.5)
    job.cancel()
    assert job.wait(timeout=TIMEOUT) is JobState.CANCELLED


def test_the_docs_curl_submits_a_job(rest_url, slurm_stack, slurm_container, login_transport):
    """docs/rest.md's curl block for the API version this release's slurmrestd serves, run as written with
    the URL, a token from `scontrol token` and its user."""
    blocks = dict(re.findall(r"<!-- rest-curl (v[\d.]+) -->\n```bash\n(.*?)```", DOCS.read_text(), re.S))
    served = SERVED_API[debian_release()]
    version = next((version for version in reversed(served) if version in blocks), None)
    assert version, f"docs/rest.md has no curl block for {', '.join(served)} (only {', '.join(blocks)})"
    token = login_transport.run("scontrol token lifespan=300").stdout.strip().removeprefix("SLURM_JWT=")
    env = {
        **os.environ,
        "SLURM_REST_URL": rest_url,
        "SLURM_JWT": token,
        "SLURM_JWT_USER": slurm_container.user,
    }
    answer = subprocess.run(
        ["bash", "-c", blocks[version]], env=env, capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr
    job_id = json.loads(answer.stdout)["job_id"]

    # slurmctld forgets an ended job after MinJobAge (2 s on dev defaults), and slurmdbd records it a moment
    # after it starts: between the two the job may be in neither for a moment, so ask until one names it.
    def named() -> str:
        shown = login_transport.run(f"scontrol show job {int(job_id)}", check=False).stdout
        accounted = login_transport.run(f"sacct -X -n -j {int(job_id)} -o JobName%20", check=False).stdout
        return shown + accounted

    wait_until(lambda: "hello-rest" in named(), 60, lambda: f"job {job_id} by name; Slurm says {named()!r}")


def test_a_rejected_token_is_renewed_with_scontrol_token_over_ssh(rest_url, slurm_container):
    from slurm.backends.rest import RestBackend, scontrol_token
    from slurm.backends.rest_api import versions_in

    files = _files(slurm_container)
    renew = scontrol_token(files, lifespan=120)
    renewals = []

    def counted() -> str:
        renewals.append(1)
        return renew()

    backend = RestBackend(rest_url, files, token="not-a-token", renew_token=counted)
    try:
        description = backend.client.check(backend.client.request("GET", "/openapi/v3"), "the OpenAPI")
        assert tuple(versions_in(description)) == SERVED_API[debian_release()]
        assert backend.api.version == SERVED_API[debian_release()][-1]
        assert backend.states(["999999"]) == {"999999": JobState.UNKNOWN}
        assert len(renewals) == 1
    finally:
        backend.close()


def test_the_kits_rest_config_lets_a_script_use_cluster_from_env(
    rest_url, slurm_container, sdk_on_cluster, tmp_path
):
    """`slurm-dev-cluster config --backend rest`: the URL, a fresh token with its expiry, SSH for files;
    a script elsewhere runs a task through slurmrestd with SLURM_SDK_CONFIG alone."""
    import shlex
    import sys

    import yaml

    from .test_client_config import SCRIPT, harness_cli

    run = harness_cli(
        "config",
        "--backend",
        "rest",
        "-o",
        str(tmp_path / "rest.yaml"),
        cwd=tmp_path,
        stack=slurm_container.project,
    )
    assert run.returncode == 0, run.stderr
    path = shlex.split(run.stdout.strip().partition("=")[2])[0]
    text = Path(path).read_text()
    backend = yaml.safe_load(text)["backend"]
    assert (backend["type"], backend["url"]) == ("rest", rest_url)
    assert backend["token"] and "The token lives" in text
    env = {**os.environ, "SLURM_SDK_CONFIG": path}
    script = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.split()[0] in ("c1", "c2")


def test_a_wait_outlasts_a_frozen_slurmrestd(
    rest_url, slurm_container, slurm_stack, sdk_on_cluster, request, login_transport
):
    """slurmrestd frozen (`docker pause`: it accepts connections and never answers) while a wait is on and
    the job is cancelled behind the SDK's back (no result file: only the scheduler can tell): the wait's
    polls time out as transient errors, are retried, and the wait ends CANCELLED once slurmrestd answers."""
    from concurrent.futures import ThreadPoolExecutor

    from slurm.backends.rest import RestBackend, scontrol_token

    files = _files(slurm_container)
    backend = RestBackend(rest_url, files, renew_token=scontrol_token(files), timeout=5)
    # This stack's own slurmrestd container (the kit's pause fault knows the Slurm roles only).
    container = slurm_stack.container_names()["slurmrestd"]
    with _cluster(backend, request, sdk_on_cluster, poll_interval_seconds=2) as cluster:
        job = cluster.submit(jobs.sleep_then_return, 600)
        subprocess.run(["docker", "pause", container], check=True, timeout=60)
        try:
            with pytest.raises(BackendError) as frozen:
                backend.states([job.job_id])
            assert frozen.value.transient, frozen.value
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(job.wait, timeout=TIMEOUT)
                login_transport.run(f"scancel {int(job.job_id)}")
                time.sleep(8)  # the wait polls a frozen slurmrestd meanwhile
                assert not waiting.done(), waiting.result()
                subprocess.run(["docker", "unpause", container], check=True, timeout=60)
                assert waiting.result(timeout=TIMEOUT) is JobState.CANCELLED
        finally:
            subprocess.run(["docker", "unpause", container], check=False, timeout=60, capture_output=True)


def test_a_wait_outlasts_a_slurmrestd_restart_at_the_same_url(
    rest_url, slurm_container, slurm_stack, faults, sdk_on_cluster, request, login_transport
):
    """slurmrestd's container restarted (the kit's `restart` fault) while a wait is on: it comes back on the
    port the stack keeps for it, so the URL the backend was built with stays good, and the wait ends with
    the job's true end state: CANCELLED, for a job cancelled behind the SDK's back after the restart (no
    result file: only the scheduler can tell)."""
    from concurrent.futures import ThreadPoolExecutor

    from slurm.backends.rest import RestBackend, scontrol_token

    files = _files(slurm_container)
    backend = RestBackend(rest_url, files, renew_token=scontrol_token(files), timeout=5)
    with _cluster(backend, request, sdk_on_cluster, poll_interval_seconds=2) as cluster:
        job = cluster.submit(jobs.sleep_then_return, 600)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(job.wait, timeout=TIMEOUT)
            faults.restart("slurmrestd")
            assert slurm_stack.rest_url() == rest_url, "slurmrestd came back on another port"
            assert not waiting.done(), waiting.result()
            login_transport.run(f"scancel {int(job.job_id)}")
            assert waiting.result(timeout=TIMEOUT) is JobState.CANCELLED


#: The SSH backend's polling budget (scheduler calls a minute, one job waited on), held to here too.
REQUESTS_PER_MINUTE = 40
_REQUEST_LINE = re.compile(r"operations_router: \[.*?\] (GET|POST|DELETE|PUT) (/slurm\S*)")


def _served(container: str, since: float, until: float) -> list[str]:
    """The requests slurmrestd logged between two moments (its default verbosity logs each one as
    `operations_router: [client] METHOD path`); only /slurm... paths: the healthcheck asks for /openapi."""
    log = subprocess.run(
        ["docker", "logs", "--since", f"{since:.3f}", "--until", f"{until:.3f}", container],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [" ".join(match.groups()) for match in _REQUEST_LINE.finditer(log.stdout + log.stderr)]


def test_a_minute_of_waiting_costs_slurmrestd_at_most_the_polling_budget(
    rest_cluster, slurm_stack, record_property
):
    """One job waited on for 60 s with the default polling: the requests slurmrestd itself logged (not the
    client's count) stay within the SSH backend's budget, and each asks for that job alone."""
    job = rest_cluster.submit(jobs.sleep_then_return, 600)
    container = slurm_stack.container_names()["slurmrestd"]
    try:
        started = time.time()
        with pytest.raises(TimeoutError):
            job.wait(timeout=60)
        ended = time.time()
    finally:
        job.cancel()
    served = _served(container, started, ended)
    record_property("slurmrestd_requests", len(served))
    print(f"slurmrestd served {len(served)} requests in {ended - started:.0f} s of waiting: {served}")
    assert served, "slurmrestd logged no request: did its log format change?"
    assert len(served) <= REQUESTS_PER_MINUTE * (ended - started) / 60, served
    # Each one asks for this job alone, not for the listing of every job slurmctld holds.
    assert set(served) == {f"GET /slurm/{rest_cluster.backend.api.version}/job/{job.job_id}"}, served


def test_a_token_that_expires_during_a_wait_is_renewed(
    rest_url, slurm_container, login_transport, sdk_on_cluster, request
):
    """A token from `scontrol token lifespan=10`, a job that runs 30 s: slurmctld refuses the token once it
    expired, the renewal callable is called, and the wait ends with the task's result. The first token
    is refused by then (it really expired)."""
    from slurm.backends.rest import RestBackend, scontrol_token
    from slurm.backends.rest_http import RestClient, TokenRejected

    lifespan = 10
    token = (
        login_transport.run(f"scontrol token lifespan={lifespan}").stdout.strip().removeprefix("SLURM_JWT=")
    )
    files = _files(slurm_container)
    renew = scontrol_token(files)
    renewals = []

    def counted() -> str:
        renewals.append(time.time())
        return renew()

    backend = RestBackend(rest_url, files, token=token, renew_token=counted)
    with _cluster(backend, request, sdk_on_cluster, poll_interval_seconds=2) as cluster:
        job = cluster.submit(jobs.sleep_then_return, 3 * lifespan)
        assert job.result(timeout=TIMEOUT) == "slept"
        assert job.last_state is JobState.COMPLETED
    assert len(renewals) == 1, renewals
    # The token's own expiry (its JWT "exp" claim), not a time taken on this side after the backend read
    # slurmrestd's OpenAPI description: under load that read alone can take seconds.
    claims = token.split(".")[1]
    expires = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["exp"]
    assert renewals[0] >= expires - 1, f"renewed at {renewals[0]:.1f}, before the token expired at {expires}"
    expired = RestClient(rest_url, token=token)
    try:
        with pytest.raises(TokenRejected, match="refused the token"):
            expired.request("GET", f"/slurm/{backend.api.version}/jobs")
    finally:
        expired.close()


def test_an_inline_payload_needs_no_payload_upload(rest_url, slurm_container, sdk_on_cluster, request):
    """``inline_payload_limit``: a map's payload travels in the script slurmrestd gets; the SSH transport
    writes the job directory with its job.sh only, every array task finds the payload, and the results
    come back over SSH."""
    from slurm.backends.rest import RestBackend, scontrol_token

    files = _files(slurm_container)
    written: list[list[str]] = []
    write_files = files.write_files

    def recorded(directory, contents) -> None:
        written.append(sorted(contents))
        write_files(directory, contents)

    files.write_files = recorded  # type: ignore[method-assign]
    backend = RestBackend(rest_url, files, renew_token=scontrol_token(files), inline_payload_limit=256 * 1024)
    with _cluster(backend, request, sdk_on_cluster) as cluster:
        array = cluster.map(jobs.where, range(3))
        assert [value for value, _, _ in array.results(timeout=TIMEOUT)] == [0, 1, 2]
    assert written == [["job.sh"]]


class _LoseFirstSubmitAnswer:
    """A TCP proxy on 127.0.0.1 in front of slurmrestd that passes everything through, except the answer to
    the first job submission: once slurmrestd has answered it (the job exists), the client's connection is
    closed instead, as when a network drops between the request leaving and its answer arriving."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lost = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            dropping = threading.Event()  # this connection carries the submission whose answer is lost
            threading.Thread(target=self._requests, args=(client, upstream, dropping), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, dropping), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, dropping: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"/job/submit" in data and not self.lost.is_set():
                    dropping.set()  # before the request goes on: its answer cannot overtake the flag
                upstream.sendall(data)

    def _answers(self, upstream: socket.socket, client: socket.socket, dropping: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if dropping.is_set():
                    self.lost.set()
                    break  # the answer is read from slurmrestd and never delivered
                client.sendall(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_submission_whose_answer_is_lost_is_found_not_sent_again(
    rest_url, slurm_container, sdk_on_cluster, request, login_transport
):
    """The answer to a job submission never arrives (a proxy closes the connection after slurmrestd answered):
    the backend finds the job slurmrestd made by its comment, and the job runs once; slurmctld lists exactly
    one job with that comment."""
    from slurm.backends.rest import RestBackend, scontrol_token

    proxy = _LoseFirstSubmitAnswer(int(rest_url.rsplit(":", 1)[1]))
    files = _files(slurm_container)
    backend = RestBackend(
        f"http://127.0.0.1:{proxy.port}", files, renew_token=scontrol_token(files), timeout=10
    )
    try:
        with _cluster(backend, request, sdk_on_cluster) as cluster:
            job = cluster.submit(jobs.sleep_then_return, 20)
            assert proxy.lost.is_set(), "the proxy never saw the submission: the test tested nothing"
            listed = login_transport.run("squeue --me -h -o '%i %k'").stdout.splitlines()
            marker = f"{job.job_dir}/job.sh"  # the comment: the submitted script's path
            same = [line.split()[0] for line in listed if line.split()[-1:] == [marker]]
            assert same == [job.job_id], listed
            assert job.result(timeout=TIMEOUT) == "slept"
    finally:
        proxy.close()
