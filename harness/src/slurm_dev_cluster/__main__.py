"""``slurm-dev-cluster up | down | status | logs | ssh | exec | smoke | fault | airgap | wheelhouse | config |
ssh-config | push``: the dev cluster from the command line."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from python_on_whales.exceptions import DockerException

from slurm_dev_cluster import (
    activity,
    airgap,
    client_config,
    docker_deadline,
    fault_verbs,
    images,
    kit,
    wheelhouse,
)
from slurm_dev_cluster import ssh as harness_ssh
from slurm_dev_cluster.docker_deadline import DockerTimeout
from slurm_dev_cluster.faults import Faults
from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.preflight import PreflightError
from slurm_dev_cluster.stack import Stack, StackError
from slurm_dev_cluster.topology import Topology, TopologyError, node_number

TIMED_OUT = 124  # as coreutils' `timeout`


def cmd_up(stack: Stack, args: argparse.Namespace) -> int:
    result = stack.ensure_up_shared(Coordinator(stack.state_dir), session="cli")
    c = result.connection
    print(f"stack {c.project} {result.action}: ssh -p {c.port} -i {c.key_path} {c.user}@{c.host}")
    print("  (or: slurm-dev-cluster ssh)  stop it with: slurm-dev-cluster down")
    return 0


def cmd_down(stack: Stack, args: argparse.Namespace) -> int:
    coordinator = Coordinator(stack.state_dir)
    with coordinator.exclusive(say=stack.say):
        if not args.force:
            reasons = _in_use(stack, coordinator)
            if reasons:
                print(
                    f"not stopping {stack.project}: "
                    + "; ".join(reasons)
                    + ". Wait for them, or pass --force.",
                    file=sys.stderr,
                )
                return 1
        stack.down(
            session="cli", by="`slurm-dev-cluster down --force`" if args.force else "`slurm-dev-cluster down`"
        )
    print(f"stack {stack.project} stopped (containers and volumes removed; images kept for fast restarts)")
    return 0


def _in_use(stack: Stack, coordinator: Coordinator) -> list[str]:
    """Why the stack must not be stopped now: test sessions, else jobs and SSH connections from outside
    pytest (while a test session is registered, the jobs and connections are its own)."""
    users = coordinator.live_users()
    if users:
        return [f"pytest process(es) {', '.join(f'{u.pid} ({u.role})' for u in users)} still use it"]
    found = activity.outside_activity(stack)
    if found.unknown:
        stack.say(f"cannot tell whether jobs run: {found.unknown}")
    return found.findings()


def cmd_status(stack: Stack, args: argparse.Namespace) -> int:
    status = stack.status()
    print(f"project:   {status.project}")
    print(f"state dir: {status.state_dir}")
    if not status.services:
        print("stack:     not running (start it with: slurm-dev-cluster up)")
        return 3
    for service, state in sorted(status.services.items()):
        print(f"  {service:<10} {state}")
    if status.port:
        print(f"ssh:       127.0.0.1:{status.port} as sdk (slurm-dev-cluster ssh)")
    built_from = {
        True: "current compose.yaml/images",
        False: "OLD inputs: `up` will rebuild it",
        None: "unknown inputs: `up` will rebuild it",
    }[status.inputs_current]
    print(f"built from: {built_from}")
    users = Coordinator(stack.state_dir).live_users()
    if users:
        print("used by:   " + ", ".join(f"pid {u.pid} ({u.role})" for u in users))
    if status.orphaned_by:
        print(
            f"orphaned:  the test session that started it ({status.orphaned_by}) died; the next session "
            "adopts it and stops it at its end (`slurm-dev-cluster down` stops it now)"
        )
    active = Faults(stack).active()
    if active:
        print("faults:    " + "; ".join(active) + " (undo: slurm-dev-cluster fault reset)")
    return 0 if status.up else 3


def cmd_logs(stack: Stack, args: argparse.Namespace) -> int:
    print(stack.logs_tail(args.tail, args.services), end="")
    if not args.services or any(s == "slurmctld" or node_number(s) for s in args.services):
        print(stack.daemon_logs_tail(args.tail))
    return 0


def cmd_ssh(stack: Stack, args: argparse.Namespace) -> int:
    c = stack.connect_info()
    binary = shutil.which("ssh")
    if binary:
        argv = [
            binary,
            "-p",
            str(c.port),
            "-i",
            str(c.key_path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={stack.known_hosts_path}",
            "-o",
            "StrictHostKeyChecking=yes",
            f"{c.user}@{c.host}",
            *args.command,
        ]
        os.execv(binary, argv)  # hand the terminal over to ssh
    if not args.command:
        print(
            "no `ssh` client on this host: install openssh-client, or pass a command to run", file=sys.stderr
        )
        return 2
    client = harness_ssh.connect(c.host, c.port, c.user, c.key_path, c.host_key)
    try:
        code, out, err = harness_ssh.run(client, " ".join(args.command), timeout=None)
    finally:
        client.close()
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


def cmd_exec(stack: Stack, args: argparse.Namespace) -> int:
    services = list(dict.fromkeys([*stack.expected_services, *stack.container_names()]))
    if args.service not in services:
        print(parser().format_usage().rstrip(), file=sys.stderr)
        print(
            f"error: no service {args.service!r} in this stack; choose one of {', '.join(services)}",
            file=sys.stderr,
        )
        return 2
    command = args.command or ["bash"]
    if sys.stdin.isatty():
        # Unbounded: a terminal session lasts as long as the person at it wants (and they can Ctrl-C a
        # wedged daemon); under `timeout` the client would also lose the terminal (its own process group).
        stack.docker.compose.execute(args.service, command, tty=True, user=args.user)
        return 0
    try:
        output = stack.exec(args.service, command, user=args.user, seconds=args.timeout)
    except DockerTimeout as exc:
        print(
            f"error: `{shlex.join(command)}` in {args.service} did not end within {args.timeout:g} s: it "
            f"needs longer (pass --timeout SECONDS), or {exc}",
            file=sys.stderr,
        )
        return TIMED_OUT
    if output:
        print(output)
    return 0


def cmd_fault(stack: Stack, args: argparse.Namespace) -> int:
    faults = Faults(stack)
    try:
        message = fault_verbs.run(faults, args.fault, args.args)
    except ValueError as exc:  # a bad name or argument: the message lists the valid ones
        print(f"error: {exc}\n\n{fault_verbs.USAGE}", file=sys.stderr)
        return 2
    print(message)
    active = faults.active()
    print("active faults: " + ("; ".join(active) if active else "none"))
    return 0


def cmd_airgap(stack: Stack, args: argparse.Namespace) -> int:
    if args.state == "on":
        subnets = airgap.block_egress(stack)
        print(
            f"egress of {stack.project} blocked ({', '.join(map(str, subnets))} reaches only itself); "
            "undo with: slurm-dev-cluster airgap off (or harness down)"
        )
    elif args.state == "off":
        removed = airgap.restore_egress(stack)
        print(f"egress of {stack.project} open ({removed} rule(s) removed)")
    blocked = airgap.egress_is_blocked(stack)
    if args.state == "status":
        print(f"egress of {stack.project}: {'BLOCKED (air gap on)' if blocked else 'open'}")
    return 0 if blocked == (args.state != "off") else 3


def cmd_wheelhouse(stack: Stack, args: argparse.Namespace) -> int:
    stack.refresh_wheelhouse(force=True, strict=True)
    print(f"wheelhouse for the {stack.release} image: {wheelhouse.directory(stack.repo_root, stack.release)}")
    return 0


def cmd_config(stack: Stack, args: argparse.Namespace) -> int:
    path = client_config.write_sdk_config(stack, kit.resolve(), Path(args.output) if args.output else None)
    # stdout is only the export line, so `eval "$(slurm-dev-cluster config)"` works; the rest is stderr.
    print(f"export SLURM_SDK_CONFIG={shlex.quote(str(path))}")
    print(
        f"wrote the SDK config for {stack.project} to {path}; with SLURM_SDK_CONFIG set, "
        "Cluster.from_env() (and `slurm-sdk --config`) use it. Re-run after the stack is recreated.",
        file=sys.stderr,
    )
    return 0


def cmd_ssh_config(stack: Stack, args: argparse.Namespace) -> int:
    connection = client_config.running_connection(stack)
    try:
        block = client_config.ssh_config(connection, stack.known_hosts_path, args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(block, end="")
    return 0


def cmd_push(stack: Stack, args: argparse.Namespace) -> int:
    for pushed in images.push(stack, args.registry, args.version):
        print(f"{pushed.local} -> " + ", ".join(pushed.remote))
    return 0


def cmd_smoke(stack: Stack, args: argparse.Namespace) -> int:
    from slurm_dev_cluster import smoke

    return smoke.run(stack)


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


COMMANDS = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "logs": cmd_logs,
    "ssh": cmd_ssh,
    "exec": cmd_exec,
    "smoke": cmd_smoke,
    "fault": cmd_fault,
    "airgap": cmd_airgap,
    "wheelhouse": cmd_wheelhouse,
    "config": cmd_config,
    "ssh-config": cmd_ssh_config,
    "push": cmd_push,
}


def _topology(args: argparse.Namespace, stack: Stack) -> Topology | None:
    """The shape `up` was asked for (flags over the environment over the running stack's); None: as is."""
    flags = {k: getattr(args, k, None) for k in ("nodes", "gpus_per_node", "partitions")}
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
