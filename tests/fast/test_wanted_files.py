"""The far side's answer to "which of these exist" (slurm.transports.wanted_files), run here with the real
sh, find and awk: exactly the wanted files that exist, whatever their names, from a short description."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm.transports import wanted_files

#: Names as a wait asks for them, and the odd ones the description must carry literally or exactly.
NAMES = st.one_of(
    st.integers(0, 5000).map(lambda i: f"result-{i}.pkl"),
    st.sampled_from(
        ["result-007.pkl", "result-0.pkl", f"result-{2**31}.pkl", f"result-{2**40}.pkl", "result-x.pkl"]
    ),
    st.sampled_from(["rank-3", "a b [c]*?.pkl", "42", "result-", "slurm-7_1.out"]),
)


def answer(paths: list[str]) -> set[str]:
    run = subprocess.run(
        ["sh", "-c", wanted_files.command(paths)],
        input=wanted_files.describe(paths),
        capture_output=True,
        text=True,
        check=True,
    )
    return set(run.stdout.splitlines())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    wanted=st.lists(st.tuples(st.sampled_from(["job a", "job-b"]), NAMES), min_size=1, max_size=300),
    present=st.lists(st.tuples(st.sampled_from(["job a", "job-b"]), NAMES), max_size=300),
)
def test_the_answer_is_exactly_the_wanted_files_that_exist(memory_tmp_path, wanted, present):
    root = Path(tempfile.mkdtemp(prefix="far side ", dir=memory_tmp_path))  # a fresh one for each example
    for directory, name in present:
        (root / directory).mkdir(exist_ok=True)
        (root / directory / name).write_bytes(b"")
    paths = [str(root / directory / name) for directory, name in wanted]
    assert answer(paths) == {path for path in paths if Path(path).exists()}


def test_a_long_map_is_described_by_its_runs():
    missing = [f"/jobs/m/result-{i}.pkl" for i in [*range(0, 4000), *range(4001, 10_000)]]
    assert wanted_files.describe(missing).splitlines() == [
        "/jobs/m/result-\t0\t3999\t.pkl",
        "/jobs/m/result-\t4001\t9999\t.pkl",
    ]
