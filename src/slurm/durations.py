"""Durations: the one home of the SDK's duration parsing; everything that reads one calls these.

- ``parse_time_seconds``: a Slurm time limit (``@task(time=...)``, ``#SBATCH --time``): "MM", "MM:SS",
  "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS", or an int number of minutes, as sbatch takes them.
- ``parse_duration``: an age or a wait (``Cluster.cleanup(older_than=...)``, the CLI's ``--older-than`` and
  ``--timeout``): seconds, or a number with a unit, "90s", "30m", "12h", "7d", "2w".
"""

from __future__ import annotations

import re

# Not from slurm.errors (which re-exports it): that module holds every error of the SDK, and the local
# backend's launcher, which starts for every local job, needs only this one.
from slurm.node.errors import ResourceError

TYPE_CHECKING = False  # not from typing: the local backend's launcher imports this for every local job
if TYPE_CHECKING:
    from datetime import timedelta

# Slurm's --time formats. The leading field is unbounded; later fields are checked against 24/60.
_TIME_FORMATS = {
    "MM": re.compile(r"^(?P<m>\d+)$"),
    "MM:SS": re.compile(r"^(?P<m>\d+):(?P<s>\d{1,2})$"),
    "HH:MM:SS": re.compile(r"^(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2})$"),
    "D-HH": re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2})$"),
    "D-HH:MM": re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2}):(?P<m>\d{1,2})$"),
    "D-HH:MM:SS": re.compile(r"^(?P<d>\d+)-(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})$"),
}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_seconds(value: str | int) -> int:
    """Seconds in a Slurm time limit (int = minutes). Raises ``ResourceError`` naming the accepted formats."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ResourceError(f"time must be a positive number of minutes, got {value}")
        return value * 60
    text = str(value).strip()
    for match in (pattern.match(text) for pattern in _TIME_FORMATS.values()):
        if match:
            return _seconds_from(match.groupdict(), text)
    raise ResourceError(
        f"malformed time {value!r}: use one of {', '.join(_TIME_FORMATS)} "
        "(e.g. '30', '01:30:00', '2-12:00:00')"
    )


def _seconds_from(parts: dict[str, str | None], text: str) -> int:
    leading = next(name for name in "dhms" if parts.get(name) is not None)
    for name, (label, limit) in {"h": ("hours", 24), "m": ("minutes", 60), "s": ("seconds", 60)}.items():
        value = parts.get(name)
        if value is not None and name != leading and int(value) >= limit:
            raise ResourceError(f"malformed time {text!r}: {label} must be below {limit}")
    d, h, m, s = (int(parts.get(name) or 0) for name in "dhms")
    total = ((d * 24 + h) * 60 + m) * 60 + s
    if total < 1:
        raise ResourceError(f"time {text!r} must be longer than zero")
    return total


def parse_duration(value: timedelta | float | int | str, *, what: str = "duration") -> timedelta:
    """An age or a wait: a ``timedelta``, seconds, or text like "90s", "30m", "12h", "7d", "2w" (0 or more).
    ``ValueError`` names ``what`` (the option being parsed) and the accepted forms."""
    from datetime import timedelta  # on use: Resources (and so Cluster()) import this module

    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        age = timedelta(seconds=value)
    else:
        match = _AGE.match(str(value))
        if not match:
            raise ValueError(
                f"{what}={value!r} is not an age: use seconds or text like '90s', '30m', '12h', '7d', '2w'"
            )
        age = timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if age < timedelta(0):
        raise ValueError(f"{what}={value!r} is negative: give an age of 0 or more")
    return age
