"""RestBackend against a fake slurmrestd (stdlib http.server on 127.0.0.1, an ephemeral port): version
discovery, a 401 renewed once and never in a loop, and a submission whose answer is lost found by its
comment instead of being submitted twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from slurm import Cluster
from slurm.backends.base import JobState, JobStatus
from slurm.backends.rest import RestBackend
from slurm.backends.rest_http import TokenRejected
from slurm.errors import BackendError, ConfigError, SubmitError
from slurm.packaging.none import NonePackaging
from slurm.transports.host import HostTransport

from . import tasks

V42 = "v0.0.42"


class FakeSlurmrestd:
    """Answers like slurmrestd of one API version: an OpenAPI description, job submit and job listing.
    ``valid_tokens``: what it accepts (401 otherwise); ``drop_submit_answers``: how many submissions it
    queues and then hangs up on without answering."""

    def __init__(self, version: str = V42) -> None:
        self.version = version
        self.valid_tokens = {"good"}
        self.refusal_status = 511
        self.down = False  # True: every connection is closed unanswered, as while slurmrestd restarts
        self.drop_submit_answers = 0
        self.submissions: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_POST(self) -> None:
                fake.handle(self, "POST")

            def do_DELETE(self) -> None:
                fake.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        if self.down:
            handler.close_connection = True
            handler.connection.close()
            return None
        token = handler.headers.get("X-SLURM-USER-TOKEN")
        self.requests.append((method, handler.path, token))
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        if handler.path == "/openapi/v3":  # like slurmrestd: answered whatever the token
            paths = {f"/slurm/{self.version}/jobs": {}, f"/slurmdb/{self.version}/job/{{job_id}}": {}}
            return self.answer(handler, 200, {"openapi": "3.0.2", "paths": paths})
        if token not in self.valid_tokens:
            # slurmrestd's own refusal (no token: 401), or slurmctld's passed on (24.11: 511, error 1007).
            error = {"error": "Protocol authentication error", "error_number": 1007}
            return self.answer(handler, self.refusal_status, {"errors": [error]})
        if method == "POST" and handler.path == f"/slurm/{self.version}/job/submit":
            self.submissions.append(body)
            if self.drop_submit_answers:
                self.drop_submit_answers -= 1
                handler.close_connection = True
                handler.connection.close()  # queued, but the answer never leaves
                return None
            return self.answer(handler, 200, {"job_id": 1000 + len(self.submissions), "errors": []})
        listing = handler.path == f"/slurm/{self.version}/jobs"
        one = handler.path.removeprefix(f"/slurm/{self.version}/job/") if method == "GET" else handler.path
        if listing or one.isdigit():
            jobs = [
                {
                    "job_id": 1000 + number,
                    "job_state": ["PENDING"],
                    "comment": submission["job"]["comment"],
                    "array_job_id": {"set": True, "number": 0},
                    "array_task_id": {"set": False, "number": 0},
                }
                for number, submission in enumerate(self.submissions, 1)
                if listing or 1000 + number == int(one)
            ]
            if not jobs:  # as slurmrestd 24.11 answers for a job slurmctld does not hold
                error = {"error": "Invalid job id specified", "error_number": 2017}
                return self.answer(handler, 404, {"jobs": [], "errors": [error]})
            return self.answer(handler, 200, {"jobs": jobs})
        return self.answer(handler, 404, {"errors": [{"error": f"no {handler.path}"}]})

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[FakeSlurmrestd]:
    fake = FakeSlurmrestd()
    yield fake
    fake.close()


def test_an_unsupported_api_version_fails_at_connect_naming_both_lists() -> None:
    fake = FakeSlurmrestd(version="v0.0.36")
    try:
        with pytest.raises(BackendError) as caught:
            RestBackend(fake.url, HostTransport(), token="good")
    finally:
        fake.close()
    message = str(caught.value)
    assert "offers API versions v0.0.36" in message
    assert "supports v0.0.37, v0.0.38, v0.0.40, v0.0.41, v0.0.42, v0.0.43, v0.0.44, v0.0.45" in message


def test_the_newest_supported_version_is_chosen(server: FakeSlurmrestd) -> None:
    backend = RestBackend(server.url, HostTransport(), token="good")
    assert backend.api.version == V42
    assert backend.api.slurm == f"/slurm/{V42}"


@pytest.mark.parametrize("refusal", [401, 511])
def test_a_refused_token_is_renewed_once_and_goes_on(server: FakeSlurmrestd, refusal: int) -> None:
    server.refusal_status = refusal
    renewals = []

    def renew() -> str:
        renewals.append(1)
        return "good"

    backend = RestBackend(server.url, HostTransport(), token="expired", renew_token=renew)
    assert backend.states(["1001"]) == {"1001": JobState.UNKNOWN}  # listed nowhere, accounting included
    assert len(renewals) == 1  # the rejected token once; the new one serves every later request
    assert [token for _, _, token in server.requests] == ["expired", "expired", "good", "good"]


def test_a_renewed_token_refused_too_is_an_error_not_a_loop(server: FakeSlurmrestd) -> None:
    renewals = []

    def renew() -> str:
        renewals.append(1)
        return f"still-bad-{len(renewals)}"

    backend = RestBackend(server.url, HostTransport(), token="expired", renew_token=renew)
    with pytest.raises(TokenRejected, match="freshly renewed token too"):
        backend.states(["1001"])
    assert len(renewals) == 1
    assert [path for _, path, _ in server.requests] == ["/openapi/v3", *[f"/slurm/{V42}/job/1001"] * 2]


def test_without_a_renewal_a_401_says_how_to_get_a_token(server: FakeSlurmrestd) -> None:
    backend = RestBackend(server.url, HostTransport(), token="expired")
    with pytest.raises(TokenRejected, match="scontrol token"):
        backend.cancel("1001")


def test_a_lost_submit_answer_is_found_by_its_comment_not_submitted_again(server, tmp_path) -> None:
    server.drop_submit_answers = 1
    backend = RestBackend(server.url, HostTransport(), token="good")
    cluster = Cluster(backend=backend, packaging=NonePackaging(), job_root=str(tmp_path))
    job = cluster.submit(tasks.add, 1, 2)
    assert len(server.submissions) == 1
    assert job.job_id == "1001"
    [submission] = server.submissions
    assert submission["job"]["comment"] == f"{job.job_dir}/job.sh"
    # The #SBATCH lines the SDK wrote became fields: slurmrestd does not read them from the script.
    assert submission["job"]["time_limit"]["number"] == 1
    assert submission["job"]["memory_per_node"]["number"] == 100
    assert submission["job"]["cpus_per_task"] == 1


# Records as slurmrestd 24.11.5 (v0.0.42) lists them: an array of 4 tasks, %1, task 0 running, 1-3 pending.
LIVE_ARRAY = {
    "jobs": [
        {
            "job_id": 4,
            "array_job_id": {"set": True, "infinite": False, "number": 3},
            "array_task_id": {"set": True, "infinite": False, "number": 0},
            "array_task_string": "",
            "job_state": ["RUNNING"],
            "state_reason": "None",
            "restart_cnt": 0,
            "comment": "mark1",
        },
        {
            "job_id": 3,
            "array_job_id": {"set": True, "infinite": False, "number": 3},
            "array_task_id": {"set": False, "infinite": False, "number": 0},
            "array_task_string": "1-3%1",
            "job_state": ["PENDING"],
            "state_reason": "JobArrayTaskLimit",
            "restart_cnt": 0,
            "comment": "mark1",
        },
    ]
}
ACCOUNTED_JOB = {
    "jobs": [
        {
            "job_id": 2,
            "array": {"job_id": 0, "task_id": {"set": False, "infinite": False, "number": 0}, "task": ""},
            "state": {"current": ["COMPLETED"], "reason": "None"},
            "comment": {"administrator": "", "job": "", "system": ""},
        }
    ]
}


def test_live_records_become_one_status_per_array_task() -> None:
    from slurm.backends.rest_api import ApiV40

    found = ApiV40(V42).live_statuses(LIVE_ARRAY)
    assert {key: status.state for key, (status, _) in found.items()} == {
        "3_0": JobState.RUNNING,
        "3_1": JobState.PENDING,
        "3_2": JobState.PENDING,
        "3_3": JobState.PENDING,
    }
    assert found["3_2"][0].reason == "JobArrayTaskLimit"
    assert found["3_0"][1] == "mark1"


def test_accounting_records_give_the_state_of_a_forgotten_job() -> None:
    from slurm.backends.rest_api import ApiV40

    assert ApiV40(V42).accounted_statuses(ACCOUNTED_JOB) == {"2": JobStatus(JobState.COMPLETED)}


def test_sbatch_options_become_job_fields_and_others_are_refused() -> None:
    from slurm.backends.rest_api import ApiV40
    from slurm.errors import ConfigError

    script = "#!/bin/bash\n#SBATCH --job-name=x\n#SBATCH --time=1:30:00\n#SBATCH --gres=gpu:2\n\nexec true\n"
    job = ApiV40(V42).job_description(
        script,
        working_dir="/w",
        marker="/w/job.sh",
        environment=["PATH=/bin"],
        array="0-3%1",
        dependency=None,
    )["job"]
    assert job["name"] == "x"
    assert job["time_limit"]["number"] == 90
    assert job["tres_per_node"] == "gres/gpu:2"
    assert (job["array"], job["comment"], job["script"]) == ("0-3%1", "/w/job.sh", script)
    with pytest.raises(ConfigError, match="--exclusive has no slurmrestd field"):
        ApiV40(V42).job_description(
            "#!/bin/bash\n#SBATCH --exclusive\n",
            working_dir="/",
            marker="m",
            environment=[],
            array=None,
            dependency=None,
        )


def test_slurmrestd_gone_is_a_transient_error_and_its_return_is_picked_up(server) -> None:
    """A restart of slurmrestd during a wait: requests fail as transient (the SDK's waits retry those
    within their outage limit) and succeed again once it answers."""
    backend = RestBackend(server.url, HostTransport(), token="good")
    server.down = True
    with pytest.raises(BackendError) as caught:
        backend.states(["1001"])
    assert caught.value.transient
    server.down = False
    assert backend.states(["1001"]) == {"1001": JobState.UNKNOWN}


def test_a_few_jobs_are_polled_one_by_one_and_many_with_one_listing(server: FakeSlurmrestd, tmp_path) -> None:
    """slurmrestd's job listing holds every job slurmctld has, of every user (megabytes after a big map):
    waiting on one job or two asks for those alone; more than that, one listing answers for all."""
    backend = RestBackend(server.url, HostTransport(), token="good")
    cluster = Cluster(backend=backend, packaging=NonePackaging(), job_root=str(tmp_path))
    jobs = [cluster.submit(tasks.add, i, i) for i in range(3)]
    server.requests.clear()
    assert backend.states([jobs[0].job_id]) == {"1001": JobState.PENDING}
    assert backend.states(["1001", "1002"]) == {"1001": JobState.PENDING, "1002": JobState.PENDING}
    every = backend.states([job.job_id for job in jobs])
    assert every == dict.fromkeys(["1001", "1002", "1003"], JobState.PENDING)
    assert [path for _, path, _ in server.requests] == [
        f"/slurm/{V42}/job/1001",
        f"/slurm/{V42}/job/1001",
        f"/slurm/{V42}/job/1002",
        f"/slurm/{V42}/jobs",
    ]


class RemoteLike(HostTransport):
    """This machine's files, handed to the backend as a remote transport's are (``Cluster`` then lets
    ``submit_with_files`` write them); records which files each write carried."""

    remote = True

    def __init__(self) -> None:
        super().__init__()
        self.written: list[list[str]] = []

    def write_files(self, directory: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        self.written.append(sorted(files))
        super().write_files(directory, files)


def test_an_inline_payload_travels_in_the_script_and_the_script_runs_the_task(server, tmp_path) -> None:
    """With ``inline_payload_limit`` the transport writes no payload file; the script slurmrestd got writes
    it on the node. Run here with bash, as slurmd would, it runs the task, whose result comes back."""
    transport = RemoteLike()
    backend = RestBackend(server.url, transport, token="good", inline_payload_limit=64 * 1024)
    cluster = Cluster(backend=backend, packaging=NonePackaging(), job_root=str(tmp_path))
    job = cluster.submit(tasks.add, 1, 2)
    assert transport.written == [["job.sh"]]
    payload = Path(job.job_dir) / "payload.pkl"
    assert not payload.exists()
    script = server.submissions[0]["job"]["script"]
    env = {
        **os.environ,
        "SLURM_JOB_ID": "1001",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # the task's module: tests.fast.tasks
    }
    subprocess.run(["bash", "-c", script], cwd=job.job_dir, env=env, check=True, timeout=120)
    assert payload.stat().st_mode & 0o077 == 0  # private, as an uploaded one is
    assert job.result(timeout=60) == 3


def test_a_payload_over_the_inline_limit_is_refused_before_anything_is_written(server, tmp_path) -> None:
    transport = RemoteLike()
    backend = RestBackend(server.url, transport, token="good", inline_payload_limit=1000)
    cluster = Cluster(backend=backend, packaging=NonePackaging(), job_root=str(tmp_path))
    with pytest.raises(
        SubmitError, match=r"is [\d,]+ bytes, over .* inline_payload_limit of 1,000 bytes.*fix:"
    ):
        cluster.submit(tasks.add, b"x" * 5000, b"")
    assert (server.submissions, transport.written) == ([], [])


@pytest.mark.parametrize("limit", [0, -1, 3 * 1024 * 1024, True, "1k"])
def test_an_inline_limit_that_cannot_work_is_refused_when_the_backend_is_built(server, limit) -> None:
    with pytest.raises(
        ConfigError, match="inline_payload_limit must be a number of bytes from 1 to 2,097,152"
    ):
        RestBackend(server.url, HostTransport(), token="good", inline_payload_limit=limit)
