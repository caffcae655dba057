"""Dev-cluster self-test probe (test code: the wheel does not ship it).

The integration test ``test_immediate_reflection`` rewrites ``PROBE`` on the host and checks that the
next job, and a workflow's child task, report the new value with no rebuild and no restart. Nothing
else imports this module, so rewriting it cannot disturb other tests.
"""

PROBE = "original"


def report() -> dict[str, str]:
    """What a job sees: this module's PROBE and where the ``slurm`` package was imported from."""
    import slurm

    return {"probe": PROBE, "slurm_file": slurm.__file__}
