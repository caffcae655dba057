"""``slurm-dev-cluster up | down | status | logs | ssh | exec | smoke | fault | airgap | wheelhouse | config |
ssh-config | push``: the dev cluster from the command line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import airgap, kit
from slurm_dev_cluster.cli_parser import parser
from slurm_dev_cluster.cli_verbs import COMMANDS
from slurm_dev_cluster.preflight import PreflightError
from slurm_dev_cluster.stack import Stack, StackError
from slurm_dev_cluster.topology import Topology, TopologyError


def _topology(args: argparse.Namespace, stack: Stack) -> Topology | None:
    """The shape `up` was asked for (flags over the environment over the running stack's); None: as is."""
    flags = {k: getattr(args, k, None) for k in ("nodes", "gpus_per_node", "partitions", "clusters")}
    if all(value is None for value in flags.values()):
        return None
    return Topology.resolve(os.environ, stack.read_state().get("topology"), **flags)


#: Verbs that start the stack (``ensure_up``), which runs the preflight checks itself when a Docker call
#: fails, so that a warm start does not pay for them (two Docker CLI processes) when nothing does.
CHECKS_ON_FAILURE = {"up", "smoke"}


def setup_host() -> int:
    """Run the kit's bootstrap-host.sh (Debian/Ubuntu): everything the cluster needs on a new host."""
    script = Path(__file__).with_name("bootstrap-host.sh")
    return subprocess.run(["bash", str(script)], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.action == "setup-host":
        return setup_host()  # before any Docker call: there may be no Docker yet
    try:
        settings = kit.resolve()  # the project around the current directory, or $SLURM_SDK_PROJECT_DIR
        stack = Stack.for_kit(settings)
        wanted = _topology(args, stack)
        if wanted is not None and wanted != stack.topology:
            stack = Stack.for_kit(settings, topology=wanted)
    except (kit.KitError, TopologyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action not in CHECKS_ON_FAILURE and (args.action != "down" or not args.force):
            stack.preflight()
        return COMMANDS[args.action](stack, args)
    except (PreflightError, StackError, TimeoutError, airgap.AirgapError, kit.KitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DockerException as exc:
        detail = (exc.stderr or "").strip() or str(exc)
        print(f"error: docker failed: {detail}", file=sys.stderr)
        return exc.return_code or 1


if __name__ == "__main__":
    sys.exit(main())
