"""RestBackend against a fake slurmrestd (stdlib http.server on 127.0.0.1, an ephemeral port): version
discovery, a 401 renewed once and never in a loop, and a submission whose answer is lost found by its
comment instead of being submitted twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from slurm import Cluster
from slurm.backends.base import JobState
from slurm.backends.rest import RestBackend
from slurm.backends.rest_http import TokenRejected
from slurm.errors import BackendError
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        token = handler.headers.get("X-SLURM-USER-TOKEN")
        self.requests.append((method, handler.path, token))
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        if token not in self.valid_tokens:
            return self.answer(handler, 401, {"errors": [{"error": "Authentication failure"}]})
        if handler.path == "/openapi/v3":
            paths = {f"/slurm/{self.version}/jobs": {}, f"/slurmdb/{self.version}/job/{{job_id}}": {}}
            return self.answer(handler, 200, {"openapi": "3.0.2", "paths": paths})
        if method == "POST" and handler.path == f"/slurm/{self.version}/job/submit":
            self.submissions.append(body)
            if self.drop_submit_answers:
                self.drop_submit_answers -= 1
                handler.close_connection = True
                handler.connection.close()  # queued, but the answer never leaves
                return None
            return self.answer(handler, 200, {"job_id": 1000 + len(self.submissions), "errors": []})
        if handler.path == f"/slurm/{self.version}/jobs":
            jobs = [
                {
                    "job_id": 1000 + number,
                    "job_state": ["PENDING"],
                    "comment": submission["job"]["comment"],
                    "array_job_id": {"set": True, "number": 0},
                    "array_task_id": {"set": False, "number": 0},
                }
                for number, submission in enumerate(self.submissions, 1)
            ]
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
    fake = FakeSlurmrestd(version="v0.0.37")
    try:
        with pytest.raises(BackendError) as caught:
            RestBackend(fake.url, HostTransport(), token="good")
    finally:
        fake.close()
    message = str(caught.value)
    assert "offers API versions v0.0.37" in message
    assert "supports v0.0.40, v0.0.41, v0.0.42" in message


def test_the_newest_supported_version_is_chosen(server: FakeSlurmrestd) -> None:
    backend = RestBackend(server.url, HostTransport(), token="good")
    assert backend.api.version == V42
    assert backend.api.slurm == f"/slurm/{V42}"


def test_a_401_renews_the_token_once_and_goes_on(server: FakeSlurmrestd) -> None:
    renewals = []

    def renew() -> str:
        renewals.append(1)
        return "good"

    backend = RestBackend(server.url, HostTransport(), token="expired", renew_token=renew)
    assert backend.states(["1001"]) == {"1001": JobState.UNKNOWN}  # listed nowhere, accounting included
    assert len(renewals) == 1  # the rejected token once; the new one serves every later request
    assert [token for _, _, token in server.requests] == ["expired", "good", "good", "good"]


def test_a_renewed_token_refused_too_is_an_error_not_a_loop(server: FakeSlurmrestd) -> None:
    renewals = []

    def renew() -> str:
        renewals.append(1)
        return f"still-bad-{len(renewals)}"

    with pytest.raises(TokenRejected, match="freshly renewed token too"):
        RestBackend(server.url, HostTransport(), token="expired", renew_token=renew)
    assert len(renewals) == 1
    assert len(server.requests) == 2


def test_without_a_renewal_a_401_says_how_to_get_a_token(server: FakeSlurmrestd) -> None:
    with pytest.raises(TokenRejected, match="scontrol token"):
        RestBackend(server.url, HostTransport(), token="expired")


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
