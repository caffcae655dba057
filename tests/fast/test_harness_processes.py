"""Host commands the kit runs with a time limit (slurm_dev_cluster.processes): a hang ends and says so."""

from __future__ import annotations

import pytest

from slurm_dev_cluster.airgap import AirgapError
from slurm_dev_cluster.processes import run_bounded


def test_a_command_past_its_limit_is_stopped_and_the_error_names_it_the_limit_and_the_fix():
    with pytest.raises(AirgapError) as caught:
        run_bounded(["sleep", "30"], 0.2, AirgapError, "retry when it answers")
    assert str(caught.value) == "`sleep 30` did not end within 0.2 s (stopped); fix: retry when it answers"


def test_a_command_within_its_limit_returns_its_output_and_status(tmp_path):
    done = run_bounded(["sh", "-c", "pwd; echo oops >&2; exit 3"], 30, AirgapError, "-", cwd=tmp_path)
    assert (done.returncode, done.stdout.strip(), done.stderr.strip()) == (3, str(tmp_path), "oops")
