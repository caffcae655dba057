"""Real preemption (PreemptType=preempt/qos, PreemptMode=REQUEUE): a job in QOS `high` that needs the node a
checkpointing task in QOS `low` fills makes Slurm itself requeue that task (no `scontrol requeue`), and the
task resumes from its checkpoint once Slurm's hold after a requeue is over (10 s under the dev defaults,
120 s under the production ones)."""

from __future__ import annotations

import uuid

import pytest

from slurm import Checkpointing
from slurm_dev_cluster.stack import accounting_enabled
from tests.checkpoint_jobs import count_steps, run_starts

from .defaults_modes import MODES
from .waiting import accounted, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NODE_CPUS = 4  # images/entrypoint.sh NODE_CPUS: the low task takes them all, so its node is full
# The low task's first run never takes its last step (count_steps' held_runs), so only the preemption ends it
# whenever that comes, and its rerun has at most STEPS - 1 one-second steps left: no guess of how much work
# outlasts the preemption (20 steps were 17 s of rerun for the checkpoint's sake).
STEPS = 4
HOLD_FIRST_RUN = 1


@pytest.fixture
def runs_log(slurm_cluster):
    path = f"/home/sdk/preempted-runs-{uuid.uuid4().hex}.log"
    yield path
    slurm_cluster.backend.transport.run(f"rm -f {path}", check=False)


@pytest.mark.parametrize("mode", MODES)
def test_a_high_job_preempts_a_low_checkpointing_task_which_resumes(slurm_cluster, faults, runs_log, mode):
    if not accounting_enabled():
        pytest.skip("SLURM_SDK_ACCOUNTING=0: no slurmdbd, so no QOS and no preemption")
    run = slurm_cluster.backend.transport.run
    low = slurm_cluster.submit(
        count_steps.options(
            time=10, cpus=NODE_CPUS, checkpoint=Checkpointing(max_requeues=0), sbatch={"qos": "low"}
        ),
        STEPS,
        runs_log,
        1.0,
        HOLD_FIRST_RUN,
    )
    transport = slurm_cluster.backend.transport
    wait_until(lambda: transport.exists(runs_log), 120, f"the low job {low.job_id} started")
    node = run(f"squeue -h -j {low.job_id} -o %N").stdout.strip()
    # One CPU of the node the low task fills, in QOS high: Slurm preempts the low task to start it.
    high = run(
        f"sbatch --parsable --qos=high -w {node} -n1 --time=1 -o /dev/null --wrap 'sleep 5'"
    ).stdout.strip()

    state = low.result(timeout=600)

    runs = run_starts(transport.read_bytes(runs_log).decode())
    assert len(runs) >= 2 and runs[0] == 0 and runs[1] > 0, runs  # the rerun resumed from its checkpoint
    assert state["step"] == STEPS and state["runs"] == len(runs)
    assert low.restarts >= 1

    # Slurm preempted it (sacct's record of the first run), and the high job ran to its end.
    # (Each end reaches slurmdbd a moment after the result file: sacct may say RUNNING first.)
    def history() -> list[str]:
        return accounted(run, low.job_id, every_run=True)

    def high_state() -> list[str]:
        return accounted(run, high, "State,QOS")

    wait_until(
        lambda: history()[-1:] == ["COMPLETED"], 60, lambda: f"sacct's runs of the low job: {history()}"
    )
    assert history()[0] == "PREEMPTED", history()
    wait_until(lambda: high_state() == ["COMPLETED|high"], 60, lambda: f"sacct: the high job {high_state()}")
    # Slurm's own requeue, not a user's or the runner's: the checkpoint limit (0) was never counted.
    assert "max_requeues" not in low.stderr()
