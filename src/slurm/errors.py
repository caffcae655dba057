"""Every error the SDK raises. All derive from ``SlurmSDKError``; messages name the cause and the fix."""

from __future__ import annotations


class SlurmSDKError(Exception):
    """Base class of all SDK errors."""


class ConfigError(SlurmSDKError):
    """A config file, config dict or packaging/backend option is missing or malformed.

    ``key`` names the offending option, when there is one, so callers can point at its line."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ResourceError(SlurmSDKError, ValueError):
    """A task's resources (time, cpus, mem, ...) cannot be turned into valid ``#SBATCH`` lines."""


class SubmitError(SlurmSDKError):
    """A job could not be submitted."""


class SerializationError(SlurmSDKError):
    """A function, argument or result cannot be pickled, or cannot travel to the node's Python."""


class BackendError(SlurmSDKError):
    """The scheduler or the machine behind it misbehaved."""


class SSHError(BackendError):
    """The SSH connection to the login node failed."""


class CommandError(BackendError):
    """A shell command exited non-zero."""

    def __init__(self, cmd: str, returncode: int, stdout: str, stderr: str) -> None:
        self.cmd, self.returncode, self.stdout, self.stderr = cmd, returncode, stdout, stderr
        detail = (stderr.strip() or stdout.strip())[-2000:]
        super().__init__(f"command failed with exit code {returncode}: {cmd}\n{detail}".rstrip())


class UnknownJobError(SlurmSDKError, LookupError):
    """A job id the SDK has no record of (never submitted through it with this job root, cleaned up,
    or malformed)."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailedError(SlurmSDKError):
    """A job ended without a result: it failed, was cancelled, or its task raised an exception
    that could not be re-raised here as its original type."""

    def __init__(self, message: str, *, job_id: str, state: str) -> None:
        super().__init__(message)
        self.job_id, self.state = job_id, state


class JobTimeoutError(SlurmSDKError, TimeoutError):
    """Waiting for a job took longer than the caller allowed; the job itself keeps running."""

    def __init__(self, job_id: str, state: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g}s (last known state: {state}); "
                         "it is still running, call job.cancel() to stop it")
        self.job_id, self.state, self.timeout = job_id, state, timeout


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised on the node; set as ``__cause__`` of the
    re-raised exception so the remote frames show up in the local traceback."""

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return "the traceback in the job was:\n\n" + self.traceback_text.rstrip()
