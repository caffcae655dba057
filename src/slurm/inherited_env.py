"""The ``SLURM_*`` variables a process inherits from an enclosing job, and the one rule for dropping them.

Inside an allocation, ``SLURM_JOB_ID`` & co. would make ``sbatch``/``srun`` attach children to the
parent's job. ``SLURM_CONF`` says which cluster to talk to and ``SLURM_SDK_*`` are the SDK's own settings:
both must survive. The rule is applied in Python (local commands, a workflow's runner) and as a shell
prefix (Slurm commands run through a transport, perhaps on another machine); both come from ``KEPT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

_PREFIX = "SLURM_"
#: Glob patterns (shell ``case`` syntax, matched with fnmatch here) of SLURM_* variables that are kept.
KEPT = ("SLURM_CONF", "SLURM_SDK_*")


def is_inherited_job_variable(name: str) -> bool:
    """True for a SLURM_* variable that belongs to an enclosing job (and must not leak into children)."""
    return name.startswith(_PREFIX) and not any(fnmatchcase(name, pattern) for pattern in KEPT)


def scrub_slurm_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the SLURM_* variables of an enclosing job."""
    return {key: value for key, value in environ.items() if not is_inherited_job_variable(key)}


#: The same rule as a shell prefix: ``SCRUB_SLURM_ENV_SHELL + command`` runs ``command`` without them.
SCRUB_SLURM_ENV_SHELL = (
    f"for _v in $(env | sed -n 's/^\\({_PREFIX}[A-Za-z0-9_]*\\)=.*/\\1/p'); do "
    f'case "$_v" in {"|".join(KEPT)}) ;; *) unset "$_v" ;; esac; done; '
)
