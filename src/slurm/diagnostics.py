"""A task for checking a setup end to end: where did my job run, with which Python and which SDK?"""

from __future__ import annotations

import os
import platform
import sys

from slurm.node.name import node_name
from slurm.task import task


@task(time="00:01:00", cpus=1)
def node_info() -> dict[str, str]:
    import slurm

    return {
        "host": node_name(),  # Slurm's node name (a host name may be a container id)
        "job_id": os.environ.get("SLURM_JOB_ID", ""),
        "python": platform.python_version(),
        "sdk": os.path.dirname(slurm.__file__ or ""),
        "executable": sys.executable,
    }
