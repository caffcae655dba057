"""Download resolved wheels on this host, for clusters whose nodes cannot reach a package index.

Files land in this host's cache (``<cache>/wheels``), checked against the sha256 the resolver recorded, so
each wheel is fetched once however many environments use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from slurm.errors import DependencyError
from slurm.packaging.host_cache import host_cache_dir
from slurm.packaging.resolver import Pin

_TIMEOUT = 120


def fetch_wheels(pins: list[Pin]) -> list[Path]:
    """Local paths of the pinned wheels, downloading the missing ones."""
    cache = host_cache_dir("wheels")
    return [_fetch(pin, cache / pin.filename) for pin in pins]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(pin: Pin, target: Path) -> Path:
    if target.is_file() and (not pin.sha256 or _sha256(target) == pin.sha256):
        return target
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        # urllib honours https_proxy/no_proxy and the system trust store, like pip and uv on this host.
        with urllib.request.urlopen(pin.url, timeout=_TIMEOUT) as response, tmp.open("wb") as out:
            shutil.copyfileobj(response, out)
        if pin.sha256 and _sha256(tmp) != pin.sha256:
            raise DependencyError(
                f"downloaded {pin.filename} does not match the sha256 the resolver recorded "
                f"({pin.sha256}); the index changed the file or the download was tampered with"
            )
        tmp.replace(target)
    except OSError as exc:
        raise DependencyError(
            f"downloading {pin.filename} from {pin.url} failed: {exc}; this host must reach "
            "the package index to build a wheelhouse for an air-gapped cluster"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
