"""The Slurm commands a job runs from inside (requeue itself, read its preemption time, ask the version),
and the job variables that replace them: the local backend sets its own requeue command, tests set theirs.

Apart from ``slurm.node.checkpoint``, which runs them, so that the local backend's launcher can name the
variable without importing the checkpoint runtime (dataclasses, inspect, signal) for every local job.
"""

#: The command that requeues a job (its id is appended); the local backend sets its own. A job variable
#: like SLURM_JOB_ID, so a workflow's children do not inherit it.
REQUEUE_COMMAND_ENV = "SLURM_REQUEUE_COMMAND"
DEFAULT_REQUEUE_COMMAND = "scontrol requeue"
#: The command that describes a job (its id is appended), read for its ``PreemptTime``; tests set their own.
JOB_QUERY_COMMAND_ENV = "SLURM_JOB_QUERY_COMMAND"
DEFAULT_JOB_QUERY_COMMAND = "scontrol -o show job"
#: The command that prints Slurm's version ("slurm 22.05.8"); tests set their own.
VERSION_COMMAND_ENV = "SLURM_VERSION_COMMAND"
DEFAULT_VERSION_COMMAND = "scontrol --version"
