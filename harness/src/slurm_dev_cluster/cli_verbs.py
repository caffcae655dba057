"""The verbs of ``slurm-dev-cluster`` (``cmd_<verb>(stack, args)``, listed in ``COMMANDS``): each does one
thing to the stack and returns the exit status; ``cli_parser`` reads their arguments."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from slurm_dev_cluster import activity, airgap, client_config, fault_verbs, images, kit, wheelhouse
from slurm_dev_cluster import ssh as harness_ssh
from slurm_dev_cluster.cli_parser import TIMED_OUT, parser
from slurm_dev_cluster.docker_deadline import DockerTimeout
from slurm_dev_cluster.faults import Faults
from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.naming import alone_project, state_root
from slurm_dev_cluster.slurm_defaults import defaults_names
from slurm_dev_cluster.stack import Stack
from slurm_dev_cluster.topology import node_number


def cmd_up(stack: Stack, args: argparse.Namespace) -> int:
    result = stack.ensure_up_shared(Coordinator(stack.state_dir), session="cli")
    c = result.connection
    print(f"stack {c.project} {result.action}: ssh -p {c.port} -i {c.key_path} {c.user}@{c.host}")
    print("  (or: slurm-dev-cluster ssh)  stop it with: slurm-dev-cluster down")
    return 0


def cmd_down(stack: Stack, args: argparse.Namespace) -> int:
    """Stop the stack, then the stacks a test session may have started beside it for its tests that take the
    cluster alone (left up by a session that was killed or kept its stacks)."""
    status = _down(stack, args)
    for defaults in defaults_names():
        sibling = alone_project(stack.project, defaults)
        if status == 0 and (state_root() / sibling / "state.json").is_file():
            status = _down(
                Stack(
                    stack.repo_root,
                    project=sibling,
                    project_source=stack.project_source,
                    compose_files=kit.resolve().compose_files,
                    say=stack.say,
                ),
                args,
            )
    return status


def _down(stack: Stack, args: argparse.Namespace) -> int:
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
            "adopts it and stops it at its end, or starts it afresh if its containers stopped too "
            "(`slurm-dev-cluster down` stops it now)"
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
    path = client_config.write_sdk_config(
        stack, kit.resolve(), Path(args.output) if args.output else None, backend=args.backend
    )
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
