"""harness.stack logic that needs no Docker: project names, the inputs hash, recorded state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.stack import REPO_ROOT, Stack, inputs_hash, project_name_for

COMPOSE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def test_project_name_is_stable_per_checkout_and_distinct_between_checkouts(tmp_path):
    one, two = tmp_path / "a" / "slurm-sdk", tmp_path / "b" / "slurm-sdk"
    assert project_name_for(one) == project_name_for(one)
    assert project_name_for(one) != project_name_for(two)


@pytest.mark.parametrize("dirname", ["My Repo!", "UPPER_case", "---", "ünïcode"])
def test_project_name_is_valid_for_compose(tmp_path, dirname):
    name = project_name_for(tmp_path / dirname)
    assert COMPOSE_NAME.match(name), name
    assert name.startswith("slurmsdk-")


@pytest.fixture
def fake_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    (repo / "images" / "slurm").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "compose.yaml").write_text("services: {}\n")
    (repo / "pyproject.toml").write_text("[project]\nname='x'\n")
    (repo / "images" / "Dockerfile").write_text("FROM debian\n")
    (repo / "images" / "slurm" / "slurm.conf").write_text("ClusterName=dev\n")
    (repo / "src" / "code.py").write_text("x = 1\n")
    return repo


@pytest.mark.parametrize("changed", ["compose.yaml", "pyproject.toml", "images/Dockerfile",
                                     "images/slurm/slurm.conf", "images/new-file.sh"])
def test_inputs_hash_changes_with_every_image_input(fake_repo, changed):
    before = inputs_hash(fake_repo)
    path = fake_repo / changed
    path.write_text((path.read_text() if path.exists() else "") + "# edit\n")
    assert inputs_hash(fake_repo) != before


def test_inputs_hash_follows_debian_release_and_ignores_source_code(fake_repo, monkeypatch):
    monkeypatch.delenv("DEBIAN_RELEASE", raising=False)
    before = inputs_hash(fake_repo)
    (fake_repo / "src" / "code.py").write_text("x = 2\n")  # bind-mounted, never baked in
    assert inputs_hash(fake_repo) == before
    monkeypatch.setenv("DEBIAN_RELEASE", "bookworm")
    assert inputs_hash(fake_repo) != before


def test_stack_keeps_its_state_in_its_own_directory_without_calling_docker(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("SLURM_SDK_PROJECT", raising=False)
    stack = Stack(REPO_ROOT, client_call=["/nonexistent/docker"])
    assert stack.state_dir == tmp_path / "state" / project_name_for(REPO_ROOT)
    assert stack.read_state() == {}
    stack.update_state(port=2222)
    stack.update_state(inputs_hash="abc")
    assert stack.read_state() == {"port": 2222, "inputs_hash": "abc"}
    # Compose gets an empty port (ephemeral) unless SLURM_SDK_SSH_PORT is set in the environment.
    assert (stack.state_dir / "compose.env").read_text() == "SLURM_SDK_SSH_PORT=\n"


def test_project_can_be_overridden_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("SLURM_SDK_PROJECT", "slurmsdk-other")
    assert Stack(REPO_ROOT).project == "slurmsdk-other"
