"""Jobs as arguments: ``cluster.submit(g, {"x": [job_a]})`` runs ``g`` after ``job_a`` and gives it a's result.

On the submitting side (``extract``), every ``Job`` found in a call's arguments, at any depth of lists,
tuples (named ones too) and dicts, and in keyword arguments, is swapped for a ``ResultOf``: where its
result file is. An ``MappedJobs`` becomes the list of its elements' results. The jobs become ``afterok``
dependencies of the new job (``dependencies``), together with any explicit ``.after(...)`` ones. On the node
(``inject``) the runner swaps each ``ResultOf`` for the value its job returned, read from the shared file
system: the result never travels back through the client.

A parent already known to have ended is not a Slurm dependency (Slurm forgets ended jobs after MinJobAge
and would refuse the id): a COMPLETED one just passes its result, a failed one is refused at submit.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from slurm.errors import SlurmSDKError, SubmitError
from slurm.node.name import node_name

if TYPE_CHECKING:
    from slurm.job import Job
    from slurm.job_state import JobCluster
    from slurm.serialization import Call

#: How long the runner waits for a parent's result file to become visible on this node (a shared file
#: system may show it a moment after the parent's node wrote it; Slurm already saw the parent succeed).
RESULT_VISIBLE_WITHIN = 60.0
_UNCHANGED: Any = object()


class ParentResultError(SlurmSDKError):
    """Raised on the node when a parent job's result cannot be passed to its child."""


@dataclass(frozen=True)
class ResultOf:
    """What travels in the payload in place of a ``Job``: the result file the runner loads instead."""

    job_id: str
    name: str
    result_path: str


def replace(obj: Any, swap: Callable[[Any], Any]) -> Any:
    """``obj`` with every leaf for which ``swap`` returns something other than ``_UNCHANGED`` replaced,
    looking inside lists, tuples and dicts (values) at any depth. Containers holding nothing to swap are
    returned as they are (no copy); those that do are rebuilt with their own type."""
    return _replace(obj, swap, set())


def _replace(obj: Any, swap: Callable[[Any], Any], active: set[int]) -> Any:
    swapped = swap(obj)
    if swapped is not _UNCHANGED:
        return swapped
    if not isinstance(obj, (list, tuple, dict)) or id(obj) in active:
        return obj  # a leaf, or a container already being walked (a cycle): left as it is
    active.add(id(obj))
    try:
        values = list(obj.values()) if isinstance(obj, dict) else list(obj)
        new = [_replace(value, swap, active) for value in values]
    finally:
        active.discard(id(obj))
    if all(after is before for after, before in zip(new, values, strict=True)):
        return obj
    return _rebuild(obj, new)


def _rebuild(obj: list[Any] | tuple[Any, ...] | dict[Any, Any], values: list[Any]) -> Any:
    if isinstance(obj, dict):
        pairs = zip(obj.keys(), values, strict=True)
        if type(obj) is dict:
            return dict(pairs)
        rebuilt = copy.copy(obj)  # keeps what a subclass carries (defaultdict's factory, ...)
        rebuilt.update(pairs)
        return rebuilt
    if isinstance(obj, tuple):
        if hasattr(obj, "_make"):  # a namedtuple
            return obj._make(values)
        return tuple(values) if type(obj) is tuple else type(obj)(values)
    if type(obj) is list:
        return values
    rebuilt_list = copy.copy(obj)
    rebuilt_list[:] = values
    return rebuilt_list


# --- the submitting side ---------------------------------------------------------------------------


def extract(cluster: JobCluster, calls: Sequence[Call]) -> tuple[list[Call], list[Job]]:
    """The calls with every Job (and MappedJobs) argument swapped for ``ResultOf``s, and those jobs (each
    once, in order of appearance). Raises ``SubmitError`` for a job of another cluster or job root."""
    from slurm.job import Job, MappedJobs

    parents: dict[str, Job] = {}

    def swap(obj: Any) -> Any:
        if isinstance(obj, Job):
            _check_same_place(cluster, obj)
            parents.setdefault(obj.job_id, obj)
            return ResultOf(obj.job_id, obj.name, obj._result_path)
        if isinstance(obj, MappedJobs):
            return [swap(job) for job in obj]
        return _UNCHANGED

    swapped = [replace(call, swap) for call in calls]
    return swapped, list(parents.values())


