"""The docs' "Poke at it by hand" commands (docs/dev-cluster-cli.md), run as written in a terminal, on a throwaway Compose project.

Plain `docker compose` (no harness): this is the path a user without the SDK takes, so it gets its own
project name and a temporary HOME, and is torn down with the README's own tear-down command.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from python_on_whales import DockerClient

from slurm_dev_cluster.preflight import port_holder

REPO = Path(__file__).resolve().parents[2]
README = REPO / "docs" / "dev-cluster-cli.md"
README_PORT = 2222  # the by-hand commands use compose's default port
INTERACTIVE = ("exec login bash",)  # opens a shell: nothing to check without a person at the keyboard


def _block(heading: str) -> str:
    match = re.search(rf"{re.escape(heading)}\n\n```bash\n(.*?)```", README.read_text(), re.S)
    assert match, f"docs/dev-cluster-cli.md has no bash block under {heading!r}"
    return match.group(1)


def _commands(block: str) -> list[str]:
    """Commands of a bash block with continuation lines joined; interactive ones left out."""
    joined = block.replace("\\\n", " ")
    return [
        line
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not any(i in line for i in INTERACTIVE)
    ]


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _require_docker() -> None:
    ok = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if not ok:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Docker is not available in CI (run harness/setup.sh)")
        pytest.skip("Docker is not available (run harness/setup.sh)")


@pytest.mark.slow
def test_poke_by_hand_commands_work_in_a_terminal(tmp_path: Path) -> None:
    _require_docker()
    if _port_taken(README_PORT):
        # The README's commands name the port (compose's default), so they cannot be moved to a free one.
        holder = port_holder(DockerClient(), README_PORT)
        pytest.fail(
            f"127.0.0.1:{README_PORT}, where the README's by-hand commands publish login's SSH, is held by "
            f"{holder.who}\nfix: {holder.fix}",
            pytrace=False,
        )
    script = tmp_path / "by-hand.sh"
    script.write_text("set -e\n" + "\n".join(_commands(_block("## Poke at it by hand"))) + "\n")
    project = "slurmsdk-readme-" + hashlib.sha1(str(REPO).encode()).hexdigest()[:8]
    env = os.environ | {"HOME": str(tmp_path / "home"), "COMPOSE_PROJECT_NAME": project}
    env.pop("SLURM_SDK_SSH_PORT", None)
    (tmp_path / "home").mkdir()
    # `script` gives the commands a terminal, as a user typing them has (docker compose exec then
    # allocates a TTY unless told not to).
    runner = (
        ["script", "-qec", f"bash {script}", "/dev/null"] if shutil.which("script") else ["bash", str(script)]
    )
    try:
        result = subprocess.run(
            runner, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        assert re.search(r"^debug\*\s+up", output, re.M), output[-3000:]  # sinfo over SSH
        assert re.search(r"^c2\r?$", output, re.M), output[-3000:]  # the job pinned to c2 ran there
        key = tmp_path / "home/.ssh/slurm-sdk-dev"
        assert oct(key.stat().st_mode & 0o777) == "0o600"
        assert b"\r" not in key.read_bytes()
    finally:
        teardown = _commands(_block("## Tear down"))[0]
        assert teardown.startswith("docker compose down -v"), teardown
        subprocess.run(teardown, shell=True, cwd=REPO, env=env, capture_output=True, timeout=300)
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert left == [], f"the README's tear-down left containers of {project}: {left}"
