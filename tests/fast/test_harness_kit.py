"""The test kit's settings (slurm_dev_cluster.kit), the client config texts (slurm_dev_cluster.client_config)
and the example project's usage errors: no Docker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurm_dev_cluster import client_config, images, kit
from slurm_dev_cluster.stack import Connection, StackError, containers_inputs

pytest_plugins = ("pytester",)  # the example project's session, run in this process

REPO = kit.CHECKOUT_ROOT  # this repository (the kit is installed editable from it)
EXAMPLE = REPO / "examples" / "downstream"


def resolve(**kwargs):
    return kit.resolve(environ=kwargs.pop("environ", {}), **kwargs)


def test_default_project_is_the_one_around_the_current_directory(monkeypatch):
    monkeypatch.chdir(REPO / "tests" / "fast")
    settings = resolve()
    assert settings.project_dir == REPO and settings.kit_root == REPO  # an editable kit: its checkout
    assert settings.node_path(REPO / "tests") == f"{kit.PROJECT_MOUNT}/tests"


def test_default_project_with_a_base_dir_is_that_directory(tmp_path):
    assert resolve(base_dir=tmp_path).project_dir == tmp_path  # pytest's rootdir, as given


def test_downstream_project_maps_to_its_mount(tmp_path):
    (tmp_path / "src").mkdir()
    settings = resolve(project_dir=str(tmp_path))
    assert settings.project_mount == kit.PROJECT_MOUNT
    assert settings.node_import_roots() == [f"{kit.PROJECT_MOUNT}/src", kit.PROJECT_MOUNT]
    assert settings.host_import_roots() == [str(tmp_path / "src"), str(tmp_path)]
    assert settings.node_path(tmp_path / "tests") == f"{kit.PROJECT_MOUNT}/tests"
    assert settings.node_path(tmp_path.parent) is None  # outside the project: not on the nodes
    assert containers_inputs(REPO, tmp_path) != containers_inputs(REPO, REPO)


def test_explicit_values_win_over_the_environment(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    environ = {kit.ENV_PROJECT_DIR: str(tmp_path / "a"), kit.ENV_PROJECT: "from-env"}
    settings = resolve(project_dir=str(tmp_path / "b"), environ=environ)
    assert settings.project_dir == tmp_path / "b" and settings.origin["project_dir"] == "pytest option"
    assert settings.project == "from-env" and settings.origin["project"] == f"${kit.ENV_PROJECT}"


def test_relative_paths_are_taken_from_the_ini_directory(tmp_path):
    (tmp_path / "proj" / "lib").mkdir(parents=True)
    settings = resolve(project_dir="proj", import_roots=["lib"], base_dir=tmp_path)
    assert settings.project_dir == tmp_path / "proj"
    assert settings.node_import_roots() == [f"{kit.PROJECT_MOUNT}/lib"]


def test_extra_compose_files_change_the_containers_inputs(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("services: {}\n")
    first = containers_inputs(REPO, REPO, [extra])
    extra.write_text("services: {login: {environment: {A: '1'}}}\n")
    assert containers_inputs(REPO, REPO, [extra]) != first != containers_inputs(REPO, REPO)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"project_dir": "/nonexistent/proj"},
            "slurm_sdk_project_dir / SLURM_SDK_PROJECT_DIR: /nonexistent/proj",
        ),
        ({"existing_cluster": "/nonexistent/site.yaml"}, "--existing-cluster / SLURM_SDK_EXISTING_CLUSTER"),
        ({"compose_files": ["/nonexistent/x.yaml"]}, "slurm_sdk_compose_files"),
        ({"import_roots": ["nope"]}, "import root 'nope' is not a directory"),
        ({"environ": {kit.ENV_KIT_DIR: "/tmp"}}, "no compose.yaml there"),
    ],
)
def test_bad_settings_name_the_setting_and_the_fix(kwargs, message):
    with pytest.raises(kit.KitError, match="fix:") as error:
        resolve(**kwargs)
    assert message in str(error.value)


@given(st.lists(st.text(alphabet="abcxyz_/.-", min_size=1, max_size=8), max_size=5))
def test_environment_lists_split_on_pathsep_and_commas(items):
    expected = [i for i in items if i.strip()]
    assert kit._split(os.pathsep.join(items)) == expected
    assert kit._split(",".join(items)) == expected
    assert kit._split(items) == expected


def connection(key: str = "/state/client_ed25519") -> Connection:
    return Connection("p", "127.0.0.1", 32771, "sdk", Path(key), "ssh-ed25519 AAAA")


def test_ssh_config_block():
    block = client_config.ssh_config(connection(), Path("/state dir/known_hosts"))
    assert block.splitlines() == [
        "Host slurm-dev",
        "    HostName 127.0.0.1",
        "    Port 32771",
        "    User sdk",
        "    IdentityFile /state/client_ed25519",
        "    IdentitiesOnly yes",
        '    UserKnownHostsFile "/state dir/known_hosts"',
        "    StrictHostKeyChecking yes",
        "    PasswordAuthentication no",
    ]


@pytest.mark.parametrize("alias", ["", "two words", "slurm*", "!x"])
def test_ssh_config_refuses_bad_aliases(alias):
    with pytest.raises(ValueError, match="one word without wildcards"):
        client_config.ssh_config(connection(), Path("/k"), alias)


def test_sdk_config_for_a_downstream_project(tmp_path):
    (tmp_path / "src").mkdir()
    config = client_config.sdk_config(connection(), resolve(project_dir=str(tmp_path)))
    assert config["backend"] == {
        "type": "ssh",
        "host": "127.0.0.1",
        "port": 32771,
        "user": "sdk",
        "key_filename": "/state/client_ed25519",
        "known_host_key": "ssh-ed25519 AAAA",
    }
    assert config["packaging"] == {
        "type": "none",
        "pythonpath": [f"{kit.PROJECT_MOUNT}/src", kit.PROJECT_MOUNT],
    }


def test_example_project_refuses_a_missing_existing_cluster_config(pytester, tmp_path, monkeypatch):
    """A usage error (exit 4) before any test runs or Docker is asked: the plugin came from the entry point.
    The example project's session runs in this process (what the plugin does is under test, not a fresh
    process)."""
    for name in list(os.environ):
        if name.startswith(("PYTEST_", "SLURM_SDK_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(EXAMPLE)
    run = pytester.runpytest_inprocess(
        "-q", "-p", "no:cacheprovider", f"--existing-cluster={tmp_path}/x.yaml"
    )
    assert run.ret == 4, run.stdout.str() + run.stderr.str()
    assert (
        f"slurm-sdk test kit: --existing-cluster / SLURM_SDK_EXISTING_CLUSTER: {tmp_path}/x.yaml"
        in run.stderr.str()
    )


@pytest.mark.parametrize("registry", ["127.0.0.1:5000", "ghcr.io/owner", "registry.example.org/team/sub"])
def test_registry_names_accepted(registry):
    assert images.check_registry(registry + "/") == registry


@pytest.mark.parametrize("registry", ["http://127.0.0.1:5000", "ghcr.io/owner:latest", "", "a b"])
def test_registry_names_refused_with_an_example(registry):
    with pytest.raises(StackError, match=r"e\.g\. --registry 127\.0\.0\.1:5000"):
        images.check_registry(registry)


def test_an_installed_kit_stages_its_definition_once_per_content(tmp_path, monkeypatch):
    """The wheel's read-only package data is copied to a writable directory named by its content: the same
    content reuses it, changed content (another kit version) gets its own; the host's CAs are gathered."""
    monkeypatch.setenv("SLURM_SDK_STATE_HOME", str(tmp_path / "state"))
    ca = tmp_path / "site.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("SLURM_SDK_SITE_CA", str(ca))
    packaged = tmp_path / "cluster"
    (packaged / "images" / "site-ca").mkdir(parents=True)
    (packaged / "compose.yaml").write_text("services: {}\n")
    first = kit.staged_cluster(packaged)
    assert first.parent == tmp_path / "state" and (first / "compose.yaml").read_text() == "services: {}\n"
    assert [p.name for p in (first / "images" / "site-ca").iterdir()] == ["site-001.crt"]
    assert kit.staged_cluster(packaged) == first
    (packaged / "compose.yaml").write_text("services: {login: {}}\n")
    second = kit.staged_cluster(packaged)
    assert second != first and (first / "compose.yaml").read_text() == "services: {}\n"
    assert [p.name for p in (tmp_path / "state").iterdir() if p.name.startswith(".")] == []  # no scratch left