class DependentTask(Protocol):
    """A task as its dependencies are worked out (``slurm.task.Task``), typed here because ``slurm.task``
    imports this module (on the node, to give a job its Job arguments' results)."""

    @property
    def name(self) -> str: ...
    @property
    def dependencies(self) -> tuple[str, ...]: ...
    @property
    def dependency_type(self) -> str: ...
    @property
    def dependency_clusters(self) -> Mapping[str, str | None]: ...


def dependencies(task: DependentTask, parents: Sequence[Job]) -> tuple[str, ...]:
    """The new job's Slurm dependencies: the task's explicit ones, then the parents that have not ended.
    A parent that ended without a result is refused here, naming it (one result-file listing decides
    for parents not yet seen to end)."""
    if not parents:
        return task.dependencies
    if task.dependency_type != "afterok":
        raise SubmitError(
            f"{task!r} waits with {task.dependency_type!r} (from .after(..., dependency_type={task.dependency_type!r})), "
            f"but Job arguments ({_names(parents)}) need afterok: a job can only start once the jobs whose "
            "results it receives succeeded. Fix: wait with afterok, or pass job.result() instead of the job"
        )
    from slurm.backends.base import JobState
    from slurm.waiting import check_result_files

    unfinished = [job for job in parents if not job.last_state.is_terminal]
    if unfinished:
        unfinished[0].cluster._retry(lambda: check_result_files(unfinished))
    failed = [
        job for job in parents if job.last_state.is_terminal and job.last_state is not JobState.COMPLETED
    ]
    if failed:
        raise SubmitError(
            f"cannot pass {_names(failed)} to {task.name}: "
            + ", ".join(f"job {job.job_id} ended {job.last_state.value}" for job in failed)
            + " without a result. Fix: resubmit the parent (job.result() shows why it failed)"
        )
    waiting = [job_id for job in parents if not job.last_state.is_terminal for job_id in job._dependency_ids]
    return tuple(dict.fromkeys([*task.dependencies, *waiting]))


def _names(jobs: Sequence[Job]) -> str:
    return ", ".join(f"job {job.job_id} ({job.name})" for job in jobs)


def _place(cluster: JobCluster) -> tuple[Any, ...]:
    """Where a cluster's jobs live: the scheduler (backend type and its address or state directory) and
    the job root. Jobs can only feed jobs of the same place: their result files must be on the same file
    system and their ids known to the same scheduler."""
    backend, transport = cluster.backend, cluster.backend.transport
    return (
        type(backend).__name__,
        getattr(backend, "state_dir", None),
        getattr(transport, "host", None),
        getattr(transport, "port", None),
        cluster.resolve_job_root(),
    )


def check_dependency_clusters(cluster: JobCluster, task: DependentTask) -> None:
    """Refuse ``.after(job)`` of a job on another Slurm cluster than the one ``cluster`` submits to: its id
    means nothing (or another job) there, and Slurm has no dependencies across clusters unless they form
    a federation."""
    here = _slurm_cluster(cluster)
    for job_id, there in task.dependency_clusters.items():
        if (
            there != here
            and not federated_job_id(job_id)
            and not _same_cluster(there, here, cluster, cluster)
        ):
            raise SubmitError(_across_clusters(f"job {job_id}", there, here))


#: Slurm puts a federation member's id in a job id's bits from 26 up (a lone cluster's ids stay below
#: MaxJobId, at most 67,043,328 < 2**26), so such an id is unique across the federation and Slurm
#: resolves a dependency on it from any sibling.
_FEDERATION_ID_SHIFT = 26


def federated_job_id(job_id: str) -> bool:
    base = job_id.partition("_")[0]
    return base.isdigit() and int(base) >> _FEDERATION_ID_SHIFT > 0


