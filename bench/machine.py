"""What the benchmarks ran on: cores, RAM, OS, Docker, date."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

from python_on_whales import DockerClient

from slurm_dev_cluster import docker_deadline


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def describe(docker: DockerClient) -> dict[str, Any]:
    with docker_deadline.bounded(docker, docker_deadline.ANSWER_SECONDS, "docker version") as bounded:
        version = bounded.version()
        compose = bounded.compose.version()
    return {
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": f"{_os_name()} (kernel {platform.release()}, {platform.machine()})",
        "docker": version.server.version if version.server else "unknown",
        "compose": compose.removeprefix("Docker Compose version ").strip(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def one_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cores']} cores, {machine['ram_gib']} GiB RAM, {machine['os']}, "
        f"Docker {machine['docker']} (compose {machine['compose']}), Python {machine['python']}, "
        f"{machine['date']}"
    )
