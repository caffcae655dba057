"""What a task asks the scheduler for, validated when the task is defined so mistakes surface early."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from slurm.durations import parse_time_seconds
from slurm.errors import ResourceError
from slurm.node.checkpoint import Checkpointing

_MEM = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
_GPUS = re.compile(r"^([A-Za-z0-9_.-]+:)?[1-9]\d*$")

# Options the SDK renders itself; passing them through ``sbatch={...}`` would silently conflict.
_MANAGED_OPTIONS = {
    "time": "time=",
    "cpus-per-task": "cpus=",
    "mem": "mem=",
    "gres": "gpus=",
    "partition": "partition=",
    "account": "account=",
    "job-name": "name=",
    "output": None,
    "error": None,
    "array": None,
    "requeue": "requeue=",
    "no-requeue": "requeue=",
    "signal": "checkpoint=",
    "nodes": "nodes=",
    "ntasks-per-node": "ntasks_per_node=",
    "ntasks": "nodes= and ntasks_per_node=",
}


def _check_mem(mem: str | int) -> str:
    if isinstance(mem, int) and not isinstance(mem, bool):
        if mem < 1:
            raise ResourceError(f"mem must be a positive number of megabytes, got {mem}")
        return str(mem)
    match = _MEM.match(str(mem).strip())
    if not match or int(match.group(1)) < 1:
        raise ResourceError(
            f"malformed mem {mem!r}: use a positive size with an optional unit K, M, G or T "
            "(e.g. '512M', '4G', or an int in megabytes)"
        )
    return match.group(1) + match.group(2).upper()


def _check_gpus(gpus: int | str) -> str | None:
    if isinstance(gpus, int) and not isinstance(gpus, bool):
        if gpus < 0:
            raise ResourceError(f"gpus must be >= 0, got {gpus}")
        return str(gpus) if gpus else None
    if not _GPUS.match(str(gpus)):
        raise ResourceError(f"malformed gpus {gpus!r}: use a count (2) or type:count ('a100:2')")
    return str(gpus)


def _check_name(what: str, value: str) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise ResourceError(f"{what} must be a non-empty string without whitespace, got {value!r}")
    return value


#: sbatch options that ask for one thing in different ways; the ones Resources renders from its fields
#: are named by the field (``mem=``). sbatch refuses the memory options together; the others would
#: double-book what the field already asks for.
_EXCLUSIVE = (
    ("memory", ("mem", "mem-per-cpu", "mem-per-gpu")),
    ("GPUs", ("gres", "gpus", "gpus-per-node")),
    ("CPUs", ("cpus-per-task", "cpus-per-gpu")),
)
#: Every option name the SDK checks against: sbatch would read a shorter key as an abbreviation of one.
_KNOWN_OPTIONS = {*_MANAGED_OPTIONS, *(name for _, group in _EXCLUSIVE for name in group)}


def _check_sbatch(options: Mapping[str, Any]) -> dict[str, Any]:
    from slurm.directives import OPTION_NAME, value_problem

    checked: dict[str, Any] = {}
    for key, value in options.items():
        option = key.lstrip("-").replace("_", "-") if isinstance(key, str) else ""
        if not OPTION_NAME.fullmatch(option) or "hetjob" in option or "packjob" in option:
            raise ResourceError(
                f"sbatch={{{key!r}: ...}}: not an sbatch long option name; write the option as in "
                "`sbatch --help`, without dashes, e.g. sbatch={'constraint': 'fast', 'mail_type': 'END'}"
            )
        if option in _MANAGED_OPTIONS:
            instead = _MANAGED_OPTIONS[option]
            fix = f"use the {instead} argument instead" if instead else "the SDK sets it itself"
            raise ResourceError(f"sbatch option --{option} cannot be passed through sbatch={{...}}: {fix}")
        longer = sorted(
            name for name in _KNOWN_OPTIONS if name.startswith(option) and option not in _KNOWN_OPTIONS
        )
        if longer:
            raise ResourceError(
                f"sbatch={{{key!r}: ...}}: sbatch would read --{option} as an abbreviation of "
                f"--{longer[0]}: write the full option name"
            )
        if option in checked:
            raise ResourceError(
                f"sbatch option --{option} is given twice (keys {key!r} and another spelling)"
            )
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ResourceError(
                f"sbatch option --{option} needs a single-line str, int, float or bool, got {value!r}"
            )
        problem = None if isinstance(value, bool) or value is None else value_problem(str(value))
        if problem:
            raise ResourceError(
                f"sbatch option --{option}={value!r} cannot be written: {problem}; "
                "pass a single-line value without control characters"
            )
        checked[option] = value
    return checked


#: Resources fields and the sbatch option each renders, for ``_EXCLUSIVE``.
_FIELD_OPTIONS = {"mem": "mem", "gpus": "gres", "cpus": "cpus-per-task"}


def _rendered_options(resources: Resources) -> dict[str, str]:
    """The options Resources renders that take part in ``_EXCLUSIVE``, each named as the user wrote it."""
    present = {
        option: f"{field}="
        for field, option in _FIELD_OPTIONS.items()
        if getattr(resources, field) is not None
    }
    for option, value in resources.sbatch.items():
        if value is not None and value is not False:
            present[option] = f"sbatch={{{option!r}: ...}}"
    return present


def _check_exclusive(resources: Resources) -> None:
    present = _rendered_options(resources)
    for what, group in _EXCLUSIVE:
        given = [present[name] for name in group if name in present]
        if len(given) > 1:
            raise ResourceError(
                f"{' and '.join(given)} both set the job's {what} ("
                + ", ".join(f"--{name}" for name in group)
                + " exclude each other): keep one of them"
            )


@dataclass(frozen=True)
class Resources:
    """Scheduler request of one task. ``None`` means "not set": the cluster default, else Slurm's default."""

    time: str | int | None = None
    cpus: int | None = None
    mem: str | int | None = None
    gpus: int | str | None = None
    partition: str | None = None
    account: str | None = None
    #: False: never requeue after a node failure or preemption (``--no-requeue``); True: allow it
    #: (``--requeue``); None: the cluster's JobRequeue default.
    requeue: bool | None = None
    #: Checkpoint and requeue (``slurm.node.checkpoint``): True for the defaults, or a ``Checkpointing``.
    checkpoint: Checkpointing | bool | None = None
    #: Multi-rank task (``slurm.node.ranks``): the function runs once per rank under srun, ``nodes`` x
    #: ``ntasks_per_node`` ranks (either alone means 1 of the other); None for both: one process.
    nodes: int | None = None
    ntasks_per_node: int | None = None
    #: Extra sbatch options: ``{"constraint": "fast", "exclusive": True}`` -> ``--constraint=fast``, ``--exclusive``.
    sbatch: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time is not None:
            parse_time_seconds(self.time)
        if self.cpus is not None and (
            isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1
        ):
            raise ResourceError(f"cpus must be an int >= 1, got {self.cpus!r}")
        for name in ("nodes", "ntasks_per_node"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ResourceError(f"{name} must be an int >= 1, got {value!r}")
        if self.mem is not None:
            object.__setattr__(self, "mem", _check_mem(self.mem))
        if self.gpus is not None:
            object.__setattr__(self, "gpus", _check_gpus(self.gpus))
        if self.requeue is not None and not isinstance(self.requeue, bool):
            raise ResourceError(f"requeue must be True, False or None, got {self.requeue!r}")
        object.__setattr__(self, "checkpoint", Checkpointing.of(self.checkpoint))
        checkpointing, limit = self.checkpointing, self.time_seconds
        if checkpointing and limit is not None and checkpointing.signal_before >= limit:
            raise ResourceError(
                f"checkpoint signal_before={checkpointing.signal_before}s must be shorter than "
                f"time={self.time!r} ({self.time_seconds}s): lower signal_before or raise time"
            )
        if checkpointing and self.world_size is not None:
            raise ResourceError(
                "checkpoint=True cannot be combined with nodes/ntasks_per_node yet (the time-limit signal "
                "reaches the batch shell, not the ranks): drop checkpoint, or save state from rank 0 yourself"
            )
        for name in ("partition", "account"):
            if getattr(self, name) is not None:
                _check_name(name, getattr(self, name))
        if not isinstance(self.sbatch, Mapping):
            raise ResourceError(f"sbatch must be a dict of extra options, got {self.sbatch!r}")
        object.__setattr__(self, "sbatch", _check_sbatch(self.sbatch))
        _check_exclusive(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Resources:
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ResourceError(f"unknown resource {', '.join(unknown)} (valid: {', '.join(valid)})")
        return cls(**values)

    def over(self, defaults: Resources) -> Resources:
        """These resources with unset fields taken from ``defaults`` (extra sbatch options merged)."""
        # Of options that exclude each other (mem= and sbatch mem-per-cpu, ...), the ones set here win
        # over every default of the same kind.
        mine = _rendered_options(self).keys()
        overridden = {name for _, group in _EXCLUSIVE if mine & set(group) for name in group}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sbatch"}
        merged = {
            name: getattr(defaults, name)
            if value is None and _FIELD_OPTIONS.get(name) not in overridden
            else value
            for name, value in values.items()
        }
        sbatch = {name: value for name, value in defaults.sbatch.items() if name not in overridden}
        return replace(self, **merged, sbatch={**sbatch, **self.sbatch})

    @property
    def world_size(self) -> int | None:
        """Ranks of a multi-rank task (``nodes * ntasks_per_node``); None for a one-process task."""
        if self.nodes is None and self.ntasks_per_node is None:
            return None
        return (self.nodes or 1) * (self.ntasks_per_node or 1)

    @property
    def checkpointing(self) -> Checkpointing | None:
        """The checkpoint settings when checkpointing is on (``checkpoint`` as normalised), else None."""
        return self.checkpoint if isinstance(self.checkpoint, Checkpointing) else None

    @property
    def time_seconds(self) -> int | None:
        return None if self.time is None else parse_time_seconds(self.time)
