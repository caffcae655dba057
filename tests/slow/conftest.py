"""The slow tier: no Docker either, but each test runs pip builds, searches byte by byte over a real sshd, waits
for real time limits of local jobs or runs a nested ``-n 2`` pytest session, so the tier costs minutes where
tests/fast costs seconds. Its fixtures are the fast tier's (imported here, so
pytest registers them for these modules too)."""

from tests.fast.conftest import cluster, make_cluster, sshd, transport  # noqa: F401
