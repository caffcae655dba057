"""A throwaway image registry on 127.0.0.1, for testing ``harness push`` and pulled-image stacks.

The registry is Debian's ``docker-registry`` (distribution 2.8). Installing the package would also
start its system service on every interface (``:5000``), so when the binary is not on ``PATH`` it is
taken out of the package instead: ``apt-get download`` + ``dpkg-deb -x`` into the harness's cache, with
no service, user or config installed. It runs as a child process with its own config, listening on
127.0.0.1 only (Docker treats 127.0.0.0/8 registries as plain HTTP without configuration), storage in
a directory the caller owns.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from slurm_dev_cluster.naming import state_root
from slurm_dev_cluster.processes import run_bounded

PACKAGE = "docker-registry"
BINARY = "docker-registry"
START_SECONDS = 30.0
DOWNLOAD_SECONDS = 300  # `apt-get download` of the registry package: a few MB
UNPACK_SECONDS = 120  # `dpkg-deb -x` of it: a local disk
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


class RegistryError(RuntimeError):
    """The registry could not be installed or started; the message names the fix."""


def registry_binary() -> Path:
    """``docker-registry`` from PATH, else from the Debian package unpacked into the cache (once)."""
    found = shutil.which(BINARY)
    if found:
        return Path(found)
    unpacked = state_root() / "tools" / PACKAGE / "usr" / "bin" / BINARY
    if unpacked.exists():
        return unpacked
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise RegistryError(
            f"no `{BINARY}` on PATH and no apt-get/dpkg-deb to fetch Debian's {PACKAGE} package; "
            f"fix: install a Docker registry binary as `{BINARY}` on PATH"
        )
    with tempfile.TemporaryDirectory() as download:
        fetched = run_bounded(
            ["apt-get", "download", PACKAGE],
            DOWNLOAD_SECONDS,
            RegistryError,
            "check the network to the Debian mirror (`apt-get update`), then retry",
            cwd=download,
        )
        if fetched.returncode != 0:
            raise RegistryError(
                f"`apt-get download {PACKAGE}` failed: {fetched.stderr.strip()[-300:]}; "
                "fix: `apt-get update` (the package is in Debian bookworm and later)"
            )
        [deb] = Path(download).glob("*.deb")
        target = unpacked.parents[2]  # .../tools/docker-registry, the package's root
        target.mkdir(parents=True, exist_ok=True)
        extracted = run_bounded(
            ["dpkg-deb", "-x", str(deb), str(target)],
            UNPACK_SECONDS,
            RegistryError,
            f"check that {target} is on a working disk, then retry",
        )
        if extracted.returncode != 0 or not unpacked.exists():
            raise RegistryError(f"`dpkg-deb -x {deb.name}` failed: {extracted.stderr.strip()[-300:]}")
    return unpacked


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalRegistry:
    """``with LocalRegistry(storage) as registry:`` -> ``registry.address`` is ``127.0.0.1:PORT``."""

    def __init__(self, storage: Path, port: int | None = None) -> None:
        self.storage = storage
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.storage / "config.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(self.storage / "data")}},
                    "http": {"addr": self.address},  # loopback only
                }
            )
        )
        log = (self.storage / "registry.log").open("wb")
        self._process = subprocess.Popen(
            [str(registry_binary()), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RegistryError(
                    f"{BINARY} exited ({self._process.returncode}): {(self.storage / 'registry.log').read_text()[-500:]}"
                )
            try:
                self.get("/v2/")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RegistryError(f"{BINARY} did not answer on {self.address} within {START_SECONDS:.0f} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    # ---- the registry's HTTP API (what a puller on another machine would ask) --------------------

    def get(self, path: str, accept: str | None = None, method: str = "GET") -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://{self.address}{path}", method=method)
        if accept:
            request.add_header("Accept", accept)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def tags(self, repository: str) -> list[str]:
        status, body = self.get(f"/v2/{repository}/tags/list")
        return sorted(json.loads(body).get("tags") or []) if status == 200 else []

    def missing_blobs(self, repository: str, tag: str) -> list[str]:
        """Digests the tag's manifest names that the registry cannot serve (empty: fully pullable)."""
        status, body = self.get(f"/v2/{repository}/manifests/{tag}", accept=MANIFEST_TYPES)
        if status != 200:
            return [f"manifest {tag} (HTTP {status})"]
        manifest = json.loads(body)
        digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        return [d for d in digests if self.get(f"/v2/{repository}/blobs/{d}", method="HEAD")[0] != 200]
