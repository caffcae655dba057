"""Every error the SDK raises. All derive from ``SlurmSDKError``; messages name the cause and the fix."""

from __future__ import annotations

# Defined on the node side (the runner raises them there) and re-exported here, the one place callers look.
from slurm.node.errors import RankTerminated, ResourceError, SerializationError, SlurmSDKError

__all__ = [
    "BackendError",
    "CommandError",
    "ConfigError",
    "DependencyError",
    "JobFailedError",
    "JobTimeoutError",
    "RankTerminated",
    "RemoteTraceback",
    "ResourceError",
    "SSHError",
    "SerializationError",
    "SlurmSDKError",
    "SubmitError",
    "SubmitLimitError",
    "UnknownJobError",
    "is_transient_message",
]


class ConfigError(SlurmSDKError):
    """A config file, config dict or packaging/backend option is missing or malformed.

    ``key`` names the offending option, when there is one, so callers can point at its line."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class SubmitError(SlurmSDKError):
    """A job could not be submitted (the scheduler said no; it was not queued). ``transient``: the
    scheduler was briefly unavailable, and submitting again may succeed."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class SubmitLimitError(SubmitError):
    """The site's submit limit (jobs pending or running per user at once) cannot take the jobs: sbatch
    refused one for it, or a map asked not to wait (``wait_for_capacity=False``) and there is no room
    now. ``limit``: the allowed number (None when only sbatch's refusal names it), ``source``: the
    setting or sbatch's reason word, ``queued``: the user's jobs already pending or running, ``needed``:
    the jobs the submission needs."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        limit: int | None = None,
        queued: int | None = None,
        needed: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source, self.limit, self.queued, self.needed = source, limit, queued, needed


class DependencyError(SubmitError):
    """A project's dependencies cannot be resolved or installed for the cluster's Python and platform.
    Raised by ``submit`` before anything is queued."""


class BackendError(SlurmSDKError):
    """The scheduler or the machine behind it misbehaved.

    ``transient`` is True when trying again later may succeed (slurmctld not answering, a dropped or
    frozen connection); the SDK retries those with backoff within the caller's timeout.
    ``not_submitted`` is True on a submission's error after which the SDK looked for the job and found
    none."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.not_submitted = False


class SSHError(BackendError):
    """The SSH connection to the login node failed."""


class CommandError(BackendError):
    """A shell command exited non-zero."""

    def __init__(self, cmd: str, returncode: int, stdout: str, stderr: str) -> None:
        self.cmd, self.returncode, self.stdout, self.stderr = cmd, returncode, stdout, stderr
        detail = (stderr.strip() or stdout.strip())[-2000:]
        super().__init__(
            f"command failed with exit code {returncode}: {cmd}\n{detail}".rstrip(),
            transient=is_transient_message(detail),
        )


class UnknownJobError(SlurmSDKError, LookupError):
    """A job id the SDK has no record of (never submitted through it with this job root, cleaned up,
    or malformed)."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailedError(SlurmSDKError):
    """A job ended without a result: it failed, was cancelled, the scheduler forgot it, its dependency
    can never be met, or its task raised an exception that could not be re-raised here as its original
    type. ``exit_code`` is the task's ``sys.exit`` code when it exited that way (None otherwise)."""

    def __init__(self, message: str, *, job_id: str, state: str, exit_code: int | str | None = None) -> None:
        super().__init__(message)
        self.job_id, self.state, self.exit_code = job_id, state, exit_code


class JobTimeoutError(SlurmSDKError, TimeoutError):
    """Waiting for a job took longer than the caller allowed; the job itself is not touched.

    ``state`` is the last state the scheduler reported; ``detail`` says how old that answer is, or
    that the scheduler or the login node stopped answering."""

    def __init__(self, job_id: str, state: str, timeout: float, detail: str = "") -> None:
        detail = detail or f"last known state: {state}"
        super().__init__(
            f"job {job_id} did not finish within {timeout:g}s: {detail}; call job.cancel() to stop it"
        )
        self.job_id, self.state, self.timeout, self.detail = job_id, state, timeout, detail


#: What Slurm commands and SSH print when the controller or the connection is briefly unavailable.
_TRANSIENT_MESSAGES = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "connection timed out",
    "temporarily unable",
    "resource temporarily unavailable",
    "zero bytes were transmitted",
    "communication connection failure",
    "connection reset",
    "slurmctld is not responding",
    "slurm_receive_msg",
    "slurm backup controller in standby mode",
)


def is_transient_message(text: str) -> bool:
    """Whether a Slurm/SSH error text means "not now" rather than "never"."""
    lowered = text.lower()
    return any(message in lowered for message in _TRANSIENT_MESSAGES)


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised on the node; set as ``__cause__`` of the
    re-raised exception so the remote frames show up in the local traceback."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return "the traceback in the job was:\n\n" + self.traceback_text.rstrip()
