"""``slurm-dev-cluster smoke``: bring the dev cluster up and show that it runs jobs, by hand and via the SDK."""

from __future__ import annotations

import paramiko

from slurm_dev_cluster import ssh
from slurm_dev_cluster.locks import Coordinator
from slurm_dev_cluster.stack import Connection, Stack

SHELL_JOB = "sbatch --wait --parsable -w {node} -J smoke -o smoke-%j.out --wrap 'echo hello from $(hostname)'"


def run(stack: Stack) -> int:
    # Shared entry: never recreates the stack under a test session that is using it.
    connection = stack.ensure_up_shared(Coordinator(stack.state_dir), session="smoke").connection
    client = ssh.connect(
        connection.host, connection.port, connection.user, connection.key_path, connection.host_key
    )
    try:
        print(f"\n$ sinfo\n{_run(client, 'sinfo')}")
        for node in stack.topology.node_names:
            job_id = _run(client, SHELL_JOB.format(node=node)).strip()
            print(f"$ sbatch --wait -w {node} --wrap 'echo hello from $(hostname)'   # job {job_id}")
            print(_run(client, f"cat smoke-{job_id}.out && rm smoke-{job_id}.out"))
    finally:
        client.close()
    info = _sdk_node_info(connection)
    print(
        "SDK task slurm.diagnostics.node_info ran as job {job_id} on {host}: Python {python}, "
        "SDK imported from {sdk}".format(**info)
    )
    print("\nThe cluster stays up: `slurm-dev-cluster ssh` to log in, `slurm-dev-cluster down` to stop it.")
    return 0


def _run(client: paramiko.SSHClient, command: str) -> str:
    code, out, err = ssh.run(client, command)
    if code != 0:
        raise RuntimeError(f"`{command}` failed on the login node (exit {code}): {err.strip()}")
    return out


def _sdk_node_info(connection: Connection) -> dict[str, str]:
    from slurm import Cluster
    from slurm.backends.slurm import SSHBackend
    from slurm.diagnostics import node_info

    backend = SSHBackend(
        connection.host,
        port=connection.port,
        user=connection.user,
        key_filename=str(connection.key_path),
        known_host_key=connection.host_key,
    )
    with Cluster(backend=backend, packaging={"type": "none"}) as cluster:
        return cluster.submit(node_info).result(timeout=300)
