"""Cluster.from_env: YAML schema, environment overrides, and errors that name path, line and key."""

from __future__ import annotations

import json
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurm import Cluster, ConfigError
from slurm.backends.local import LocalCommandBackend
from slurm.config import load_config
from slurm.packaging import make_packaging
from slurm.packaging.none import NonePackaging
from tests.fast import tasks


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "slurm.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return str(path)

    return write


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv("SLURM_SDK_CONFIG", raising=False)
    for name in list(__import__("os").environ):
        if name.startswith("SLURM_SDK__"):
            monkeypatch.delenv(name)


def test_full_config_builds_a_working_cluster(write, tmp_path):
    import sys

    from tests.fast.conftest import REPO

    path = write(f"""
        backend:
          type: local
          state_dir: {tmp_path / "state"}
          max_array_size: 5
        packaging:
          type: none
          pythonpath: [{REPO}]
          python: {sys.executable}
        defaults:
          time: "00:02:00"
          partition: debug
        job_root: {tmp_path / "jobs"}
        poll_interval_seconds: 0.1
        result_poll_interval_seconds: 0.05
        outage_limit_seconds: 30
    """)
    cluster = Cluster.from_env(path)
    assert isinstance(cluster.backend, LocalCommandBackend) and cluster.backend.max_array_size() == 5
    assert cluster.packaging.to_config()["pythonpath"] == [REPO]
    assert (cluster.defaults.time, cluster.defaults.partition, cluster.poll_interval_seconds) == (
        "00:02:00",
        "debug",
        0.1,
    )
    assert (cluster.result_poll_interval_seconds, cluster.outage_limit_seconds) == (0.05, 30)
    job = cluster.submit(tasks.add, 20, 22)
    assert "#SBATCH --partition=debug" in job.script and "#SBATCH --time=00:01:00" in job.script
    assert job.result(timeout=30) == 42


def test_path_from_environment_and_env_overrides(write, tmp_path, monkeypatch):
    path = write(f"backend: {{type: local, state_dir: {tmp_path / 'a'}}}\n")
    monkeypatch.setenv("SLURM_SDK_CONFIG", path)
    monkeypatch.setenv("SLURM_SDK__BACKEND__MAX_ARRAY_SIZE", "7")
    monkeypatch.setenv("SLURM_SDK__DEFAULTS__CPUS", "2")
    data, _ = load_config()
    assert data["backend"]["max_array_size"] == 7 and data["defaults"] == {"cpus": 2}
    cluster = Cluster.from_env(overrides={"backend": {"max_array_size": 9}})
    assert cluster.backend.max_array_size() == 9 and cluster.defaults.cpus == 2


def test_config_from_environment_only(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_SDK__BACKEND__TYPE", "local")
    monkeypatch.setenv("SLURM_SDK__BACKEND__STATE_DIR", str(tmp_path))
    assert isinstance(Cluster.from_env().backend, LocalCommandBackend)


def test_no_config_at_all():
    with pytest.raises(ConfigError, match="SLURM_SDK_CONFIG"):
        Cluster.from_env()


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        Cluster.from_env(missing)


def test_yaml_syntax_error_names_path_and_line(write):
    path = write("""
        backend:
          type: local
          state_dir: [unclosed
        packaging: {type: none}
    """)
    with pytest.raises(ConfigError, match=rf"{path}:4:\d+: invalid YAML"):
        Cluster.from_env(path)


def test_not_a_mapping(write):
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        Cluster.from_env(write("- backend\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "backend: {type: local}\npackagin: {type: none}\n",
            r":2: unknown key 'packagin' \(valid: backend, packaging",
        ),
        (
            "backend:\n  type: local\n  max_array_sise: 3\n",
            r":3: backend 'local': unknown option 'max_array_sise' \(valid: state_dir, max_array_size, parallelism\)",
        ),
        (
            "backend:\n  type: local\n  max_array_size: lots\n",
            r":3: backend 'local': option 'max_array_size' must be int",
        ),
        ("backend: {type: pbs}\n", r":1: unknown backend type 'pbs'; valid types: local, slurm, ssh"),
        (
            "backend: {type: local}\npackaging:\n  type: conda\n",
            r":3: unknown packaging type 'conda'; valid types: none, wheel, sync",
        ),
        (
            "backend: {type: local}\npackaging:\n  type: none\n  pythonpath: /not/a/list\n",
            r":4: packaging 'none': option 'pythonpath' must be list\[str\] \| None",
        ),
        (
            "backend: {type: local}\ndefaults:\n  partition: debug\n  time: 1h\n",
            r":4: defaults: malformed time '1h'",
        ),
        ("backend: {type: local}\ndefaults:\n  cpus: -1\n", r":3: defaults: cpus must be an int >= 1"),
        (
            "backend: {type: local}\npoll_interval_seconds: fast\n",
            r":2: key 'poll_interval_seconds' must be a positive number of seconds, got str 'fast'",
        ),
        (
            "backend: {type: local}\noutage_limit_seconds: 0\n",
            r":2: key 'outage_limit_seconds' must be a positive number of seconds, got int 0",
        ),
        ("packaging: {type: none}\n", r": missing section 'backend'"),
    ],
)
def test_bad_config_names_path_line_and_key(write, text, message):
    path = write(text)
    with pytest.raises(ConfigError, match=path + message):
        Cluster.from_env(path)


