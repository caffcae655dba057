"""slurmrestd's JSON, one adapter per version family: paths, the job description, job records.

slurmrestd serves each API version at its own paths (``/slurm/v0.0.42/...``) and a release serves a few
(Slurm 22.05: v0.0.36 to v0.0.38; 24.11: v0.0.40 to v0.0.42; 26.05: v0.0.42 to v0.0.45). The server's
OpenAPI description lists them; ``choose_version`` takes the newest one an adapter here knows. A family
shares one JSON shape: from
v0.0.40 on, a job's state is a list of flags, numbers that may be unset are ``{"set": ..., "number": ...}``
and the script travels in the job description; v0.0.37 and v0.0.38 (``ApiV37``) have a state as one
word, plain numbers, the script beside the job description and the environment as a map.

slurmrestd does not read a script's ``#SBATCH`` lines, so the options the SDK wrote there (slurm.rendering)
are read back (slurm.directives) and given as fields of the job description; an option without a field
here is refused before anything is submitted, naming the ones that work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from slurm.backends.base import JobState, JobStatus
from slurm.backends.slurm import expand_job_ids, parse_slurm_state
from slurm.directives import PREFIX, split_arguments
from slurm.durations import parse_time_seconds
from slurm.errors import BackendError, ConfigError

_VERSION_IN_PATH = re.compile(r"^/slurm(?:db)?/(v\d+\.\d+\.\d+)/")
_MEM = re.compile(r"^(\d+)([KMGT]?)$", re.I)
_MEGABYTES = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "": 1}
_SIGNAL = re.compile(r"^(?:(?P<flags>[BR]+):)?(?P<signal>[A-Z0-9]+)(?:@(?P<delay>\d+))?$", re.I)


def versions_in(openapi: Any) -> list[str]:
    """The API versions an OpenAPI description's paths name (``v0.0.42``), oldest first."""
    paths = openapi.get("paths", {}) if isinstance(openapi, Mapping) else {}
    found = {match[1] for path in paths if (match := _VERSION_IN_PATH.match(str(path)))}
    return sorted(found, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version[1:].split("."))


def _number(value: int) -> dict[str, Any]:
    return {"set": True, "infinite": False, "number": value}


def _unset_or_number(value: Any) -> int | None:
    """A v0.0.40+ ``{"set", "number"}`` (or a plain int) as an int; None when unset."""
    if isinstance(value, Mapping):
        return int(value.get("number", 0)) if value.get("set") else None
    return int(value) if isinstance(value, int) else None


def _megabytes(text: str) -> int:
    match = _MEM.match(text.strip())
    if not match:
        raise ConfigError(f"--mem={text!r} is not a size slurmrestd's backend can read (e.g. 512M, 4G)")
    return max(1, math.ceil(int(match[1]) * _MEGABYTES[match[2].upper()]))


def _signal_fields(text: str) -> dict[str, Any]:
    """``--signal=[B|R:]SIG[@seconds]`` as the job description's kill_warning_* fields."""
    match = _SIGNAL.match(text.strip())
    if not match:
        raise ConfigError(f"--signal={text!r} is not [B:]SIGNAL[@seconds]")
    fields: dict[str, Any] = {
        "kill_warning_signal": match["signal"].upper().removeprefix("SIG"),
        "kill_warning_delay": _number(int(match["delay"] or 60)),
    }
    flags = (match["flags"] or "").upper()
    fields["kill_warning_flags"] = (["BATCH_JOB"] if "B" in flags else []) + (
        ["NO_RESERVATION"] if "R" in flags else []
    )
    return fields


def _int(option: str) -> Callable[[str], dict[str, Any]]:
    return _whole_number(option, lambda number: {_FIELDS_V40_INT[option]: number})


