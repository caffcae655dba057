"""What the SDK writes at submit so that any later process can find a job again, and how it is read back.

Layout under the job root (one home for these names)::

    <job_root>/                         mode 0700: job files are never readable by other users
        <dir>/submission.json           one record per sbatch call (a job, or one array of a map)
        <dir>/job.sh, payload.pkl, ...  the job directory itself
        ids/<job id>  ->  ../<dir>      index: a symlink per sbatch call, so a lookup by id is one read

A 1,000-task map writes one record and one link, not a thousand. Records are written with one shell
command through the transport after ``sbatch`` returned the id; listing every record is one command too.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from slurm.backends.base import Transport
from slurm.errors import UnknownJobError

RECORD = "submission.json"
INDEX = "ids"
_VERSION = 1
#: A job id as sbatch prints it, or one array task of it ("123_4").
JOB_ID = re.compile(r"^(?P<base>\d+)(?:_(?P<index>\d+))?$")
#: Job directory names are made by the SDK (see Cluster._submit); anything else under the root is not ours.
_DIR_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


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
    version: int = field(default=_VERSION)

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

    def task_ids(self) -> list[str]:
        """Ids of the jobs this record stands for: itself, or "<id>_<index>" per array task."""
        return [f"{self.job_id}_{index}" for index in range(self.tasks)] if self.array else [self.job_id]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def parse_job_id(job_id: str) -> tuple[str, int | None]:
    """``"123"`` -> ("123", None); ``"123_4"`` -> ("123", 4). Anything else is refused before it can
    become part of a path."""
    match = JOB_ID.match(str(job_id).strip())
    if not match:
        raise UnknownJobError(f"malformed job id {job_id!r}: expected digits like 123, or 123_4 for task 4 "
                              "of an array job")
    index = match["index"]
    return match["base"], None if index is None else int(index)


def secure_root(transport: Transport, job_root: str) -> None:
    """Create the job root if needed and make it private to its owner (0700): payloads, results and
    logs below it may hold code and data others must not read."""
    root = shlex.quote(job_root)
    transport.run(f"mkdir -p {root} && chmod 700 {root}")


def write_record(transport: Transport, job_root: str, record: SubmissionRecord) -> None:
    """Write ``record`` into its job directory and link it from the index, in one command. The record
    is renamed into place, so readers see all of it or nothing."""
    directory = _checked_dir(job_root, record.job_dir)
    final, tmp = posixpath.join(directory, RECORD), posixpath.join(directory, f".{RECORD}.tmp")
    link = posixpath.join(job_root, INDEX, record.job_id)
    quote = shlex.quote
    transport.run(
        f"umask 077 && mkdir -p {quote(posixpath.dirname(link))}"
        f" && printf '%s\\n' {quote(record.to_json())} > {quote(tmp)} && mv -f {quote(tmp)} {quote(final)}"
        f" && ln -sfn {quote('../' + posixpath.basename(directory))} {quote(link)}")


def read_record(transport: Transport, job_root: str, job_id: str) -> tuple[SubmissionRecord, str]:
    """The record of sbatch call ``job_id`` (a base id, no array index) and its job script."""
    linked = posixpath.join(job_root, INDEX, job_id)
    record_path, script_path = posixpath.join(linked, RECORD), posixpath.join(linked, "job.sh")
    files = transport.read_existing([record_path, script_path])
    if record_path not in files:
        raise UnknownJobError(
            f"no SDK job {job_id} under {job_root}: it was not submitted through slurm-sdk with this job_root, "
            f"or its directory was cleaned up. `slurm-sdk jobs list` (or cluster.jobs()) shows the jobs it knows",
            job_id=job_id)
    return SubmissionRecord.from_json(files[record_path].decode()), files.get(script_path, b"").decode()


@dataclass
class Listing:
    """Every job directory under a root: the recorded ones, result files written per directory, and
    directories without a record (a submission that failed or was interrupted before its record)."""

    records: list[SubmissionRecord]
    results: dict[str, int]
    unrecorded: list[str]


def list_records(transport: Transport, job_root: str) -> Listing:
    """All records, how many result files each job directory holds, and the unrecorded directories,
    from one command (``find``, portable to BSD find for the local backend)."""
    command = (f"cd {shlex.quote(job_root)} 2>/dev/null || exit 0; "
               f"find . -mindepth 1 -maxdepth 1 -type d ! -name {INDEX} -print; "
               f"find . -mindepth 2 -maxdepth 2 -type f -name 'result-*.pkl' -print; "
               # Separate from the listings above: cat's output cannot interleave with find's own.
               f"find . -mindepth 2 -maxdepth 2 -type f -name {RECORD} -exec cat {{}} +")
    output = transport.run(command).stdout
    records: list[SubmissionRecord] = []
    dirs: list[str] = []
    results: dict[str, int] = {}
    for line in output.splitlines():
        if line.startswith("{"):
            records.append(SubmissionRecord.from_json(line))
        elif line.count("/") == 1:
            dirs.append(line[2:])
        elif line.startswith("./"):
            name = posixpath.join(job_root, line[2:].split("/", 1)[0])
            results[name] = results.get(name, 0) + 1
    recorded = {posixpath.basename(record.job_dir) for record in records}
    records.sort(key=lambda record: record.submitted_at)
    unrecorded = sorted(posixpath.join(job_root, name) for name in dirs if name not in recorded)
    return Listing(records, results, unrecorded)


def remove(transport: Transport, job_root: str, records: Sequence[SubmissionRecord]) -> None:
    """Delete the job directories of ``records`` and their index links, then any link left dangling
    (a directory removed by hand). Only direct children of the root are ever touched."""
    paths = [_checked_dir(job_root, record.job_dir) for record in records]
    paths += [posixpath.join(job_root, INDEX, record.job_id) for record in records]
    index = shlex.quote(posixpath.join(job_root, INDEX))
    command = f"rm -rf -- {' '.join(shlex.quote(path) for path in paths)}; " if paths else ""
    # A dangling link no longer resolves: `[ -e ]` follows it, `[ -L ]` does not.
    command += f"for l in {index}/*; do [ -L \"$l\" ] && [ ! -e \"$l\" ] && rm -f -- \"$l\"; done; true"
    transport.run(command)


def _checked_dir(job_root: str, job_dir: str) -> str:
    """``job_dir`` if it is a directory the SDK made directly under ``job_root``; refuse anything else, so
    a damaged record can never point a write or an ``rm -rf`` elsewhere."""
    parent, name = posixpath.split(posixpath.normpath(job_dir))
    if parent != posixpath.normpath(job_root) or not _DIR_NAME.match(name) or name in (".", "..", INDEX):
        raise ValueError(f"job directory {job_dir!r} is not a directory of the SDK under {job_root!r}")
    return posixpath.join(parent, name)
