"""Extra sbatch options: keys and values checked when the task is defined, written as exactly one
``#SBATCH`` option each (read back the way sbatch reads them, see slurm.directives), never as a command;
conflicting options, bad dependencies and bad ``max_parallel`` refused before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from slurm import Cluster, ResourceError, task
from slurm.backends.local import LocalCommandBackend
from slurm.directives import quote, read_directives, split_arguments
from slurm.rendering import render_script
from slurm.resources import Resources
from tests.fast import tasks
from tests.fast.conftest import REPO

JOB_DIR = "/home/sdk/.slurm-sdk/jobs/20250101-000000-noop-0a1b2c3d"


def noop():
    return None


def render(resources: Resources, job_dir: str = JOB_DIR) -> str:
    return render_script(
        job_name="noop", job_dir=job_dir, resources=resources, array=False, setup_lines=[], python="python3"
    )


def header(script: str) -> list[str]:
    """The lines between the shebang and the first blank line (the SDK's #SBATCH block)."""
    lines = script.split("\n")
    assert lines[0] == "#!/bin/bash"
    return lines[1 : lines.index("")]


# --- how sbatch reads an #SBATCH line (a port of Slurm's _get_argument, pinned on its rules) ---------


@pytest.mark.parametrize(
    ("line", "arguments"),
    [
        (" --time=5", ["--time=5"]),
        (" --comment=a b", ["--comment=a", "b"]),
        (' --comment="a b"', ["--comment=a b"]),
        (" --comment='a \"b\"'", ['--comment=a "b"']),
        (' --comment="a \\" b"', ['--comment=a " b']),
        (" --comment=a\\\\b", ["--comment=a\\b"]),
        (" --time=5 # five minutes", ["--time=5"]),
        (" --comment=a#b", ["--comment=a"]),
        (' --comment="a#b"', ["--comment=a#b"]),
        (" --comment=a\\#b", ["--comment=a#b"]),
        (" --comment=x hetjob", ["--comment=x"]),
    ],
)
def test_sbatch_line_parsing_follows_slurm(line, arguments):
    assert split_arguments(line) == arguments


@pytest.mark.parametrize("line", [' --comment="open', " :"])
def test_lines_sbatch_rejects_are_rejected(line):
    with pytest.raises(ValueError):
        split_arguments(line)


@given(st.text().filter(lambda text: text.isprintable()))
@example("two words")
@example("quote \" and \\ and # and '")
@example("my HetJob and packjob")
def test_any_printable_value_reads_back_unchanged(text):
    line = f"#SBATCH --comment={quote(text)}"
    assert "hetjob" not in line.lower() and "packjob" not in line.lower()
    assert read_directives(f"#!/bin/bash\n{line}\n") == [[f"--comment={text}"]]


# --- the property: rejected at definition, or exactly the options asked for ----------------------------

_SPECIAL = st.sampled_from(
    ['"', "'", "\\", "#", " ", "\n", "\r", "\0", "\t", "hetjob", "=", "-", "_", "$(", "`"]
)
_TEXT = st.lists(st.one_of(st.text(max_size=4), _SPECIAL), max_size=6).map("".join)
_NAMES = st.one_of(
    st.from_regex(r"-{0,2}[a-z][a-z0-9]{0,6}(?:[_-][a-z0-9]{1,6}){0,2}", fullmatch=True),
    st.sampled_from(["comment", "constraint", "mail_type", "qos", "gpus", "mem-per-cpu", "cpus_per_gpu"]),
)
_PRINTABLE = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8").filter(str.isprintable), max_size=4),
        st.sampled_from(['"', "'", "\\", "#", " ", "HetJob", "packjob", "$(", "`"]),
    ),
    max_size=6,
).map("".join)
# Arbitrary strings too, but mostly plausible names and single-line values, so most examples get rendered.
_KEYS = st.one_of(_NAMES, _NAMES, _NAMES, _TEXT)
_VALUES = st.one_of(_TEXT, _PRINTABLE, _PRINTABLE, st.integers(), st.floats(), st.booleans(), st.none())


@given(st.dictionaries(_KEYS, _VALUES, max_size=4))
@example({"x\necho INJECTED\n#": True})
@example({"comment": "x\necho INJECTED"})
@example({"comment": "two words # and a 'quote'"})
@example({"mail_type": "END", "--constraint": "a&b|c"})
def test_sbatch_options_are_refused_or_rendered_as_exactly_those_options(options):
    try:
        defined = task(sbatch=options)(noop)
    except ValueError:
        event("refused")
        return  # refused when the task is defined
    event(f"accepted {len(options)} options")
    expected = [
        f"--{key.lstrip('-').replace('_', '-')}" + ("" if value is True else f"={value}")
        for key, value in sorted(options.items(), key=lambda item: item[0].lstrip("-").replace("_", "-"))
        if value is not None and value is not False
    ]
    script = render(defined.resources)
    lines = header(script)
    assert all(line.startswith("#SBATCH --") for line in lines), lines  # to bash: comments only
    assert not any(word in line.lower() for line in lines for word in ("hetjob", "packjob"))
    read = read_directives(script)
    assert all(len(arguments) == 1 for arguments in read), read
    assert [arguments[0] for arguments in read][3:] == expected  # after job-name, output, error
    assert [line for line in script.split("\n") if line.startswith("#SBATCH")] == lines


