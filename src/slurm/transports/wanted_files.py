"""Which of many wanted files exist on the far side, for a price that follows the answer.

A wait asks, on every check, which of its unfinished jobs' result files exist. Listing the directories
(``result-*``) would send back every result already there, also the ones fetched long ago: a check of
a 10,000-task map costs then what the finished tasks weigh, over and over. Here the far side gets the
wanted names compactly, as numbered runs (``.../result-`` 0..9999 ``.pkl``: one line however many tasks
are still missing, more only where they finish out of order), lists the directories with ``find`` (no
sort) and keeps, in awk, only the wanted names: what comes back is the new results alone.

One line of the description per run, tab-separated: ``<prefix>\\t<first>\\t<last>\\t<suffix>``; a name with
no number at its end is a line of its own. Paths never hold tabs or newlines (the SDK makes them).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence

#: A name's last run of digits: prefix, number (no leading zero, so it prints back the same), suffix.
_NUMBERED = re.compile(r"^(.*?)(0|[1-9][0-9]*)([^0-9]*)$")
#: Largest number awk prints back exactly with %d everywhere (mawk 1.3.4 falls back to %g above it).
_LARGEST = 2**31 - 1
#: Expands the description on stdin into a set, then prints the lines of $SLURM_SDK_LISTING's output in it.
_FILTER = r"""
BEGIN { FS = "\t" }
NF == 4 { for (i = $2 + 0; i <= $3 + 0; i++) wanted[$1 sprintf("%d", i) $4] = 1; next }
{ wanted[$0] = 1 }
END {
  listing = ENVIRON["SLURM_SDK_LISTING"]
  while ((listing | getline name) > 0) if (name in wanted) print name
  close(listing)
}
"""


def describe(paths: Iterable[str]) -> str:
    """The description of ``paths`` the far side expands (see the module docstring)."""
    numbers: dict[tuple[str, str], list[int]] = {}
    lines = []
    for path in paths:
        found = _NUMBERED.match(path)
        if found and int(found[2]) <= _LARGEST:
            numbers.setdefault((found[1], found[3]), []).append(int(found[2]))
        else:
            lines.append(path)
    for (prefix, suffix), group in numbers.items():
        lines += [f"{prefix}\t{first}\t{last}\t{suffix}" for first, last in _runs(sorted(set(group)))]
    return "".join(f"{line}\n" for line in lines)


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted distinct numbers -> (first, last) of each run of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def command(paths: Sequence[str]) -> str:
    """The shell command that prints those of ``paths`` (absolute) that exist, one a line; the description
    (``describe(paths)``) goes on its stdin. It fails only when find or awk cannot run: a directory that
    does not exist holds none of them."""
    directories = sorted({posixpath.dirname(path) for path in paths})
    # Only names starting like the wanted ones ("result-"), not the job's logs: less for awk to look at.
    start = posixpath.commonprefix([posixpath.basename(path) for path in paths])
    pattern = re.sub(r"([][*?\\])", r"\\\1", start) + "*"
    listing = (
        f"find {' '.join(shlex.quote(d) for d in directories)} -mindepth 1 -maxdepth 1 "
        f"-name {shlex.quote(pattern)} 2>/dev/null"
    )
    return f"SLURM_SDK_LISTING={shlex.quote(listing)} awk {shlex.quote(_FILTER)}"
