"""The two Slurm defaults a test runs under when it is parametrized over them (``mode``): ``dev`` and
``production``. The production case carries ``@pytest.mark.slurm_defaults("production")``, so the kit
switches the cluster's defaults before the test (and back after it), and puts the test in the group that
runs with production defaults on a stack of its own (``slurm_dev_cluster.plugin_harness.alone_group``)."""

from __future__ import annotations

import pytest

MODES = [
    pytest.param("dev", id="dev"),
    pytest.param("production", id="production", marks=pytest.mark.slurm_defaults("production")),
]
