"""The slow tier: no Docker either, but each test runs pip builds or searches byte by byte over a real sshd, so
the tier costs minutes where tests/fast costs seconds. Its fixtures are the fast tier's (imported here, so
pytest registers them for these modules too)."""

from tests.fast.conftest import sshd, transport  # noqa: F401
