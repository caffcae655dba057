"""The shell side of the ``site_limits`` fault: a submit limit on the job user's QOS, set and taken back
through ``sacctmgr`` on the controller (slurmdbd keeps limits, slurmctld learns them from it).

It works whatever accounting setup the stack starts with: without an association for the job user (a
bare stack) it adds one under an account of its own, and takes it away again; with one (a site-like
stack), it limits the QOS each of the user's associations submits with by default.
"""

from __future__ import annotations

import shlex

from slurm_dev_cluster.ssh_access import SSH_USER

#: The account the fault creates when the job user has no association yet (removed again on reset).
ACCOUNT = "harness-limits"
#: What slurmctld must enforce for a QOS's MaxSubmitJobsPerUser to count; set by the fault itself, since a
#: stack may start with enforcement off.
ENFORCE = "associations,limits,qos,safe"
#: Slurm's "no limit" when written to a QOS.
NO_LIMIT = "-1"


def ensure_association() -> str:
    """Script: give the job user an association if it has none; prints ``created`` when it made one."""
    user, account = shlex.quote(SSH_USER), shlex.quote(ACCOUNT)
    return (
        f'if [ -z "$(sacctmgr -n -P show assoc where user={user} format=account)" ]; then '
        f"sacctmgr -i add account {account} description=harness-site-limits organization=harness >/dev/null "
        f"&& sacctmgr -i add user {user} account={account} defaultaccount={account} >/dev/null "
        "&& echo created; fi"
    )


#: The QOS settings the fault changes, in the order ``default_qos_limits`` prints them.
QOS_SETTINGS = ("MaxSubmitJobsPerUser", "MaxWall", "MaxJobsPerUser")


def default_qos_limits() -> str:
    """Script: ``qos|MaxSubmitJobsPerUser|MaxWall|MaxJobsPerUser`` for each QOS the job user's associations submit with
    by default (an association without a default QOS submits with ``normal``)."""
    user = shlex.quote(SSH_USER)
    return (
        f"names=$(sacctmgr -n -P show assoc where user={user} format=defaultqos "
        "| sed 's/^$/normal/' | sort -u | paste -sd, -); "
        'sacctmgr -n -P show qos where name="$names" format=name,maxsubmitjobsperuser,maxwall,maxjobsperuser'
    )


def parse_qos_limits(output: str) -> dict[str, dict[str, str]]:
    """``normal|50||`` lines -> ``{"normal": {"MaxSubmitJobsPerUser": "50", "MaxWall": "-1", ...}}`` (an
    empty value, or one missing, is Slurm's none, written back as ``-1``)."""
    limits = {}
    for line in output.splitlines():
        name, *values = line.strip().split("|")
        if name:
            values = (values + [""] * len(QOS_SETTINGS))[: len(QOS_SETTINGS)]
            limits[name] = {
                key: value.strip() or NO_LIMIT for key, value in zip(QOS_SETTINGS, values, strict=True)
            }
    return limits


def set_qos(qos: str, settings: dict[str, str]) -> str:
    changes = " ".join(f"{key}={shlex.quote(value)}" for key, value in settings.items())
    return f"sacctmgr -i modify qos where name={shlex.quote(qos)} set {changes}"


def remove_association() -> str:
    """Script: the fault's account and the user's association in it go (jobs still queued under it are
    cancelled first: sacctmgr refuses to remove an association with active jobs)."""
    user, account = shlex.quote(SSH_USER), shlex.quote(ACCOUNT)
    return (
        f"scancel --account={account} 2>/dev/null; "
        f"for i in 1 2 3 4 5 6 7 8 9 10; do "
        f"sacctmgr -i delete user where name={user} account={account} >/dev/null 2>&1; "
        f"sacctmgr -i delete account {account} >/dev/null 2>&1; "
        f'[ -z "$(sacctmgr -n -P show account where name={account} format=account)" ] && exit 0; sleep 1; done; '
        f"echo 'the account {ACCOUNT} could not be removed' >&2; exit 1"
    )
