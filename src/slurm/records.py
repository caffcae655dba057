"""What the SDK writes at submit so that any later process can find a job again, and how it is read back.

Where records and job directories live: ``slurm.node.layout``. A 1,000-task map writes one record, not a thousand. The record is written once ``sbatch`` returned the
id, in the same remote command on Slurm (``record_command``), else as one small atomic file write; a lookup
by id is one read, and listing every record is one ``find`` command.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from slurm.backends.base import JOB_ID
from slurm.errors import UnknownJobError
from slurm.node.layout import RECORDS_DIR, RESULT_GLOB, is_job_dir_name, record_path, script_path
from slurm.transports.base import Transport

_VERSION = 1


@dataclass(frozen=True)
class SubmissionRecord:
    """One sbatch call: a single job, or one array job (``tasks`` array tasks, indexes 0..tasks-1)."""

    job_id: str
    name: str
    job_dir: str
    submitted_at: datetime
    array: bool = False
    tasks: int = 1
    task: str = ""  # module.qualname of the function, for people reading listings
    workflow: bool = False
    version: int = _VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["submitted_at"] = self.submitted_at.isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SubmissionRecord:
        data: dict[str, Any] = json.loads(text)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["submitted_at"] = datetime.fromisoformat(data["submitted_at"])
        return cls(**known)

    @property
    def dir_name(self) -> str:
        return posixpath.basename(posixpath.normpath(self.job_dir))


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_job_id(job_id: str) -> tuple[str, int | None]:
    """``"123"`` -> ("123", None); ``"123_4"`` -> ("123", 4). Anything else is refused before it can
    become part of a path."""
    match = JOB_ID.fullmatch(str(job_id).strip())
    if not match:
        raise UnknownJobError(
            f"malformed job id {job_id!r}: expected digits like 123, or 123_4 for task 4 of an array job"
        )
    index = match["index"]
    return match["base"], None if index is None else int(index)


#: The SDK's directory in the user's home on the cluster (the default job root and cache are in it).
SDK_HOME = '"$HOME/.slurm-sdk"'


def secure_root(transport: Transport, job_root: str) -> None:
    """Create the job root if needed and make it private to its owner (0700): payloads, results and
    logs below it may hold code and data others must not read. The SDK's own ``~/.slurm-sdk`` (caches,
    synced sources, environments) is made 0700 too: one an older SDK made 0755 hides its tree again."""
    root = shlex.quote(job_root)
    transport.run(
        f"mkdir -p {root} && chmod 700 {root} && {{ [ ! -d {SDK_HOME} ] || chmod 700 {SDK_HOME}; }}"
    )


def write_record(transport: Transport, job_root: str, record: SubmissionRecord) -> None:
    """Write ``record`` where ``read_record`` finds it by id (renamed into place: readers see all of it or
    nothing)."""
    _checked_dir(job_root, record.job_dir)
    transport.write_bytes(record_path(job_root, record.job_id), record.to_json().encode() + b"\n", mode=0o600)


def record_command(job_root: str, record: SubmissionRecord, id_variable: str = "id") -> str:
    """Shell that writes ``record`` where ``read_record`` finds it, with the job id the shell variable
    ``id_variable`` holds (digits, checked by the caller): how the record rides in the sbatch command
    (``SlurmBackend.submit_with_files``). Renamed into place; private by the command's umask."""
    _checked_dir(job_root, record.job_dir)
    key = '"job_id": ""'  # unescaped quotes: it cannot occur inside a JSON string value
    before, found, after = dataclasses.replace(record, job_id="").to_json().partition(key)
    if not found:
        raise AssertionError(f"no {key} in the record's JSON")
    records = shlex.quote(posixpath.join(job_root, RECORDS_DIR))
    name = f'{records}/"${id_variable}".json'
    return (
        f"mkdir -p {records} && printf '%s%s%s\\n' {shlex.quote(before + key[:-1])} \"${id_variable}\" "
        f"{shlex.quote(key[-1] + after)} > {name}.tmp$$ && mv -f {name}.tmp$$ {name}"
    )


