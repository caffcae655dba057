"""``slurm-dev-cluster fault NAME [ARGS]``: the faults of ``slurm_dev_cluster.faults`` from the command line.

Faults set here last until ``slurm-dev-cluster fault reset``, or until the next ``harness up`` or test
session (both reset faults whose owner process has ended, and this command's process ends at once).
"""

from __future__ import annotations

from collections.abc import Callable

from slurm_dev_cluster.faults import FORGET_AFTER_SECONDS, JOB_ID, Faults, defaults_names

_ROWS = [
    ("status", "what is changed now"),
    ("reset", "undo every fault (dev defaults, nodes started, login on its port)"),
    (
        f"defaults {'|'.join(defaults_names())}",
        "Slurm's stock behaviour (production) or the kind dev settings",
    ),
    (
        "forget on [SECONDS] | off",
        f"slurmctld forgets finished jobs SECONDS after they end (default {FORGET_AFTER_SECONDS})",
    ),
    (
        "node cN stop | start",
        "kill a compute node (slurmctld told at once) / bring it back",
    ),
    (
        "pause | unpause | restart SERVICE",
        "SERVICE: slurmctld, login or a compute node cN (restarted login: same SSH port); restart also "
        "takes slurmrestd (same port)",
    ),
    ("ssh drop", "cut the job user's SSH connections to the login node now"),
    (
        "sbatch drop [N] | slow SECONDS | off",
        "the next N sbatch lose the connection after queueing / answer late",
    ),
    (
        "limits [JOBS [ARRAY]] | off",
        "a site's MaxSubmitJobsPerUser (default 50) and MaxArraySize (default 20), enforced",
    ),
    ("preempt JOB_ID", "preempt a running job as PreemptMode=REQUEUE does (SIGTERM, then it runs again)"),
    ("accounting lose-start JOB_ID", "slurmdbd's record of a running job goes back to PENDING (sacct lags)"),
    ("accounting lose-end JOB_ID", "slurmdbd's record of an ended job goes back to RUNNING (end never sent)"),
]
USAGE = "faults (slurm-dev-cluster fault NAME [ARGS]):\n" + "\n".join(
    f"  {syntax:<38}{text}" for syntax, text in _ROWS
)

Verb = Callable[[Faults, list[str]], str]


def _expect(args: list[str], *choices: str) -> str:
    if not args or args[0] not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got {' '.join(args) or 'nothing'}")
    return args[0]


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {text!r}")
    return value


def _status(faults: Faults, args: list[str]) -> str:
    return f"stack {faults.stack.project}"


def _reset(faults: Faults, args: list[str]) -> str:
    faults.reset()
    return "faults reset"


def _defaults(faults: Faults, args: list[str]) -> str:
    name = _expect(args, *defaults_names())
    faults.slurm_defaults(name)
    return f"Slurm runs with the {name} defaults"


def _forget(faults: Faults, args: list[str]) -> str:
    if _expect(args, "on", "off") == "off":
        faults.remember_finished_jobs()
        return "finished jobs are kept as long as the defaults say"
    seconds = int(_number(args[1], "SECONDS")) if len(args) > 1 else FORGET_AFTER_SECONDS
    faults.forget_finished_jobs(seconds)
    return f"slurmctld forgets finished jobs {seconds} s after they end"


def _node(faults: Faults, args: list[str]) -> str:
    node = _expect(args, *faults.compute_nodes)
    if _expect(args[1:], "stop", "start") == "stop":
        faults.stop_node(node)
        return f"{node} killed and marked down"
    faults.start_node(node)
    return f"{node} back in service"


def _service_verb(action: str) -> Verb:
    def verb(faults: Faults, args: list[str]) -> str:
        service = _expect(args, *(faults.restartable if action == "restart" else faults.configured))
        connection = getattr(faults, action)(service)
        port = f"; SSH on 127.0.0.1:{connection.port}" if connection else ""
        return f"{service}: {action} done{port}"

    return verb


def _ssh(faults: Faults, args: list[str]) -> str:
    _expect(args, "drop")
    return f"dropped {len(faults.drop_ssh())} SSH session(s)"


def _sbatch(faults: Faults, args: list[str]) -> str:
    mode = _expect(args, "drop", "slow", "off")
    if mode == "off":
        faults.sbatch_normal()
        return "sbatch is the real one again"
    if mode == "drop":
        times = int(_number(args[1], "N")) if len(args) > 1 else 1
        faults.drop_ssh_after_sbatch(times)
        return f"the next {times} sbatch call(s) queue the job, then lose the SSH connection"
    if len(args) < 2:
        raise ValueError("sbatch slow needs SECONDS")
    faults.slow_sbatch(_number(args[1], "SECONDS"))
    return f"sbatch answers {args[1]} s after queueing the job"


def _limits(faults: Faults, args: list[str]) -> str:
    if args[:1] == ["off"]:
        faults.lift_site_limits()
        return "no submit limit; MaxArraySize and enforcement as slurm.conf has them"
    jobs = int(_number(args[0], "JOBS")) if args else 50
    array = int(_number(args[1], "ARRAY")) if len(args) > 1 else 20
    faults.site_limits(jobs, array)
    return f"at most {jobs} jobs per user pending or running, arrays of at most {array} tasks"


def _preempt(faults: Faults, args: list[str]) -> str:
    if len(args) != 1 or not JOB_ID.fullmatch(args[0]):
        raise ValueError(f"preempt needs one JOB_ID (e.g. 12 or 12_3), got {' '.join(args) or 'nothing'}")
    faults.preempt(args[0])
    return f"job {args[0]} preempted: requeued, it runs again after its hold"


def _accounting(faults: Faults, args: list[str]) -> str:
    verb = _expect(args, "lose-start", "lose-end")
    if len(args) != 2 or not JOB_ID.fullmatch(args[1]):
        raise ValueError(f"{verb} needs one JOB_ID (e.g. 12 or 12_3), got {' '.join(args[1:]) or 'nothing'}")
    if verb == "lose-start":
        faults.lose_job_start(args[1])
        return f"sacct now says job {args[1]} is PENDING; squeue still knows better"
    faults.lose_job_end(args[1])
    return f"sacct now says job {args[1]} is RUNNING; squeue knows better until slurmctld forgets the job"


VERBS: dict[str, Verb] = {
    "status": _status,
    "reset": _reset,
    "defaults": _defaults,
    "forget": _forget,
    "node": _node,
    "pause": _service_verb("pause"),
    "unpause": _service_verb("unpause"),
    "restart": _service_verb("restart"),
    "ssh": _ssh,
    "sbatch": _sbatch,
    "limits": _limits,
    "preempt": _preempt,
    "accounting": _accounting,
}


def run(faults: Faults, name: str, args: list[str]) -> str:
    return VERBS[name](faults, args)
