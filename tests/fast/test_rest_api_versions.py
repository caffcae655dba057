"""The REST backend's adapters against records captured from real slurmrestd servers
(tests/fast/rest_records/): Slurm 22.05's API (v0.0.37, v0.0.38), whose JSON differs from v0.0.40's, and
Slurm 26.05's newest (v0.0.45), which the v0.0.40 family reads."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from slurm.backends.base import JobState, JobStatus
from slurm.backends.rest_api import ApiV37, ApiV40, choose_version
from slurm.backends.rest_http import token_user
from slurm.errors import ConfigError

RECORDS = Path(__file__).parent / "rest_records"
#: What slurmrestd 22.05.8 lists in its OpenAPI description.
SLURM_22_05 = ("v0.0.36", "v0.0.37", "v0.0.38")


#: What slurmrestd 26.05.5 lists.
SLURM_26_05 = ("v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45")


def captured(version: str, release: str = "22.05.8") -> dict[str, Any]:
    return json.loads((RECORDS / f"slurm-{release}-{version}.json").read_text())


def test_slurm_22_05_gets_the_v37_family_at_its_newest_version() -> None:
    api = choose_version(SLURM_22_05, "http://rest")
    assert (type(api), api.version) == (ApiV37, "v0.0.38")
    assert (api.slurm, api.slurmdb) == ("/slurm/v0.0.38", "/slurmdb/v0.0.38")


def test_slurm_26_05_gets_the_v40_family_at_its_newest_version() -> None:
    api = choose_version(SLURM_26_05, "http://rest")
    assert (type(api), api.version) == (ApiV40, "v0.0.45")


def test_records_of_slurm_26_05_are_read_by_the_v40_family() -> None:
    """Its accounting, too, gives an array's pending tasks as a hexadecimal bit map (``0xE``)."""
    records = captured("v0.0.45", "26.05.5")
    api = ApiV40("v0.0.45")
    live = api.live_statuses(records["GET /slurm/v0.0.45/jobs"])
    assert {key: (status.state, comment) for key, (status, comment) in live.items()} == {
        "14": (JobState.COMPLETED, "mark-single"),
        "15_0": (JobState.RUNNING, "mark-array"),
        "15_1": (JobState.PENDING, "mark-array"),
        "15_2": (JobState.PENDING, "mark-array"),
        "15_3": (JobState.PENDING, "mark-array"),
    }
    assert api.accounted_statuses(records["GET /slurmdb/v0.0.45/job/15 (tasks 1-3 pending)"]) == {
        "15_0": JobStatus(JobState.RUNNING),
        "15_1": JobStatus(JobState.PENDING, "JobArrayTaskLimit"),
        "15_2": JobStatus(JobState.PENDING, "JobArrayTaskLimit"),
        "15_3": JobStatus(JobState.PENDING, "JobArrayTaskLimit"),
    }
    assert api.accounted_statuses(records["GET /slurmdb/v0.0.45/job/14"]) == {
        "14": JobStatus(JobState.COMPLETED)
    }


def test_a_server_with_both_families_gets_the_newer_one() -> None:
    assert type(choose_version(("v0.0.38", "v0.0.40"), "http://rest")) is ApiV40


@pytest.mark.parametrize("version", ["v0.0.37", "v0.0.38"])
def test_live_records_of_slurm_22_05_become_one_status_per_task(version: str) -> None:
    """The job state is one word and the array numbers plain (v0.0.40: a list and set/number maps)."""
    body = captured(version)[f"GET /slurm/{version}/jobs"]
    found = ApiV37(version).live_statuses(body)
    assert {key: status.state for key, (status, _) in found.items()} == {
        "1": JobState.COMPLETED,
        "2_0": JobState.RUNNING,
        "2_1": JobState.PENDING,
        "2_2": JobState.PENDING,
        "2_3": JobState.PENDING,
    }
    assert found["2_3"][0].reason == "JobArrayTaskLimit"
    assert (found["1"][1], found["2_0"][1]) == ("mark-single", "mark-array")


@pytest.mark.parametrize("version", ["v0.0.37", "v0.0.38"])
def test_accounting_of_slurm_22_05_gives_pending_tasks_as_a_bit_map(version: str) -> None:
    """Accounting names an array's pending tasks ``0xE`` (bits 1-3) where the live record says ``1-3%1``."""
    pending = captured(version)[f"GET /slurmdb/{version}/job/2 (tasks 1-3 pending)"]
    assert ApiV37(version).accounted_statuses(pending) == {
        "2_0": JobStatus(JobState.RUNNING),
        "2_1": JobStatus(JobState.PENDING, "JobArrayTaskLimit"),
        "2_2": JobStatus(JobState.PENDING, "JobArrayTaskLimit"),
        "2_3": JobStatus(JobState.PENDING, "JobArrayTaskLimit"),
    }
    later = captured(version)[f"GET /slurmdb/{version}/job/2 (tasks 0-2 done, 3 running)"]
    assert {key: status.state for key, status in ApiV37(version).accounted_statuses(later).items()} == {
        "2_0": JobState.COMPLETED,
        "2_1": JobState.COMPLETED,
        "2_2": JobState.COMPLETED,
        "2_3": JobState.RUNNING,
    }


SCRIPT = (
    "#!/bin/bash\n#SBATCH --job-name=x\n#SBATCH --time=1:30:00\n#SBATCH --nodes=2\n#SBATCH --mem=1G\n"
    "#SBATCH --gres=gpu:1\n#SBATCH --signal=USR2@60\n#SBATCH --open-mode=truncate\n\nexec true\n"
)


def test_a_22_05_job_description_has_the_script_beside_it_and_the_environment_as_a_map() -> None:
    body = ApiV37("v0.0.38").job_description(
        SCRIPT,
        working_dir="/w",
        marker="/w/job.sh",
        environment=["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "EMPTY="],
        array="0-3%1",
        dependency="afterok:7",
    )
    assert body["script"] == SCRIPT
    assert body["job"] == {
        "name": "x",
        "time_limit": 90,
        "nodes": [2, 2],
        "memory_per_node": 1024,
        "gres": "gpu:1",
        "signal": "USR2@60",
        "open_mode": "truncate",
        "current_working_directory": "/w",
        "comment": "/w/job.sh",
        "environment": {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "EMPTY": ""},
        "array": "0-3%1",
        "dependency": "afterok:7",
    }


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("#SBATCH --signal=B:USR2@60", "refuses the B: flag"),
        ("#SBATCH --nodelist=c1", "--nodelist has no slurmrestd field"),
        ("#SBATCH --exclude=c2", "--exclude has no slurmrestd field"),
    ],
)
def test_what_22_05_cannot_take_is_refused_before_submitting(line: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        ApiV37("v0.0.38").job_description(
            f"#!/bin/bash\n{line}\n", working_dir="/", marker="m", environment=[], array=None, dependency=None
        )


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_the_user_name_is_read_from_the_token() -> None:
    """``scontrol token``'s payload (22.05.8: exp, iat, sun) names the user slurmrestd 22.05 wants beside it."""
    assert token_user(_jwt({"exp": 1796610526, "iat": 1796607526, "sun": "sdk"})) == "sdk"
    assert token_user(_jwt({"exp": 1796610526})) is None
    assert token_user("not-a-token") is None
    assert token_user("a.!!!.c") is None