def test_the_header_runs_nothing_in_bash(tmp_path):
    resources = Resources(sbatch={"comment": "$(echo INJECTED) `echo INJECTED`; echo INJECTED"})
    script = render(resources)
    path = tmp_path / "header.sh"
    path.write_text("\n".join(["#!/bin/bash", *header(script), ""]))
    result = subprocess.run(["bash", str(path)], capture_output=True, text=True, check=True)
    assert result.stdout == result.stderr == ""


def test_values_with_spaces_are_quoted_for_sbatch():
    script = render(Resources(sbatch={"comment": 'two words and a "quote"', "constraint": "fast"}))
    assert '#SBATCH --comment="two words and a \\"quote\\""' in script
    assert "#SBATCH --constraint=fast" in script


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"x\necho INJECTED\n#": True}, r"'x\\necho INJECTED\\n#'.*not an sbatch long option name"),
        ({"Constraint": "fast"}, "not an sbatch long option name"),
        ({"--": "x"}, "not an sbatch long option name"),
        ({5: "x"}, "not an sbatch long option name"),
        ({"comment": "a\rb"}, r"non-printable character '\\r'"),
        ({"comment": "a\0b"}, r"non-printable character '\\x00'"),
        ({"part": "debug"}, "abbreviation of --partition: write the full option name"),
        ({"mail_type": "END", "mail-type": "FAIL"}, "--mail-type is given twice"),
    ],
)
def test_bad_sbatch_options_are_refused_at_definition(options, message):
    with pytest.raises(ResourceError, match=message):
        task(sbatch=options)
    with pytest.raises(ResourceError, match=message):
        tasks.square.options(sbatch=options)


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (dict(gpus=2, sbatch={"gpus": 2}), r"gpus= and sbatch=\{'gpus': \.\.\.\} both set the job's GPUs"),
        (dict(gpus=1, sbatch={"gpus_per_node": 1}), "GPUs"),
        (dict(mem="4G", sbatch={"mem-per-cpu": "1G"}), r"mem= and sbatch=\{'mem-per-cpu'.*memory"),
        (dict(sbatch={"mem-per-cpu": "1G", "mem_per_gpu": "8G"}), "memory.*keep one of them"),
        (dict(cpus=2, sbatch={"cpus-per-gpu": 4}), "CPUs"),
    ],
)
def test_conflicting_options_are_refused(resources, message):
    with pytest.raises(ResourceError, match=message):
        task(**resources)


def test_an_option_set_to_false_does_not_conflict():
    assert task(mem="4G", sbatch={"mem-per-cpu": None})(noop).resources.mem == "4G"


def test_a_tasks_own_choice_replaces_conflicting_defaults():
    defaults = Resources(mem="4G", cpus=2, sbatch={"qos": "low"})
    merged = Resources(sbatch={"mem-per-cpu": "1G"}).over(defaults)
    assert (merged.mem, merged.cpus, merged.sbatch) == (None, 2, {"qos": "low", "mem-per-cpu": "1G"})
    merged = Resources(mem="8G").over(Resources(sbatch={"mem-per-gpu": "1G", "gpus": 1}))
    assert (merged.mem, merged.sbatch) == ("8G", {"gpus": 1})


def test_paths_with_spaces_reach_the_job(tmp_path):
    backend = LocalCommandBackend(str(tmp_path / "state"))
    packaging = {"type": "none", "pythonpath": [REPO], "python": sys.executable}
    with Cluster(backend, packaging, job_root=str(tmp_path / "my jobs #1")) as cluster:
        job = cluster.submit(tasks.add, 1, 2)
        assert job.result(timeout=60) == 3
    assert '--output="' in job.script


def test_a_job_dir_no_line_can_carry_is_refused():
    with pytest.raises(ValueError, match="cannot be written as an #SBATCH line"):
        render(Resources(), job_dir="/tmp/a\nb")


# --- dependencies and max_parallel fail at once ----------------------------------------------------


@pytest.mark.parametrize("job_id", ["not-a-job-id", "", "12\n", "12_", "_3", "1 2", "١٢"])
def test_after_refuses_what_is_not_a_job_id(job_id):
    with pytest.raises(ValueError, match="not a job id"):
        tasks.add.after(job_id)


def test_after_refuses_other_objects():
    with pytest.raises(TypeError, match="Jobs, MappedJobs or job id strings"):
        tasks.add.after(12)


def test_after_takes_job_ids():
    assert tasks.add.after("12", "12_3").dependencies == ("12", "12_3")


@pytest.mark.parametrize("max_parallel", [-1, 0, True, 1.5, "2"])
def test_map_refuses_a_bad_max_parallel_before_writing_anything(cluster, tmp_path, max_parallel):
    with pytest.raises(ValueError, match="max_parallel must be an int >= 1"):
        cluster.map(tasks.square, [1, 2], max_parallel=max_parallel)
    assert not os.path.exists(tmp_path / "jobs") or not os.listdir(tmp_path / "jobs")
    assert cluster.backend.job_ids() == []