def _slurm_cluster(cluster: JobCluster) -> str | None:
    return getattr(cluster.backend, "slurm_cluster", None)


def _same_cluster(
    there: str | None, here: str | None, there_cluster: JobCluster, here_cluster: JobCluster
) -> bool:
    """Whether two different ``slurm_cluster`` settings still mean one Slurm cluster: one of them names the
    login node's own cluster, which the other leaves unnamed (None). Asks that side's backend for the
    name (once per backend)."""
    if there is not None and here is not None:
        return False
    named, unnamed_side = (here, there_cluster) if there is None else (there, here_cluster)
    ask = getattr(unnamed_side.backend, "login_cluster_name", None)
    return callable(ask) and ask() == named


def _cluster_label(name: str | None) -> str:
    return f"Slurm cluster {name!r}" if name else "the login node's own Slurm cluster"


def _across_clusters(what: str, there: str | None, here: str | None) -> str:
    return (
        f"{what} runs on {_cluster_label(there)}, but this Cluster submits to {_cluster_label(here)}: Slurm "
        "has no dependencies across clusters outside a federation. Fix: submit both to one cluster "
        "(the same slurm_cluster), or wait for the job and pass job.result()"
    )


def _check_same_place(cluster: JobCluster, job: Job) -> None:
    there, here = _slurm_cluster(job.cluster), _slurm_cluster(cluster)
    if (
        there != here
        and not federated_job_id(job.job_id)
        and not _same_cluster(there, here, job.cluster, cluster)
    ):
        raise SubmitError(_across_clusters(f"job {job.job_id} ({job.name})", there, here))
    if job.cluster is cluster or _place(job.cluster) == _place(cluster):
        return
    raise SubmitError(
        f"job {job.job_id} ({job.name}) was submitted to another cluster or job root "
        f"({_describe(job.cluster)}) than this one ({_describe(cluster)}): a job's result can only be passed to "
        "jobs of the same scheduler and job root. Fix: submit both through one Cluster, or pass job.result()"
    )


def _describe(cluster: JobCluster) -> str:
    backend, state_dir, host, port, root = _place(cluster)
    where = f"{host}:{port}" if host else state_dir or "this machine"
    return f"{backend} on {where}, job root {root}"


# --- the node side ---------------------------------------------------------------------------------


def inject(call: Call) -> Call:
    """On the node: the call with every ``ResultOf`` replaced by its job's return value (each result
    file read once). Raises ``ParentResultError`` naming the parent when one has no result."""
    loaded: dict[str, Any] = {}

    def swap(obj: Any) -> Any:
        if not isinstance(obj, ResultOf):
            return _UNCHANGED
        if obj.result_path not in loaded:
            loaded[obj.result_path] = _load(obj)
        return loaded[obj.result_path]

    args, kwargs = replace(call, swap)
    return args, kwargs


def _load(parent: ResultOf) -> Any:
    from slurm.serialization import Outcome

    outcome = Outcome.load(_read_when_visible(parent))
    if not outcome.ok:
        raise ParentResultError(
            f"parent job {parent.job_id} ({parent.name}) raised {outcome.fields['type']}: "
            f"{outcome.fields['message']}, so it has no result to pass to this job"
        )
    print(
        f"[slurm-sdk] argument: the result of job {parent.job_id} ({parent.name})",
        file=sys.stderr,
        flush=True,
    )
    return outcome.value(parent.job_id)


def _read_when_visible(parent: ResultOf) -> bytes:
    deadline, pause = time.monotonic() + RESULT_VISIBLE_WITHIN, 0.05
    while True:
        try:
            with open(parent.result_path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                raise ParentResultError(
                    f"parent job {parent.job_id} ({parent.name}) left no result at {parent.result_path} "
                    f"(waited {RESULT_VISIBLE_WITHIN:g}s on {node_name()}): it was removed (cleanup?) "
                    "or the job directory is not on a file system this node shares"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
