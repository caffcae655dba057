"""Every Python block of the docs site and the README runs as written, on LocalCommandBackend (no Slurm).

How blocks are marked (run on the dev cluster only, or illustrative) is in tests/docs_support.py; blocks
marked for the dev cluster run in tests/integration/test_docs_on_cluster.py.
"""

from __future__ import annotations

import re

import pytest

from slurm import Cluster
from tests.docs_support import PAGES, ROOT, run_page, skip_directives

# Blocks that need a real remote site and are never run. Keep this small: prefer a block that runs.
MAX_ILLUSTRATIVE = 4
# The cadence of the fast tier's local clusters (local_cluster in conftest.py), in seconds.
QUICK_POLL, QUICK_RESULT_POLL = 0.05, 0.01


@pytest.fixture
def quick_local_polls(monkeypatch):
    """The docs' local clusters (``Cluster()``) wait with the fast tier's quicker cadence, as the other fast
    tests' clusters do: a wait sees a job's end sooner, and the blocks stay as a reader runs them. A workflow's
    child cluster inherits the cadence from its parent."""
    init = Cluster.__init__

    def init_polling_quicker(
        self, *args, poll_interval_seconds=None, result_poll_interval_seconds=None, **kwargs
    ):
        init(
            self,
            *args,
            poll_interval_seconds=poll_interval_seconds,
            result_poll_interval_seconds=result_poll_interval_seconds,
            **kwargs,
        )
        if self.backend.type_name == "local":  # what the caller set stays
            self.poll_interval_seconds = poll_interval_seconds or QUICK_POLL
            self.result_poll_interval_seconds = result_poll_interval_seconds or QUICK_RESULT_POLL

    monkeypatch.setattr(Cluster, "__init__", init_polling_quicker)


@pytest.mark.usefixtures("quick_local_polls")
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # the job root ~/.slurm-sdk/jobs lands in the tmp dir
    monkeypatch.delenv("SLURM_SDK_CONFIG", raising=False)
    outcome = run_page(page, dev_cluster=False)
    text = page.read_text()
    blocks = len(re.findall(r"^(```python|<!-- invisible-code-block: python)$", text, re.M))
    assert outcome.ran + len(outcome.skipped) == blocks  # every block ran or was skipped, saying why


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_skip_says_why(page):
    for line, action, reason in skip_directives(page):
        assert action == "next", f"{page.name}:{line}: use `skip: next` (one block at a time)"
        assert reason and reason.strip(" \"'"), f"{page.name}:{line}: a skipped block needs a reason"


def test_illustrative_blocks_are_few():
    illustrative = [
        f"{page.name}:{line}"
        for page in PAGES
        for line, _action, reason in skip_directives(page)
        if reason and not reason.lstrip().startswith("if")
    ]
    assert len(illustrative) <= MAX_ILLUSTRATIVE, illustrative


def test_readme_test_kit_example_is_the_example_project():
    """The README's test-kit block is not run by exec: it is a test module. It is a verbatim excerpt of
    examples/downstream/tests/test_tasks.py, which tests/integration/test_kit_example.py runs."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- skip: next .*?-->\n```python\n(.*?)```", readme, re.S)
    assert block, "README has no skipped python block (the test-kit example)"
    example = (ROOT / "examples/downstream/tests/test_tasks.py").read_text()
    for chunk in block[1].split("\n\n\n"):
        assert chunk.strip() in example, chunk


def test_no_issue_numbers_in_user_facing_text():
    for page in [*PAGES, ROOT / "CHANGELOG.md"]:
        found = re.findall(r"(?i)\bissue\s+\d+", page.read_text())
        assert not found, f"{page.name}: {found}"