def test_make_packaging_errors_list_valid_choices():
    with pytest.raises(ConfigError, match="unknown packaging type 'zip'; valid types: none, wheel, sync"):
        make_packaging({"type": "zip"})
    with pytest.raises(ConfigError, match=r"unknown option 'pyhton' \(valid: pythonpath, python\)"):
        make_packaging({"type": "none", "pyhton": "python3.13"})
    assert isinstance(make_packaging({"type": "none"}), NonePackaging)


def test_packaging_dict_accepted_by_cluster(tmp_path):
    with pytest.raises(ConfigError, match="valid types"):
        Cluster(LocalCommandBackend(str(tmp_path)), packaging={"type": "docker"})


@pytest.mark.parametrize("backend", ["slurm", "ssh"])
def test_a_string_for_sbatch_extra_is_refused_not_split_into_characters(write, backend):
    host = "  host: login\n" if backend == "ssh" else ""
    path = write(f"backend:\n  type: {backend}\n{host}  sbatch_extra: --qos=high\n")
    line = 4 if host else 3
    with pytest.raises(
        ConfigError,
        match=rf"{path}:{line}: .*'sbatch_extra'.*write a list, e.g. sbatch_extra: \[--qos=high\]",
    ):
        Cluster.from_env(path)  # refused before any connection is tried


def test_a_string_for_sbatch_extra_is_refused_from_python_too():
    from slurm.backends.slurm import SlurmBackend
    from slurm.transports.host import HostTransport

    with pytest.raises(ConfigError, match=r"write sbatch_extra=\['--qos=high'\]"):
        SlurmBackend(HostTransport(), sbatch_extra="--qos=high")
    assert SlurmBackend(HostTransport(), sbatch_extra=["--qos=high"]).sbatch_extra == ("--qos=high",)


# Each local-backend option with values of the right type and of wrong ones (what YAML can produce).
_LOCAL_OPTIONS = {
    "max_array_size": (st.integers(1, 5000), st.sampled_from(["lots", "3", 2.5, True, [3], None])),
    "parallelism": (st.integers(1, 8), st.sampled_from(["two", 1.0, False, {"n": 2}])),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    choices=st.fixed_dictionaries(
        {name: st.tuples(st.booleans(), good, bad) for name, (good, bad) in _LOCAL_OPTIONS.items()}
    ),
    typo=st.sampled_from([None, "max_array_sise", "paralelism", "statedir"]),
    order=st.randoms(use_true_random=False),
)
def test_every_bad_option_is_named_with_its_line_and_the_valid_names(write, tmp_path, choices, typo, order):
    options = {name: (good if ok else bad) for name, (ok, good, bad) in choices.items()}
    options["state_dir"] = str(tmp_path / "state")
    if typo:
        options[typo] = 1
    names = list(options)
    order.shuffle(names)
    lines = ["backend:", "  type: local", *(f"  {name}: {json.dumps(options[name])}" for name in names)]
    path = write("\n".join(lines) + "\n")
    bad = {name for name, (ok, _, _) in choices.items() if not ok} | ({typo} if typo else set())
    if not bad:
        assert Cluster.from_env(path).backend.max_array_size() == options["max_array_size"]
        return
    with pytest.raises(ConfigError) as info:
        Cluster.from_env(path)
    key, message = info.value.key, str(info.value)
    assert key in bad
    assert message.startswith(f"{path}:{names.index(key) + 3}: backend 'local': ")
    if key == typo:  # a misspelt name is reported first, with the names that would have worked
        assert f"unknown option {typo!r} (valid: state_dir, max_array_size, parallelism)" in message
    else:
        assert f"option {key!r} must be int, got {type(options[key]).__name__}" in message


def test_plain_tasks_and_workflow_children_never_load_the_validation_library(cluster):
    """The runner imports no pydantic for a task, nor to rebuild a workflow's Cluster from the config the
    parent SDK wrote (it is checked where a person wrote it: Cluster.from_env)."""
    import json
    import subprocess
    import sys

    script = (
        "import json, sys, slurm.node.runner; from slurm.cluster import Cluster; "
        "Cluster._from_child_config(json.loads(sys.argv[1])); print('pydantic' in sys.modules)"
    )
    config = json.dumps(cluster._child_config())
    out = subprocess.run([sys.executable, "-c", script, config], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
