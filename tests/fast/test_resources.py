"""Bad resources fail when the task is defined, with a message naming the accepted forms."""

from __future__ import annotations

import pytest

from slurm import ResourceError, task
from slurm.durations import parse_time_seconds
from slurm.resources import Resources


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),
        ("30:15", 1815),
        ("01:02:03", 3723),
        ("2-12", 216000),
        ("1-00:30", 88200),
        ("1-00:00:01", 86401),
        (90, 5400),
    ],
)
def test_slurm_time_formats(text, seconds):
    assert parse_time_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["", "1h", "1:2:3:4", "00:61:00", "1-25", "0", "-5", "1-2-3", 0, "00:00:60"])
def test_malformed_time_rejected(bad):
    with pytest.raises(ResourceError, match="time"):
        Resources(time=bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cpus", -1, "cpus must be an int >= 1"),
        ("cpus", 0, "cpus must be an int >= 1"),
        ("cpus", 1.5, "cpus must be an int >= 1"),
        ("cpus", True, "cpus must be an int >= 1"),
        ("mem", "4GB", "malformed mem"),
        ("mem", "-1G", "malformed mem"),
        ("mem", 0, "mem must be a positive"),
        ("gpus", -1, "gpus must be >= 0"),
        ("gpus", "two", "malformed gpus"),
        ("partition", "de bug", "partition must be a non-empty string without whitespace"),
        ("sbatch", {"time": "1"}, "use the time= argument"),
        ("sbatch", {"--output": "x"}, "the SDK sets it itself"),
        ("sbatch", {"comment": "two\nlines"}, "single-line"),
    ],
)
def test_bad_resources_rejected_at_decoration(field, value, message):
    with pytest.raises(ResourceError, match=message):
        task(**{field: value})


def test_valid_resources_are_normalised():
    resources = Resources(mem="4g", gpus=0, sbatch={"--mail_type": "END"})
    assert (resources.mem, resources.gpus, resources.sbatch) == ("4G", None, {"mail-type": "END"})


def test_unknown_resource_listed():
    with pytest.raises(ResourceError, match=r"unknown resource memory.*valid: time, cpus, mem"):
        Resources.from_dict({"memory": "1G"})


def test_options_validates_too():
    @task
    def noop():
        pass

    with pytest.raises(ResourceError, match="cpus"):
        noop.options(cpus=-2)
    assert noop.options(cpus=2).resources.cpus == 2 and noop.resources.cpus is None
