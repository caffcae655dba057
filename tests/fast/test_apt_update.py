"""images/apt-update.sh, the image build's `apt-get update`, run for real with a stand-in `apt-get`: it
repeats the update without the Valid-Until check only when every error is an expired Release and the
suite is Debian testing or unstable, and never turns off signature checks."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

APT_UPDATE = Path(__file__).resolve().parents[2] / "images" / "apt-update.sh"
#: What the retry may add to `apt-get update`: the date check goes, signature checks stay.
WITHOUT_DATE_CHECK = ["-o", "Acquire::Check-Valid-Until=false", "update"]

MIRROR = "http://deb.debian.org/debian/dists"
ERRORS = {
    "expired": f"E: Release file for {MIRROR}/forky/InRelease is expired (invalid since 19d 3h). "
    "Updates for this repository will not be applied.",
    "expired-updates": f"E: Release file for {MIRROR}/forky-updates/InRelease is expired (invalid since 2d). "
    "Updates for this repository will not be applied.",
    "unreachable": f"E: Failed to fetch {MIRROR}/forky/InRelease  Could not connect to deb.debian.org:80",
    "unsigned": f"E: The repository '{MIRROR} forky InRelease' is not signed.",
}
EXPIRY = {"expired", "expired-updates"}
STABLE = ["13.2", "12.12", "11.11"]  # /etc/debian_version of a stable release
TESTING = ["forky/sid", "trixie/sid", "bookworm/sid"]  # ... of testing and unstable


def fake_apt_get(directory: Path, first_errors: list[str], retry_errors: list[str]) -> Path:
    """An `apt-get` that prints ``first_errors`` (status 100 if any) when called plainly and
    ``retry_errors`` when called with an -o option; each call appends its arguments to ``calls``."""
    calls = directory / "calls"

    def answer(errors: list[str]) -> str:  # bash builtins only: one process start per call, no cat
        printed = "".join(f"printf '%s\\n' {shlex.quote(ERRORS[e])} >&2; " for e in errors)
        return f'echo "Reading package lists..."; {printed}exit {100 if errors else 0}'

    script = directory / "apt-get"
    script.write_text(
        f'#!/bin/bash\necho "$*" >> "{calls}"\n'
        f'case "$1" in\n  -o) {answer(retry_errors)} ;;\n  *) {answer(first_errors)} ;;\nesac\n'
    )
    script.chmod(0o755)
    return calls


def update(directory: Path, debian_version: str) -> subprocess.CompletedProcess[str]:
    (directory / "debian_version").write_text(debian_version + "\n")
    env = os.environ | {
        "PATH": f"{directory}:{os.environ['PATH']}",
        "SLURM_SDK_DEBIAN_VERSION_FILE": str(directory / "debian_version"),
    }
    return subprocess.run(["bash", str(APT_UPDATE)], env=env, capture_output=True, text=True, timeout=30)


def calls(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


@settings(max_examples=40, deadline=None)
@given(
    testing=st.booleans(),
    version_index=st.integers(0, 2),
    errors=st.lists(st.sampled_from(sorted(ERRORS)), max_size=3, unique=True),
)
def test_only_an_expired_testing_release_is_updated_again_without_the_date_check(
    tmp_path_factory, testing, version_index, errors
):
    directory = tmp_path_factory.mktemp("apt")
    log = fake_apt_get(directory, first_errors=errors, retry_errors=[])
    result = update(directory, (TESTING if testing else STABLE)[version_index])

    retried = bool(errors) and set(errors) <= EXPIRY and testing
    assert calls(log) == [["update"], WITHOUT_DATE_CHECK] if retried else calls(log) == [["update"]]
    assert (result.returncode == 0) == (not errors or retried), result.stderr
    if errors and set(errors) <= EXPIRY:  # the expired Release files are named, whatever is done about them
        for error in errors:
            assert ERRORS[error] in result.stderr
        assert ("signatures are still verified" in result.stderr) == testing
        assert ("fix: build from a mirror that is in sync" in result.stderr) == (not testing)


def test_a_failing_retry_fails_the_build(tmp_path):
    log = fake_apt_get(tmp_path, first_errors=["expired"], retry_errors=["unsigned"])
    result = update(tmp_path, "forky/sid")
    assert calls(log) == [["update"], WITHOUT_DATE_CHECK]
    assert result.returncode == 100
    assert ERRORS["unsigned"] in result.stderr
