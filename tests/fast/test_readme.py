"""The README's SDK example runs as written (on LocalCommandBackend, no Slurm)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_sdk_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    example = re.search(r"## The SDK\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # job root ~/.slurm-sdk/jobs lands in the tmp dir
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(example, str(README), "exec"), namespace)
    assert namespace["job"].query_state().name == "COMPLETED"