def read_record(transport: Transport, job_root: str, job_id: str) -> tuple[SubmissionRecord, str]:
    """The record of sbatch call ``job_id`` (a base id, no array index) and its job script."""
    try:
        record = SubmissionRecord.from_json(transport.read_bytes(record_path(job_root, job_id)).decode())
        script = transport.read_bytes(script_path(_checked_dir(job_root, record.job_dir))).decode()
    except FileNotFoundError:
        raise UnknownJobError(
            f"no SDK job {job_id} under {job_root}: it was not submitted through slurm-sdk with this job_root, "
            f"or its directory was cleaned up. `slurm-sdk jobs list` (or cluster.list_jobs()) shows the jobs it knows",
            job_id=job_id,
        ) from None
    return record, script


@dataclass
class Listing:
    """Everything under a root: the records, result files written per job directory, directories without a
    record (a submission that failed, or was interrupted between sbatch and its record), and records whose
    directory is gone (removed by hand)."""

    records: list[SubmissionRecord]
    results: dict[str, int]
    unrecorded: list[str]
    orphaned: list[SubmissionRecord]


def list_records(transport: Transport, job_root: str) -> Listing:
    """All of the above from one command (``find``, portable to BSD find for the local backend); three
    separate listings, so one tool's output never interleaves with another's."""
    command = (
        f"cd {shlex.quote(job_root)} 2>/dev/null || exit 0; "
        f"find . -mindepth 1 -maxdepth 1 -type d ! -name {RECORDS_DIR} -print; "
        f"find . -mindepth 2 -maxdepth 2 -type f -name {RESULT_GLOB!r} ! -path './{RECORDS_DIR}/*' -print; "
        f"find ./{RECORDS_DIR} -mindepth 1 -maxdepth 1 -type f -name '*.json' -exec cat {{}} + 2>/dev/null; true"
    )
    records: list[SubmissionRecord] = []
    dirs: set[str] = set()
    results: dict[str, int] = {}  # by directory name: a root spelt differently since still matches
    for line in transport.run(command).stdout.splitlines():
        if line.startswith("{"):
            try:
                records.append(SubmissionRecord.from_json(line))
            except (
                ValueError,
                KeyError,
                TypeError,
            ) as error:  # edited by hand: its directory counts as unrecorded
                logging.getLogger("slurm.records").warning(
                    "skipping a damaged record under %s: %s", job_root, error
                )
        elif line.count("/") == 1:
            dirs.add(line[2:])
        elif line.startswith("./"):
            name = line[2:].split("/", 1)[0]
            results[name] = results.get(name, 0) + 1
    records.sort(key=lambda record: record.submitted_at)
    recorded = {record.dir_name for record in records}
    return Listing(
        [record for record in records if record.dir_name in dirs],
        {record.job_dir: results.get(record.dir_name, 0) for record in records},
        sorted(posixpath.join(job_root, name) for name in dirs - recorded),
        [record for record in records if record.dir_name not in dirs],
    )


def remove(transport: Transport, job_root: str, records: Sequence[SubmissionRecord]) -> None:
    """Delete the job directories of ``records`` and the records themselves, in one command. Only direct
    children of the root (and records named by their job id) are ever touched."""
    paths = [_checked_dir(job_root, record.job_dir) for record in records]
    paths += [record_path(job_root, parse_job_id(record.job_id)[0]) for record in records]
    if paths:
        transport.run(f"rm -rf -- {' '.join(shlex.quote(path) for path in paths)}")


def remove_dirs(transport: Transport, job_root: str, job_dirs: Sequence[str]) -> None:
    """Delete job directories that have no record (a failed submission's), in one command; only direct
    children of the root the SDK could have made are ever touched."""
    paths = [_checked_dir(job_root, job_dir) for job_dir in job_dirs]
    if paths:
        transport.run(f"rm -rf -- {' '.join(shlex.quote(path) for path in paths)}")


def _checked_dir(job_root: str, job_dir: str) -> str:
    """``job_dir`` if it is a directory the SDK made directly under ``job_root``; refuse anything else, so
    a damaged record can never point a write or an ``rm -rf`` elsewhere."""
    parent, name = posixpath.split(posixpath.normpath(job_dir))
    if (
        parent != posixpath.normpath(job_root)
        or not is_job_dir_name(name)
        or name in (".", "..", RECORDS_DIR)
    ):
        raise ValueError(f"job directory {job_dir!r} is not a directory of the SDK under {job_root!r}")
    return posixpath.join(parent, name)
