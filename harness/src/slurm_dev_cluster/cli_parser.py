"""The command line of ``slurm-dev-cluster``: its verbs, their arguments and the environment it reads."""

from __future__ import annotations

import argparse

from slurm_dev_cluster import client_config, docker_deadline, fault_verbs

TIMED_OUT = 124  # as coreutils' `timeout`


ENVIRONMENT = """environment:
  SLURM_SDK_SSH_PORT=2222         pin the login node's port on 127.0.0.1 (default: a free port; kept until down)
  SLURM_SDK_PROJECT=name          use another compose project (default: slurmsdk-<dir>-<hash of path>)
  SLURM_SDK_STATE_HOME=dir        where per-project state lives (default: ~/.cache/slurm-sdk-dev)
  SLURM_SDK_COMPOSE_PROFILES=a,b  extra compose profiles
  SLURM_SDK_ACCOUNTING=0          no slurmdbd + MariaDB (default 1: accounting on, sacct works)
  DEBIAN_RELEASE=bookworm         build the nodes from another Debian release (default: trixie)
  SLURM_SDK_IMAGE_REGISTRY=host:port   pull the images published for these inputs instead of building
  SLURM_SDK_PROJECT_DIR=dir       the project served (mounted at /opt/project; default: the project
                                  around the current directory: nearest pyproject.toml, setup.py or .git)
  SLURM_SDK_NODES=2               compute nodes c1..cN (as `up --nodes`)
  SLURM_SDK_GPUS_PER_NODE=2       fake GPUs per node, 0-8 (as `up --gpus-per-node`)
  SLURM_SDK_PARTITIONS=debug,batch  partitions over all nodes, the first the default (as `up --partitions`)
  SLURM_SDK_CLUSTERS=2            a second Slurm cluster `two` on the same slurmdbd (as `up --clusters`)
  SLURM_SDK_FEDERATION=1          with two clusters: one Slurm federation (set before `up`; `down` to change)
"""


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0 (e.g. 600)")
    return seconds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slurm-dev-cluster",
        description=(
            "Manage the Slurm dev cluster of the project around the current directory (a Docker Compose "
            "project named after the project's path). `sudo slurm-dev-cluster setup-host` first on a new host."
        ),
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="action", required=True)
    up = sub.add_parser(
        "up", help="build if needed, start, wait until Slurm and SSH work; reuse a current stack"
    )
    up.add_argument("--nodes", type=int, help="compute nodes c1..cN (default: as running, else 2)")
    up.add_argument(
        "--gpus-per-node", type=int, help="fake GPUs per compute node (default: as running, else 2)"
    )
    up.add_argument(
        "--partitions", help="comma-separated partitions over all nodes, the first the default (debug,batch)"
    )
    up.add_argument(
        "--clusters",
        type=int,
        help="2: a second Slurm cluster `two` (controller slurmctld-two, node d1) on the same slurmdbd, "
        "reached from the login node with -M two (default: as running, else 1)",
    )
    down = sub.add_parser("down", help="stop and remove containers and volumes (images are kept)")
    down.add_argument(
        "--force", action="store_true", help="stop even while pytest processes, jobs or SSH sessions use it"
    )
    fault = sub.add_parser(
        "fault",
        help="inject a fault or switch Slurm defaults (`fault --help` lists them)",
        description=fault_verbs.USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fault.add_argument("fault", choices=sorted(fault_verbs.VERBS), metavar="NAME")
    fault.add_argument("args", nargs="*")
    sub.add_parser(
        "setup-host",
        help="install and start what the cluster needs on this host (Docker engine, compose v2, base image; root)",
    )
    sub.add_parser("smoke", help="up, then sinfo, a shell job on each node and a Python task through the SDK")
    sub.add_parser("status", help="containers, SSH port, whether the stack matches compose.yaml/images")
    logs = sub.add_parser("logs", help="tail of the compose logs and the Slurm daemon log files")
    logs.add_argument("services", nargs="*", help="services or compute nodes (default: all)")
    logs.add_argument("--tail", type=int, default=100, help="lines per service (default 100)")
    ssh = sub.add_parser("ssh", help="ssh to the login node as user sdk (optionally run a command)")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    ex = sub.add_parser("exec", help="run a command in a service container (default: bash)")
    ex.add_argument("--user", default=None, help="user inside the container (default root)")
    ex.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=docker_deadline.EXEC_SECONDS,
        metavar="SECONDS",
        help=f"without a terminal: give up after this long, exit {TIMED_OUT} "
        f"(default {docker_deadline.EXEC_SECONDS:g}; a terminal session has no limit)",
    )
    ex.add_argument("service", help="slurmctld, login, a compute node (c1, c2, ...) or slurmdbd")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser(
        "wheelhouse",
        help="download pyproject.toml's dependencies as wheels for the nodes' Python "
        "into images/wheelhouse/<release>/ (what `up` does before a build; plain "
        "`docker compose up --build` uses it as last written)",
    )
    config = sub.add_parser(
        "config",
        help="write the SDK config for the running stack (Cluster.from_env); prints `export SLURM_SDK_CONFIG=...`",
    )
    config.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help=f"where to write it (default: <state dir>/{client_config.SDK_CONFIG_NAME})",
    )
    config.add_argument(
        "--backend",
        choices=("ssh", "rest"),
        default="ssh",
        help="ssh (default): Slurm's commands over SSH; rest: slurmrestd (profile `rest`) with a fresh "
        "token, files over SSH",
    )
    sshc = sub.add_parser(
        "ssh-config",
        help="print an OpenSSH Host block for the running stack (`... >> ~/.ssh/config`, then `ssh slurm-dev`)",
    )
    sshc.add_argument(
        "--name", default=client_config.DEFAULT_HOST_ALIAS, help="host alias (default: slurm-dev)"
    )
    push = sub.add_parser(
        "push",
        help="build this checkout's images if needed and push them to a registry, tagged "
        "<release>-<inputs hash> and <release>-<version> (pull them with SLURM_SDK_IMAGE_REGISTRY=...)",
    )
    push.add_argument(
        "--registry", required=True, metavar="HOST:PORT", help="e.g. 127.0.0.1:5000 or ghcr.io/OWNER"
    )
    push.add_argument(
        "--version", default=None, help="release name for the second tag (default: the SDK's version)"
    )
    gap = sub.add_parser(
        "airgap",
        help="cut the stack's containers off from everything outside the stack "
        "(status exits 0 when blocked, 3 when open)",
    )
    gap.add_argument("state", choices=("on", "off", "status"))
    return p
