"""Tasks for tests/integration/test_ci_services.py: a workflow whose child runs code from the tree the
CI job checked out (cloudpickle sends both by reference: the nodes import this module from the code mount)."""

from __future__ import annotations

import socket

from slurm import workflow


def where_am_i() -> tuple[str, str]:
    return __file__, socket.gethostname()


@workflow(time="00:05:00")
def parent(cluster) -> dict:
    child_file, child_host = cluster.submit(where_am_i).result(timeout=240)
    return {"parent": __file__, "child": child_file, "child_host": child_host}