def _whole_number(option: str, fields: Callable[[int], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    def field(text: str) -> dict[str, Any]:
        if not text.strip().isdigit():
            raise ConfigError(f"--{option}={text!r}: slurmrestd's backend takes a whole number here")
        return fields(int(text))

    return field


def _signal_string(text: str) -> dict[str, Any]:
    """``--signal`` for v0.0.37/38: ``SIG[@seconds]`` as it is; Slurm 22.05 refuses the flags."""
    match = _SIGNAL.match(text.strip())
    if not match:
        raise ConfigError(f"--signal={text!r} is not [B:]SIGNAL[@seconds]")
    if match["flags"]:
        raise ConfigError(
            f"--signal={text!r}: Slurm 22.05's slurmrestd (API v0.0.37/v0.0.38) refuses the {match['flags']}: "
            "flag (`Invalid SIGNAL specification`); fix: drop the flag, or use the ssh backend"
        )
    return {"signal": text.strip()}


_FIELDS_V40_INT = {
    "nodes": "minimum_nodes",
    "ntasks-per-node": "tasks_per_node",
    "ntasks": "tasks",
    "cpus-per-task": "cpus_per_task",
}
_STRING_FIELDS_V40 = {
    "job-name": "name",
    "output": "standard_output",
    "error": "standard_error",
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "constraint": "constraints",
    "nodelist": "required_nodes",
    "exclude": "excluded_nodes",
    "reservation": "reservation",
}


class ApiV40:
    """The v0.0.40 family: Slurm 24.11's v0.0.40 to v0.0.42 and 26.05's v0.0.42 to v0.0.45 (whose OpenAPI
    descriptions give every field used here the same type as v0.0.42's)."""

    versions: tuple[str, ...] = ("v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")

    def __init__(self, version: str) -> None:
        self.version = version
        self.slurm = f"/slurm/{version}"
        self.slurmdb = f"/slurmdb/{version}"
        self._options: dict[str, Callable[[str], dict[str, Any]]] = {
            **{name: self._string(field) for name, field in _STRING_FIELDS_V40.items()},
            **{name: _int(name) for name in _FIELDS_V40_INT},
            "time": lambda text: {"time_limit": _number(math.ceil(parse_time_seconds(text) / 60))},
            "mem": lambda text: {"memory_per_node": _number(_megabytes(text))},
            "mem-per-cpu": lambda text: {"memory_per_cpu": _number(_megabytes(text))},
            "gres": lambda text: {"tres_per_node": ",".join(f"gres/{g}" for g in text.split(","))},
            "requeue": lambda text: {"requeue": True},
            "no-requeue": lambda text: {"requeue": False},
            "signal": _signal_fields,
            "open-mode": lambda text: {"open_mode": [text.strip().upper()]},
        }

    @staticmethod
    def _string(field: str) -> Callable[[str], dict[str, Any]]:
        return lambda text: {field: text}

    # -- submitting -----------------------------------------------------------------------------

    def job_description(
        self,
        script: str,
        *,
        working_dir: str,
        marker: str,
        environment: Sequence[str],
        array: str | None,
        dependency: str | None,
    ) -> dict[str, Any]:
        """The body of ``POST .../job/submit``: the script's ``#SBATCH`` options as fields, the script,
        and ``marker`` as the job's comment (how a submission whose answer was lost is found again)."""
        job: dict[str, Any] = {}
        for option, value in sbatch_options(script):
            convert = self._options.get(option)
            if convert is None:
                raise ConfigError(
                    f"the sbatch option --{option} has no slurmrestd field in the SDK's REST backend; "
                    f"fix: drop it, or use the ssh backend; supported: {', '.join(sorted(self._options))}",
                    key="sbatch",
                )
            job |= convert(value)
        job |= {"current_working_directory": working_dir, "comment": marker}
        if array:
            job["array"] = array
        if dependency:
            job["dependency"] = dependency
        return self._body(job, script, environment)

    def _body(self, job: dict[str, Any], script: str, environment: Sequence[str]) -> dict[str, Any]:
        return {"job": job | {"script": script, "environment": list(environment)}}

    def submitted_id(self, body: Any) -> str | None:
        job_id = body.get("job_id") if isinstance(body, Mapping) else None
        return str(job_id) if isinstance(job_id, int) and job_id > 0 else None

    # -- reading jobs ---------------------------------------------------------------------------

    def live_statuses(self, body: Any) -> dict[str, tuple[JobStatus, str]]:
        """``GET /slurm/.../jobs`` (or ``/job/<id>``) -> ``{job id: (status, comment)}``, array tasks as
        ``<array id>_<index>``, a pending range expanded to one entry per task."""
        found: dict[str, tuple[JobStatus, str]] = {}
        for job in _jobs(body):
            states = job.get("job_state") or []
            words = [states] if isinstance(states, str) else list(states)
            status = JobStatus(
                _state(words),
                str(job.get("state_reason") or "").removeprefix("None"),
                int(job.get("restart_cnt") or 0),
            )
            for key in self._keys(
                job.get("job_id"),
                _unset_or_number(job.get("array_job_id")),
                _unset_or_number(job.get("array_task_id")),
                str(job.get("array_task_string") or ""),
            ):
                found[key] = (status, str(job.get("comment") or ""))
        return found

    def accounted_statuses(self, body: Any) -> dict[str, JobStatus]:
        """``GET /slurmdb/.../job/<id>`` -> ``{job id: status}``, one entry per array task. The last
        record of an id wins: the current run of a requeued job."""
        found: dict[str, JobStatus] = {}
        for job in _jobs(body):
            state = _mapping(job.get("state"))
            words = state.get("current") or []
            words = [words] if isinstance(words, str) else list(words)
            array = _mapping(job.get("array"))
            for key in self._keys(
                job.get("job_id"),
                _unset_or_number(array.get("job_id")),
                _unset_or_number(array.get("task_id")),
                str(array.get("task") or ""),
            ):
                found[key] = JobStatus(_state(words), str(state.get("reason") or "").removeprefix("None"))
        return found

    def _keys(self, job_id: Any, array_id: int | None, task_id: int | None, task_string: str) -> list[str]:
        if not array_id:
            return [str(job_id)]
        if task_id is not None:
            return [f"{array_id}_{task_id}"]
        if task_string:
            return [f"{array_id}_{task}" for task in self._tasks(task_string)]
        return [str(job_id)]

    @staticmethod
    def _tasks(task_string: str) -> list[str]:
        """The task indices of an array record's pending rest: ``1-3%1`` in slurmctld's records (as
        ``squeue`` prints it), a hexadecimal bit map in accounting's (``0xE``: tasks 1, 2 and 3; seen
        on Slurm 22.05 and 26.05)."""
        if task_string.lower().startswith("0x"):
            bits = int(task_string, 16)
            return [str(index) for index in range(bits.bit_length()) if bits >> index & 1]
        return [job_id.split("_", 1)[1] for job_id in expand_job_ids(f"0_[{task_string}]")]


class ApiV37(ApiV40):
    """The v0.0.37 family (Slurm 22.05's v0.0.37 and v0.0.38; its v0.0.36 names output fields otherwise).

    What differs from v0.0.40, as 22.05.8 serves it: the script goes beside the job description, not in
    it; the environment is a map; numbers are plain; a node count is ``nodes: [min, max]``; GPUs are
    ``gres``; ``--signal`` is one string, which 22.05 refuses with a ``B:`` or ``R:`` flag; there are no
    node-list fields. In records, a state is one word and numbers are plain.
    """

    versions = ("v0.0.37", "v0.0.38")

    def __init__(self, version: str) -> None:
        super().__init__(version)
        for option in ("nodelist", "exclude"):
            del self._options[option]
        self._options |= {
            "nodes": _whole_number("nodes", lambda count: {"nodes": [count, count]}),
            "time": lambda text: {"time_limit": math.ceil(parse_time_seconds(text) / 60)},
            "mem": lambda text: {"memory_per_node": _megabytes(text)},
            "mem-per-cpu": lambda text: {"memory_per_cpu": _megabytes(text)},
            "gres": lambda text: {"gres": text},
            "signal": _signal_string,
            "open-mode": lambda text: {"open_mode": text.strip().lower()},
        }

    def _body(self, job: dict[str, Any], script: str, environment: Sequence[str]) -> dict[str, Any]:
        variables = dict(entry.partition("=")[::2] for entry in environment)
        return {"script": script, "job": job | {"environment": variables}}


ADAPTERS: tuple[type[ApiV40], ...] = (ApiV40, ApiV37)
SUPPORTED = tuple(sorted((v for adapter in ADAPTERS for v in adapter.versions), key=_version_key))


def choose_version(seen: Iterable[str], url: str) -> ApiV40:
    """The adapter for the newest version both the server (``seen``) and the SDK know; else an error
    naming both lists."""
    seen = sorted(set(seen), key=_version_key)
    for version in reversed(seen):
        for adapter in ADAPTERS:
            if version in adapter.versions:
                return adapter(version)
    raise BackendError(
        f"slurmrestd at {url} offers API versions {', '.join(seen) or '(none found in its OpenAPI description)'}; "
        f"the SDK's REST backend supports {', '.join(SUPPORTED)}; fix: use the ssh backend with this "
        "cluster, or a slurmrestd that offers one of the supported versions"
    )


def sbatch_options(script: str) -> list[tuple[str, str]]:
    """``(option, value)`` of each ``#SBATCH --option[=value]`` before the script's first command, in
    order, read the way sbatch reads them (slurm.directives)."""
    options: list[tuple[str, str]] = []
    for line in script.split("\n")[1:]:
        if not line.startswith("#"):
            if line.strip():
                break
            continue
        if not line.startswith(PREFIX):
            continue
        for argument in split_arguments(line[len(PREFIX) :]):
            if not argument.startswith("--"):
                raise ConfigError(f"#SBATCH {argument!r}: the REST backend reads long options only")
            name, _, value = argument[2:].partition("=")
            options.append((name, value))
    return options


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _jobs(body: Any) -> list[Mapping[str, Any]]:
    jobs = body.get("jobs") if isinstance(body, Mapping) else None
    return [job for job in jobs or [] if isinstance(job, Mapping)]


def _state(words: list[str]) -> JobState:
    """The SDK's state from a v0.0.40+ state list: the first word is the base state, the rest flags."""
    if not words:
        return JobState.UNKNOWN
    state = parse_slurm_state(str(words[0]))
    if state is JobState.RUNNING and "COMPLETING" in words:
        return JobState.COMPLETING
    return state
