"""``sbatch`` for ``SlurmBackend``: the command that runs it at most once per job directory, however often
a submission whose answer was lost is retried, and reading the job id (or the refusal) it answers."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence

from slurm.backends.base import JOB_ID
from slurm.errors import BackendError, SubmitError, SubmitLimitError, is_transient_message
from slurm.inherited_env import SCRUB_SLURM_ENV_SHELL
from slurm.limits import refusal_fix, submit_limit_refusal
from slurm.transports.base import CommandResult

#: A job directory's claim on its one sbatch (see ``SlurmBackend.submit_with_files``), holding its answer.
_CLAIM = ".sbatch"
#: How long a later attempt waits for the claiming attempt's sbatch to answer: 600 steps of 50 ms.
_CLAIM_WAIT_STEPS = 600
_CLAIM_PENDING = "slurm-sdk: an earlier attempt's sbatch has not answered yet"
_CLAIM_PENDING_CODE = 75  # EX_TEMPFAIL
#: What the submission command says on stderr when the record could not be written (the job runs anyway).
_RECORD_FAILED = "slurm-sdk:record-not-written"


def claimed_sbatch(job_dir: str, args: Sequence[str], record: str) -> str:
    """The shell that runs ``args`` (an sbatch command line) once per ``job_dir`` and then ``record``
    (see ``SlurmBackend.submit_with_files``); its answer is read by ``claimed_sbatch_answer``."""
    claim = shlex.quote(posixpath.join(job_dir, _CLAIM))
    recording = (
        f'case "$id" in ""|*[!0-9]*) ;; *) {{ {record}; }} || echo {_RECORD_FAILED} >&2 ;; esac; '
        if record
        else ""
    )
    command = (
        f"claim={claim}; trap '' HUP PIPE; "
        f'if mkdir "$claim" 2>/dev/null; then ( {SCRUB_SLURM_ENV_SHELL}{shlex.join(args)} ) '
        '>"$claim/out" 2>"$claim/err" </dev/null; echo $? >"$claim/code.tmp" && mv "$claim/code.tmp" "$claim/code"; fi; '
        f'n=0; while [ ! -f "$claim/code" ] && [ $n -lt {_CLAIM_WAIT_STEPS} ]; do sleep 0.05; n=$((n + 1)); done; '
        f'[ -f "$claim/code" ] || {{ echo {shlex.quote(_CLAIM_PENDING)} >&2; exit {_CLAIM_PENDING_CODE}; }}; '
        'code=$(cat "$claim/code"); cat "$claim/err" >&2; cat "$claim/out"; '
        'if [ "$code" != 0 ]; then rm -rf "$claim"; exit "$code"; fi; '
        """id=$(sed -n '${s/;.*//;p;}' "$claim/out"); """ + recording + "exit 0"
    )
    return command


def claimed_sbatch_answer(result: CommandResult, args: Sequence[str], script_path: str) -> tuple[str, bool]:
    """The job id the ``claimed_sbatch`` command answered, and whether its record was written."""
    if result.returncode == _CLAIM_PENDING_CODE and _CLAIM_PENDING in result.stderr:
        raise BackendError(
            f"an earlier attempt to submit {script_path} (its answer lost) ran sbatch, which has not "
            "answered yet",
            transient=True,
        )
    return submitted_job_id(args, result), _RECORD_FAILED not in result.stderr


def submitted_job_id(args: Sequence[str], result: CommandResult) -> str:
    """The job id sbatch answered, or ``SubmitError``: it answered that the job was not queued (retried by
    the caller when the reason is transient)."""
    job_id = _parse_sbatch_id(result.stdout) if result.returncode == 0 else None
    if job_id is None:
        detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
        message = f"sbatch failed (exit code {result.returncode}): {shlex.join(args)}\n{detail}"
        limit = submit_limit_refusal(detail)
        if limit is not None:
            raise SubmitLimitError(
                f"{message}\nthe site's submit limit ({limit}) has no room for this job now: submit "
                "when some of your jobs have ended (Cluster.map waits for room by itself)",
                source=limit,
            )
        fix = refusal_fix(detail)
        raise SubmitError(message + (f"\nfix: {fix}" if fix else ""), transient=is_transient_message(detail))
    return job_id


def _parse_sbatch_id(stdout: str) -> str | None:
    """``sbatch --parsable`` prints ``<id>`` or ``<id>;<cluster>`` on its last line."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    job_id = lines[-1].split(";", 1)[0]
    return job_id if JOB_ID.fullmatch(job_id) else None
