"""A job's payload carried inside its script (base64), for the REST backend's ``inline_payload_limit``.

slurmrestd takes the script in the submit request itself, so a payload written into the script reaches
the node with the request: the transport uploads no payload file. The node decodes it into the job
directory before the runner reads it, once per job (an array's tasks and a requeued job find it there).

Size: slurmctld refuses a batch script over ``max_script_size`` (SchedulerParameters, 4 MiB by default),
and base64 makes 4 bytes of every 3, so a limit is checked before anything is written or submitted.
"""

from __future__ import annotations

import base64
import shlex

from slurm.errors import ConfigError, SubmitError

#: The largest ``inline_payload_limit``: 2 MiB of payload is about 2.8 MB of base64 lines, which leaves the
#: rest of the script room under slurmctld's default 4 MiB ``max_script_size``.
INLINE_PAYLOAD_CEILING = 2 * 1024 * 1024
#: Ends the here-document holding the base64 text; base64's alphabet has no "_", so no line of it can
#: end the document early.
_END = "SLURM_SDK_PAYLOAD"


def checked_limit(limit: int | None) -> int | None:
    """``limit`` if it is a usable byte count (or None: payloads go through the transport)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= INLINE_PAYLOAD_CEILING:
        raise ConfigError(
            f"inline_payload_limit must be a number of bytes from 1 to {INLINE_PAYLOAD_CEILING:,}, not "
            f"{limit!r} (slurmctld refuses scripts over 4 MiB by default, and base64 adds a third); fix: "
            "a smaller limit, or None to upload payloads through the transport",
            key="inline_payload_limit",
        )
    return limit


def with_inline_payload(script: str, payload: bytes, payload_path: str, limit: int) -> str:
    """``script`` with lines that write ``payload`` to ``payload_path`` on the node (private, whole or
    not at all) before anything reads it. A payload over ``limit`` bytes is a ``SubmitError`` naming its
    size, the limit and the fix; nothing is submitted."""
    if len(payload) > limit:
        raise SubmitError(
            f"the task's payload (the function and its arguments, pickled) is {len(payload):,} bytes, over "
            f"the REST backend's inline_payload_limit of {limit:,} bytes, so it cannot travel in the job "
            "script; fix: pass large data as a file the task reads rather than as an argument, raise "
            f"inline_payload_limit (at most {INLINE_PAYLOAD_CEILING:,}), or set it to None to upload "
            "payloads through the transport"
        )
    target = shlex.quote(payload_path)
    partial = f'{target}".tmp-${{SLURM_JOB_ID:-$$}}"'  # one per job: an array's tasks may all get here
    block = [
        "# The payload came inside this script (the REST backend's inline_payload_limit), not as a file.",
        f"if [ ! -s {target} ]; then",
        f"  base64 -d > {partial} <<'{_END}'",
        base64.encodebytes(payload).decode() + _END,
        f"  mv -f {partial} {target}",
        "fi",
    ]
    lines = script.split("\n")
    # After `umask 077` (the file is private) and `set -e` (a failed decode ends the job, saying why).
    umask = next((i for i, line in enumerate(lines) if line.startswith("umask ")), None)
    if umask is None:
        raise ValueError("the job script has no umask line to put the inline payload after")
    return "\n".join([*lines[: umask + 1], *block, *lines[umask + 1 :]])
