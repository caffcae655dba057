"""A tiny user package whose functions need both of its dependencies on the node."""

from __future__ import annotations

import sys

from slurm import workflow


def report(n: int) -> dict[str, str]:
    """Where the code and its dependencies were imported from, and proof that both work."""
    import humanize
    import msgpack

    packed = msgpack.packb({"n": n})
    return {
        "words": humanize.intword(n),
        "roundtrip": str(msgpack.unpackb(packed)["n"]),
        "sample_app": __file__,
        "humanize": humanize.__file__,
        "msgpack": msgpack.__file__,
        "python": sys.executable,
        "version": "{}.{}".format(*sys.version_info[:2]),
    }


@workflow
def report_from_child(cluster, n: int) -> dict[str, str]:
    """A workflow whose child task must run in the same environment as the parent."""
    return cluster.submit(report, n).result(timeout=300)
