"""``#SBATCH`` lines: written so that sbatch reads back exactly the option the SDK meant, and read back.

sbatch reads a script's leading comment block itself, not through a shell (Slurm's ``src/sbatch/opt.c``,
``_opt_batch_script`` and ``_get_argument``):

- lines end at ``\\n`` only; the ``#SBATCH`` lines before the first command are options;
- in such a line, unquoted whitespace separates arguments; ``"..."`` and ``'...'`` group characters
  (whitespace, ``#``) into one argument; a backslash makes the next character literal, inside quotes too;
  an unquoted, unescaped ``#`` starts a comment, the rest of the line is dropped;
- a line containing ``hetjob`` or ``packjob`` (any case, anywhere) starts the next component of a
  heterogeneous job.

So a value is written bare when it is plain, else in double quotes with ``\\`` before ``"``, ``\\`` and
the ``j`` of any ``hetjob``/``packjob``; values with control characters (newline, CR, NUL, tab, ...) or
other non-printable characters cannot be written at all. To bash, every ``#SBATCH`` line is a comment.
"""

from __future__ import annotations

import re

PREFIX = "#SBATCH"
#: An sbatch long option name as the SDK accepts it (after ``_`` -> ``-``): lowercase words joined by dashes.
OPTION_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_PLAIN = re.compile(r"[A-Za-z0-9_.,:/=+@%^~!?*\[\]{}()<>|&;$`-]*")
_HETJOB = re.compile(r"(het|pack)(job)", re.IGNORECASE)
_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale


def value_problem(text: str) -> str | None:
    """Why ``text`` cannot be an sbatch option's value on an ``#SBATCH`` line, or None when it can."""
    bad = next((c for c in text if not c.isprintable() and c != " "), None)
    if bad is None:
        return None
    return f"it contains the non-printable character {bad!r} (#SBATCH options are single-line text)"


def quote(text: str) -> str:
    """``text`` as sbatch's ``#SBATCH`` parser reads it back unchanged, as one argument."""
    if _PLAIN.fullmatch(text) and not _HETJOB.search(text):
        return text
    escaped = re.sub(r'(["\\])', r"\\\1", text)
    return '"' + _HETJOB.sub(r"\1\\\2", escaped) + '"'


def directive(option: str, value: object) -> str:
    """The ``#SBATCH`` line of ``--option`` (``value`` True: a flag). Raises ValueError for what no line can carry."""
    if not OPTION_NAME.fullmatch(option) or _HETJOB.search(option):
        raise ValueError(f"{option!r} is not an sbatch long option name")
    if value is True:
        return f"{PREFIX} --{option}"
    text = str(value)
    problem = value_problem(text)
    if problem:
        raise ValueError(f"--{option}={text!r} cannot be written as an #SBATCH line: {problem}")
    return f"{PREFIX} --{option}={quote(text)}"


def split_arguments(text: str) -> list[str]:
    """The arguments sbatch reads from the rest of an ``#SBATCH`` line (a port of ``_get_argument``).

    Like sbatch, the first ``hetjob``/``packjob`` of the line is blanked out. Raises ValueError where
    sbatch stops with a fatal error (an unmatched quote, an argument starting with ``:``)."""
    match = _HETJOB.search(text)
    if match:
        text = text[: match.start()] + " " * len(match.group()) + text[match.end() :]
    arguments: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i < n and text[i] == ":":
            raise ValueError(f"unexpected ':' in {text!r}")
        if i >= n:
            return arguments
        argument: list[str] = []
        quote_char, escaped, comment = "", False, False
        while i < n and (quote_char or text[i] not in _SPACE) and text[i] not in "\n\0":
            char = text[i]
            i += 1
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
                continue
            elif quote_char:
                if char == quote_char:
                    quote_char = ""
                    continue
            elif char in "\"'":
                quote_char = char
                continue
            elif char == "#":
                comment = True
                break
            argument.append(char)
        if quote_char:
            raise ValueError(f"unmatched {quote_char} in {text!r}")
        if not argument:  # sbatch's _get_argument returns NULL: the rest of the line is not read
            return arguments
        arguments.append("".join(argument))
        if comment:
            return arguments


def read_directives(script: str) -> list[list[str]]:
    """Each ``#SBATCH`` line's arguments, as sbatch reads them: up to the first line that is a command."""
    lines: list[list[str]] = []
    for line in script.split("\n"):
        if line.startswith(PREFIX):
            lines.append(split_arguments(line[len(PREFIX) :]))
        elif line.lstrip(_SPACE) and not line.lstrip(_SPACE).startswith("#"):
            break
    return lines
