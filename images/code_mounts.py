"""Loaded at every start of the image's Python (a .pth file in the venv; images/Dockerfile).

The nodes run code from mounts: the SDK checkout at /opt/slurm_sdk_dev (the image's editable install
points there) and the project under test at /opt/project. In a CI services block the cluster starts
before the checkout, so those mounts are empty until a step fills them (docs/ci.md). A job started
then must not die with an ImportError that hides the cause: an import that nothing can satisfy while a
code mount is empty names that mount instead. For the SDK itself (``python -m slurm.node.runner``, every
job) the interpreter exits with the message; for any other name it is the ImportError's message, so
code that probes an optional module with ``try: import ...`` keeps working.

Costs one finder consulted only after every other finder failed: nothing on a successful import.

The mounts are read-only, so Python cannot write bytecode beside them: without a cache elsewhere every
job would compile again each SDK module it imports (about 15 ms of each task's start on the dev
cluster). Bytecode goes to a directory of the user's own under /tmp instead (``sys.pycache_prefix``),
unless PYTHONPYCACHEPREFIX already names one.
"""

import os
import stat
import sys

#: Mounts to check, space-separated (default: the SDK's and the project's).
MOUNTS_ENV = "SLURM_SDK_CODE_MOUNTS"
DEFAULT_MOUNTS = "/opt/slurm_sdk_dev /opt/project"


def empty_mounts():
    found = []
    for path in os.environ.get(MOUNTS_ENV, DEFAULT_MOUNTS).split():
        try:
            if os.path.isdir(path) and not os.listdir(path):
                found.append(path)
        except OSError:
            continue
    return found


def message(name, empty):
    where = " and ".join(empty)
    return (
        f"error: cannot import {name!r}: the code mount {where} is empty on {os.uname().nodename}, "
        "so this job started before the code it runs was put there (in a CI services block: the "
        "cluster starts before the checkout). fix: fill the mount first (docs/ci.md: the step that "
        "copies the checkout into the code volume), then submit the job"
    )


class EmptyCodeMountFinder:
    """Last on sys.meta_path: reached only by an import no other finder satisfies."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        empty = empty_mounts()
        if not empty:
            return None
        if name.partition(".")[0] == "slurm":
            raise SystemExit(message(name, empty))
        raise ModuleNotFoundError(message(name, empty), name=name)

    @classmethod
    def invalidate_caches(cls):
        pass


def private_pycache():
    """This user's bytecode directory, made 0700 if missing; None unless it is a directory of theirs
    that nobody else can write to (/tmp is shared: never take bytecode from someone else's directory)."""
    path = f"/tmp/slurm-sdk-pycache-{os.getuid()}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return path


if sys.pycache_prefix is None:
    sys.pycache_prefix = private_pycache()

if not any(getattr(f, "__name__", "") == "EmptyCodeMountFinder" for f in sys.meta_path):
    sys.meta_path.append(EmptyCodeMountFinder)
