"""slurmrestd's published port when Docker cannot bind it: the harness kept it for the life of the stack
(``StackParts.keep_rest_port``), and another program may take a free port between the choice and the bind."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from slurm_dev_cluster.errors import StackError
from slurm_dev_cluster.ssh_access import free_port
from slurm_dev_cluster.stack_parts import REST_PORT_SETTING
from slurm_dev_cluster.stack_state import REST_PORT_KEY

if TYPE_CHECKING:
    from slurm_dev_cluster.stack_parts import StackParts


def choose_again(stack: StackParts, error: str, *, last: bool) -> bool:
    """Whether Docker's ``error`` is about slurmrestd's port. A port the harness chose is chosen again
    (True: run ``up`` again); a port from SLURM_SDK_REST_PORT, or the last attempt, is an error naming the
    port and the fix."""
    port = os.environ.get(REST_PORT_SETTING) or stack.read_state().get(REST_PORT_KEY)  # compose: env first
    if not port or not re.search(rf":{port}\b", error):
        return False
    if os.environ.get(REST_PORT_SETTING) or last:
        raise StackError(
            f"slurmrestd's port 127.0.0.1:{port} is taken by another program; free it, or set "
            f"{REST_PORT_SETTING} to a free port (or unset it: the harness then picks one)"
        )
    stack.say(f"slurmrestd's port {port} was taken before Docker bound it: starting on another free port")
    stack.update_state(**{REST_PORT_KEY: free_port()})
    stack._compose_env_file()
    return True
