"""The SSH transport's result check at scale, against the fast tier's throwaway sshd: a map of 3,000 tasks
checked twice, hypothesis choosing what had finished. Each example writes and lists thousands of files over
a real SSH session, which is why it lives in the slow tier beside the other tests of the transport
(tests/fast/test_ssh_transport.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fast.test_ssh_transport import SSHD, _recorded_exchanges

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(SSHD), reason="needs OpenSSH server (apt-get install -y openssh-server)"
    ),
]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    done_before=st.sets(st.integers(0, 2999), max_size=2500),
    done_since=st.sets(st.integers(0, 2999), max_size=200),
)
def test_a_second_check_costs_what_finished_since_not_what_is_there(
    transport, tmp_path_factory, monkeypatch, done_before, done_since
):
    """A map of 3,000 tasks: the first check finds what had finished; the second asks (as a wait does)
    only for the rest, and its answer is exactly what finished in between: the results already there
    and fetched are neither listed nor sent back, however many."""
    directory = tmp_path_factory.mktemp("map")
    paths = [str(directory / f"result-{i}.pkl") for i in range(3000)]
    (directory / "slurm-7_1.out").write_text("a log, never asked for")
    for i in done_before:
        Path(paths[i]).write_bytes(b"x")
    exchanges = _recorded_exchanges(transport, monkeypatch)
    assert transport.read_existing(paths) == {paths[i]: b"x" for i in done_before}  # a wait's check
    missing = [path for i, path in enumerate(paths) if i not in done_before]
    for i in done_since - done_before:
        Path(paths[i]).write_bytes(b"x")
    assert transport.read_existing(missing) == {paths[i]: b"x" for i in done_since - done_before}
    second = exchanges[-1]
    assert len(exchanges) == 2  # one command per check
    assert len(second.answer) == len(done_since - done_before)  # the new ones, nothing else
    # The question names the missing tasks as runs of indices: one line per run, not one per task.
    runs = sum(1 for i in range(3000) if i not in done_before and (i == 0 or i - 1 in done_before))
    assert len(second.sent.splitlines()) == runs
