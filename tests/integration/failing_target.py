"""Run only by test_failure_report.py in a nested pytest: an integration test that fails on purpose."""

import pytest


@pytest.mark.integration
def test_fails_on_purpose(slurm_container):
    assert slurm_container.port == -1, "deliberate failure to get the cluster logs attached"
