"""Slurm through slurmrestd's REST API: submit, poll and cancel as JSON requests; files through a transport.

The scheduler is reached over HTTP (``slurm.backends.rest_http``) in the JSON of the API version the
server offers (``slurm.backends.rest_api``, chosen from its OpenAPI description when the backend is
built); no Slurm command runs and no command output is read. A job's files (payload, script, results,
logs) still live where the nodes read them: the ``transport`` (SSH to a login node for a shared home, or
``HostTransport`` when this machine mounts the same directory the nodes do) writes and reads them.

Exactly once: every job carries a marker (its script's path, unique per submission) as its comment; when
a submission's answer is lost, ``find_submitted`` looks the job up by it instead of submitting again.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from slurm.backends.base import UNKNOWN_STATUS, Backend, JobState, JobStatus
from slurm.backends.rest_api import ApiV40, choose_version, versions_in
from slurm.backends.rest_http import RestClient
from slurm.backends.rest_inline import checked_limit, with_inline_payload
from slurm.backends.slurm import _resolve, job_id_from_logs
from slurm.errors import BackendError, SubmitError
from slurm.limits import refusal_fix
from slurm.node import layout
from slurm.transports.base import Transport

#: Where slurmrestd describes its API: ``/openapi/v3`` since Slurm 21.08, ``/openapi`` before.
OPENAPI_PATHS = ("/openapi/v3", "/openapi")
#: The environment a job starts with (sbatch would pass the submitter's; a REST client has none to give).
BASE_ENVIRONMENT = ("PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8")
_TOKEN_LINE = re.compile(r"^SLURM_JWT=(\S+)\s*$", re.M)
#: Up to this many jobs (an array counts once) are polled one request each (``GET .../job/<id>``); more
#: with one listing (``GET .../jobs``). The listing carries every job slurmctld still holds, of every user:
#: 11 MB of JSON a minute after a 1,000-task map ended, which slowed each poll of a single job to seconds.
SINGLE_LOOKUPS = 2
#: Slurm's ESLURM_INVALID_JOB_ID: slurmctld holds no such job (any more).
_INVALID_JOB_ID = 2017


class RestBackend(Backend):
    """Jobs through slurmrestd at ``url`` (``http://host:port``); files through ``transport``.

    ``token``: a JSON Web Token (``scontrol token``); ``renew_token``: a callable returning a fresh one,
    called when slurmrestd answers 401 (``scontrol_token(transport)`` asks the login node). At least one
    of the two. ``user``: sent as ``X-SLURM-USER-NAME`` (tokens from ``scontrol token`` name their user
    themselves). Connecting reads the server's OpenAPI description; a server offering no API version the
    backend knows is refused there.

    ``inline_payload_limit`` (bytes; None, the default: off): a submission over a remote transport carries
    its payload inside the job script, so the transport uploads none; a payload over the limit is refused
    before anything is written or submitted. Results and logs still come back through the transport."""

    type_name = "rest"

    def __init__(
        self,
        url: str,
        transport: Transport,
        *,
        token: str | None = None,
        renew_token: Callable[[], str] | None = None,
        user: str | None = None,
        timeout: float = 30.0,
        inline_payload_limit: int | None = None,
    ) -> None:
        if token is None and renew_token is None:
            raise BackendError(
                "the REST backend needs a token or a renew_token callable; fix: pass token= (from "
                "`scontrol token` on a login node) or renew_token=scontrol_token(transport)"
            )
        self.transport = transport
        self.inline_payload_limit = checked_limit(inline_payload_limit)
        self.client = RestClient(url, token=token, user=user, renew_token=renew_token, timeout=timeout)
        self.api = self._connect()

    def _connect(self) -> ApiV40:
        """Read the OpenAPI description and pick the adapter (``choose_version`` names what was seen)."""
        last = None
        for path in OPENAPI_PATHS:
            reply = self.client.request("GET", path)
            if reply.status == 404:
                last = reply
                continue
            description = self.client.check(reply, "reading the OpenAPI description")
            return choose_version(versions_in(description), self.client.url)
        assert last is not None
        self.client.check(last, f"reading the OpenAPI description ({' or '.join(OPENAPI_PATHS)})")
        raise AssertionError("unreachable: a 404 is an error")

    # -- submitting -----------------------------------------------------------------------------

    def submit(
        self,
        script_path: str,
        *,
        array: str | None = None,
        dependencies: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> str:
        script = self.transport.read_bytes(script_path).decode()
        return self._submit_script(script, script_path, array, dependencies, dependency_type)

    def submit_with_files(
        self,
        job_dir: str,
        files: Mapping[str, tuple[bytes, int]],
        script_path: str,
        *,
        record: str = "",
        array: str | None = None,
        dependencies: Sequence[str] = (),
        dependency_type: str = "afterok",
    ) -> tuple[str, bool]:
        """Write the job's files, then submit the script from memory (no read back). The record is left
        to the caller (``False``): it is shell for the login node, and this submission has none. Safe to
        run again once the caller's lookup (``find_submitted``) found no job: files are written whole.
        With ``inline_payload_limit`` the payload goes in the submitted script instead; the job directory
        and its job.sh are still written (the log files go there, and picking a job up again reads it)."""
        script = files[layout.SCRIPT][0].decode()
        if self.inline_payload_limit is not None and layout.PAYLOAD in files:
            payload = files[layout.PAYLOAD][0]
            path = posixpath.join(job_dir, layout.PAYLOAD)
            script = with_inline_payload(script, payload, path, self.inline_payload_limit)
            files = {name: entry for name, entry in files.items() if name != layout.PAYLOAD}
        self.transport.write_files(job_dir, files)
        return self._submit_script(script, script_path, array, dependencies, dependency_type), False

    def _submit_script(
        self,
        script: str,
        script_path: str,
        array: str | None,
        dependencies: Sequence[str],
        dependency_type: str,
    ) -> str:
        body = self.api.job_description(
            script,
            working_dir=script_path.rsplit("/", 1)[0] or "/",
            marker=script_path,
            environment=(*BASE_ENVIRONMENT, f"HOME={self.transport.home()}"),
            array=array,
            dependency=f"{dependency_type}:{':'.join(dependencies)}" if dependencies else None,
        )
        reply = self.client.request("POST", f"{self.api.slurm}/job/submit", body)
        job_id = self.api.submitted_id(reply.body) if 200 <= reply.status < 300 else None
        if job_id is not None:
            return job_id
        try:
            self.client.check(reply, f"submitting {script_path}")
        except BackendError as error:
            if error.transient:
                raise  # maybe queued anyway: the caller looks the job up before anything else
            fix = refusal_fix(str(error))
            raise SubmitError(str(error) + (f"\nfix: {fix}" if fix else "")) from None
        raise BackendError(f"slurmrestd accepted {script_path} but named no job id: {reply.body!r}")

    def find_submitted(self, script_path: str) -> str | None:
        """The job whose comment is ``script_path``: slurmctld's jobs first, then accounting's (a job
        that already ended and was forgotten by slurmctld)."""
        listed = self.api.live_statuses(self._get(f"{self.api.slurm}/jobs", "listing jobs"))
        for job_id, (_, comment) in listed.items():
            if comment == script_path:
                return job_id.split("_", 1)[0]
        return job_id_from_logs(self.transport, script_path)

    # -- polling --------------------------------------------------------------------------------

    def states(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return {job_id: status.state for job_id, status in self.statuses(job_ids).items()}

    def statuses(
        self, job_ids: Sequence[str], *, reasons_for: Collection[str] = (), background: bool = False
    ) -> dict[str, JobStatus]:
        """slurmctld's view (with reasons and restart counts): ``GET .../job/<id>`` per job or array for a
        few (``SINGLE_LOOKUPS``), else one ``GET .../jobs`` for all; a job slurmctld does not hold any more
        is asked of accounting (``/slurmdb/.../job/<id>``), once per array."""
        unique = list(dict.fromkeys(job_ids))
        arrays = list(dict.fromkeys(job_id.split("_", 1)[0] for job_id in unique))
        if len(arrays) <= SINGLE_LOOKUPS:
            listed: dict[str, tuple[JobStatus, str]] = {}
            for array_id in arrays:
                reply = self.client.request("GET", f"{self.api.slurm}/job/{array_id}")
                if reply.status == 404 or _invalid_job(reply.body):
                    continue  # slurmctld forgot it: accounting, below
                listed |= self.api.live_statuses(self.client.check(reply, f"reading job {array_id}"))
        else:
            listed = self.api.live_statuses(self._get(f"{self.api.slurm}/jobs", "listing jobs"))
        found = {key: status for key, (status, _) in listed.items()}
        missing = {
            job_id.split("_", 1)[0]
            for job_id, status in _resolve(unique, found).items()
            if status is UNKNOWN_STATUS
        }
        for array_id in sorted(missing):
            reply = self.client.request("GET", f"{self.api.slurmdb}/job/{array_id}")
            if reply.status in (404, 500) and not _listed(reply.body):
                continue  # accounting has no such job (yet): UNKNOWN, as the SSH backend says
            found |= self.api.accounted_statuses(self.client.check(reply, f"reading job {array_id}"))
        return _resolve(unique, found)

    def _get(self, path: str, what: str) -> Any:
        return self.client.check(self.client.request("GET", path), what)

    def cancel(self, job_id: str) -> None:
        reply = self.client.request("DELETE", f"{self.api.slurm}/job/{job_id}")
        if 200 <= reply.status < 300:
            return
        try:
            self.client.check(reply, f"cancelling job {job_id}")
        except BackendError as error:
            text = str(error).lower()
            # A job that already ended (or is gone) is not an error for the caller.
            if "already" in text or "invalid job id" in text or "completed" in text:
                return
            raise

    def close(self) -> None:
        self.client.close()
        self.transport.close()


def _listed(body: Any) -> bool:
    return isinstance(body, Mapping) and bool(body.get("jobs"))


def _invalid_job(body: Any) -> bool:
    errors = body.get("errors") if isinstance(body, Mapping) else None
    return any(isinstance(e, Mapping) and e.get("error_number") == _INVALID_JOB_ID for e in errors or [])


def scontrol_token(transport: Transport, lifespan: int = 3600) -> Callable[[], str]:
    """A ``renew_token`` that runs ``scontrol token lifespan=<seconds>`` through ``transport`` (a login
    node over SSH) and returns the token it hands out."""

    def renew() -> str:
        result = transport.run(f"scontrol token lifespan={int(lifespan)}", check=False)
        match = _TOKEN_LINE.search(result.stdout)
        if result.returncode != 0 or match is None:
            detail = (result.stderr.strip() or result.stdout.strip())[-500:]
            raise BackendError(
                f"`scontrol token` failed (exit code {result.returncode}): {detail}; fix: the cluster "
                "needs AuthAltTypes=auth/jwt in slurm.conf (Slurm's JWT authentication)",
                transient=False,
            )
        return match[1]

    return renew


def rest_backend_from_config(
    url: str,
    ssh: dict[str, Any],
    token: str | None = None,
    user: str | None = None,
    renew_token: bool = True,
    token_lifespan: int = 3600,
    timeout: float = 30.0,
    inline_payload_limit: int | None = None,
) -> RestBackend:
    """The config's ``backend: {type: rest, ...}``: files over SSH (``ssh``: the ``ssh`` backend's host,
    port, user, key_filename, known_host_key), a 401 renewed with ``scontrol token`` over that SSH
    connection unless ``renew_token`` is false; ``inline_payload_limit`` as ``RestBackend`` takes it."""
    from slurm.options import construct
    from slurm.transports.ssh import SSHTransport

    transport = construct(SSHTransport, ssh, "backend 'rest' option 'ssh'")
    renew = scontrol_token(transport, token_lifespan) if renew_token else None
    return RestBackend(
        url,
        transport,
        token=token,
        renew_token=renew,
        user=user,
        timeout=timeout,
        inline_payload_limit=inline_payload_limit,
    )
