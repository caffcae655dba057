"""Dependency-complete virtual environments on the cluster, one per (interpreter, pinned wheels, built wheels).

Layout under the cache root on the cluster (``~/.slurm-sdk/cache`` by default, on the shared home):

    envs/<key>/          the venv (``--system-site-packages``); ``.ready`` is written last
    envs/<key>.lock      flock'ed while the venv is checked or built: concurrent submitters build it once
    projects/<key>/      a project's wheel unpacked (``pip install --target``) for one venv, put on
                         PYTHONPATH: editing the project rebuilds this layer only, never the venv
    wheels/<key>/        the wheels built on the submitting host (project, SDK) for a venv or layer
    wheelhouse/          every dependency wheel any venv was installed from (shared by all venvs)

The key covers everything the venv depends on: the interpreter it links to (path, realpath, version,
platform), every pinned dependency wheel and the content of the wheels built here. A venv without
``.ready`` (a build that was killed) or whose ``bin/python`` no longer resolves (its interpreter moved or
vanished) is deleted and rebuilt under the lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

from slurm.errors import CommandError, DependencyError
from slurm.packaging.builds import wheel_content_hash
from slurm.packaging.interpreter import NodeInterpreter, probe_interpreter
from slurm.packaging.requirements import normalize_name, requirement_name
from slurm.packaging.resolver import Pin, resolve
from slurm.packaging.wheelhouse import fetch_wheels
from slurm.transports.base import Transport

logger = logging.getLogger("slurm.packaging")

#: ``install_from`` values: how the nodes get the dependency wheels.
INSTALL_SOURCES = ("auto", "index", "wheelhouse")
#: Bump when the way a venv is built changes, so old venvs are not reused.
ENV_LAYOUT = 2
#: Seconds a submitter waits for another one that is building the same venv.
LOCK_WAIT = 900
#: Last line of the build script: it built the venv, or found it ready once it had the lock.
BUILT, READY = "slurm-sdk-env:built", "slurm-sdk-env:ready"
#: Seconds the cluster gets to answer "can you reach your package index?" (auto mode, cold path only).
INDEX_PROBE_TIMEOUT = 5
#: A project wheel with at most this many files is unpacked here and sent as its layer in one command; a
#: bigger one is installed by pip on the cluster (the upload checks each file's size with its own ``wc``).
UNPACK_LIMIT = 100


@dataclass(frozen=True)
class EnvironmentSpec:
    """Everything a venv is made of. ``wheels`` are built on this host and uploaded."""

    python: str
    node: NodeInterpreter
    pins: tuple[Pin, ...]
    wheels: tuple[Path, ...] = ()

    def key(self) -> str:
        return environment_key(self.node, self.pins, wheel_content_hash(*self.wheels) if self.wheels else "")


def environment_key(node: NodeInterpreter, pins: tuple[Pin, ...] | list[Pin], wheels_digest: str) -> str:
    """16 hex digits over the interpreter's identity, the pinned wheels (name, version, file) and the
    built wheels' content. Pin order does not matter."""
    material = {
        "layout": ENV_LAYOUT,
        "interpreter": node.identity(),
        "wheels": wheels_digest,
        "pins": sorted(f"{pin.spec} {pin.filename}" for pin in pins),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Environment:
    """A venv on the cluster, as ``ensure_environment`` left it."""

    path: str
    built: bool  # False: an existing venv was reused
    install_from: str | None  # "index" or "wheelhouse" when built

    @property
    def python(self) -> str:
        return self.path + "/bin/python"


def health_test(env: str) -> str:
    """Shell test that holds for a complete venv whose interpreter still resolves (``-x`` follows symlinks)."""
    q = shlex.quote
    return f"test -f {q(env + '/.ready')} && test -x {q(env + '/bin/python')}"


def is_healthy(transport: Transport, env: str, also: str = "true") -> bool:
    """One command: ``env`` is whole (and the shell test ``also`` holds)."""
    return (
        transport.run(f"{health_test(env)} && {also} && echo healthy || echo broken").stdout.strip()
        == "healthy"
    )


def ensure_environment(
    transport: Transport, spec: EnvironmentSpec, cache_root: str, install_from: str
) -> Environment:
    """The venv for ``spec``: reused when healthy (one command), otherwise built once under a lock."""
    key = spec.key()
    env = f"{cache_root}/envs/{key}"
    if is_healthy(transport, env):
        return Environment(env, built=False, install_from=None)
    wheelhouse = f"{cache_root}/wheelhouse"
    missing = missing_from_wheelhouse(transport, spec.pins, wheelhouse)
    source = _install_source(transport, spec, install_from, missing)
    logger.info(
        "building environment %s on the cluster (%d dependencies, %d fetched from %s)",
        env,
        len(spec.pins),
        len(missing),
        source,
    )
    wheel_dir = f"{cache_root}/wheels/{key}"
    local = [f"{wheel_dir}/{wheel.name}" for wheel in spec.wheels]
    for path, target in zip(spec.wheels, local, strict=True):
        transport.put(str(path), target)
    if source == "wheelhouse":
        _upload(transport, missing, wheelhouse)
    downloads = [pin.spec for pin in missing] if source == "index" else []
    script = build_script(
        spec.python, env, wheelhouse, downloads, [*(pin.spec for pin in spec.pins), *local], spec.node.has_pip
    )
    try:
        outcome = transport.run(script, timeout=LOCK_WAIT + 1800).stdout.split()
    except CommandError as exc:
        fix = (
            "set the packaging option install_from: wheelhouse (this host downloads the wheels and uploads "
            "them) if the nodes cannot reach a package index"
            if source == "index"
            else "check the free space and permissions under the cache root on the cluster"
        )
        raise DependencyError(
            f"building the environment {env} on the cluster failed "
            f"(dependencies from the {source}):\n{(exc.stderr or exc.stdout).strip()[-1500:]}\n"
            f"Fix: {fix}. Nothing was submitted."
        ) from exc
    built = outcome[-1:] == [BUILT]  # else another submitter built it while this one waited for the lock
    return Environment(env, built=built, install_from=source if built else None)


def missing_from_wheelhouse(transport: Transport, pins: tuple[Pin, ...], wheelhouse: str) -> list[Pin]:
    """The pins whose wheel file is not in the cluster's wheelhouse yet (one command; creates it)."""
    q = shlex.quote
    listing = transport.run(
        f"mkdir -p {q(wheelhouse)} && cd {q(wheelhouse)} && for f in "
        + " ".join(q(pin.filename) for pin in pins)
        + '; do [ -f "$f" ] || echo "$f"; done'
    )
    absent = set(listing.stdout.split())
    return [pin for pin in pins if pin.filename in absent]


def _install_source(
    transport: Transport, spec: EnvironmentSpec, install_from: str, missing: list[Pin]
) -> str:
    if install_from != "auto":
        return install_from
    if not missing:
        return "wheelhouse"  # every wheel is on the cluster already: no index, no probe
    if not spec.node.has_pip:
        return "wheelhouse"  # nothing to probe the index with before the venv exists
    return "index" if index_reachable(transport, spec.python, missing[0].name) else "wheelhouse"


def index_reachable(transport: Transport, python: str, package: str) -> bool:
    """Whether the cluster's pip (with its own pip.conf: index, proxy, CA) can list ``package``, asked once
    with a short timeout."""
    q = shlex.quote
    probe = (
        f"timeout {INDEX_PROBE_TIMEOUT * 3} {q(python)} -m pip index versions {q(package)} "
        f"--timeout {INDEX_PROBE_TIMEOUT} --retries 0 --disable-pip-version-check >/dev/null 2>&1 "
        "&& echo reachable || echo unreachable"
    )
    reachable = transport.run(probe, timeout=INDEX_PROBE_TIMEOUT * 6).stdout.strip() == "reachable"
    logger.info("the cluster %s a package index", "reaches" if reachable else "does not reach")
    return reachable


def _upload(transport: Transport, missing: list[Pin], wheelhouse: str) -> None:
    """Download the missing wheels here (cached) and upload them into the cluster's wheelhouse."""
    for path in fetch_wheels(missing):
        transport.put(str(path), f"{wheelhouse}/{path.name}")


def _pip(python: str, env: str, base_has_pip: bool) -> str:
    """pip for ``env``: the base interpreter's (the venv has none: seconds saved), else the venv's own."""
    q = shlex.quote
    return (
        f"{q(python)} -m pip --python {q(env + '/bin/python')}"
        if base_has_pip
        else f"{q(env + '/bin/python')} -m pip"
    )


def locked_build(target: str, healthy: str, build: list[str]) -> str:
    """Shell that builds ``target`` in place under ``flock`` on ``<target>.lock``: the first submitter
    builds, the others wait and find it ready (``healthy`` holds). Building in place (not in a temp dir
    renamed afterwards) keeps a venv's scripts' shebangs right; ``build`` ends by writing ``.ready``, so an
    interrupted build is recognised and redone. What it built is made private (no group or other bits)
    before. Prints ``BUILT`` or ``READY`` last."""
    q = shlex.quote
    lock = target + ".lock"
    return "\n".join(
        [
            "set -e",
            f"mkdir -p {q(posixpath.dirname(target))}",
            f"exec 9>{q(lock)}",
            f"flock -w {LOCK_WAIT} 9 || {{ echo 'waited {LOCK_WAIT} s for {lock}: another submission is still "
            "building it' >&2; exit 75; }",
            f"if {healthy}; then echo {READY}; exit 0; fi",
            f"rm -rf {q(target)}",
            *build,
            # The umask (PRIVATE_UMASK) is not enough: venv and pip set modes of their own (0644
            # activate scripts, 0755 console scripts and extension modules). Private to the user, whose
            # jobs are all that use it.
            f"chmod -R go-rwx {q(target)}",
            f"touch {q(target + '/.ready')}",
            f"echo {BUILT}",
        ]
    )


def build_script(
    python: str, env: str, wheelhouse: str, downloads: list[str], installs: list[str], base_has_pip: bool
) -> str:
    """The venv ``env``, built under its lock (``locked_build``). ``downloads`` (index path) are fetched by
    the node's pip into the cluster's wheelhouse first, so the next venv that needs them finds them there;
    ``installs`` (exact pins, complete, hence ``--no-deps``, and wheel files) are then installed from the
    wheelhouse only."""
    q = shlex.quote
    venv = "--without-pip --system-site-packages" if base_has_pip else "--system-site-packages"
    pip = _pip(python, env, base_has_pip)
    quiet = "--quiet --no-input --disable-pip-version-check"
    download = (
        [
            f"dl=$(mktemp -d {q(wheelhouse + '/.download-XXXXXX')})",
            "trap 'rm -rf \"$dl\"' EXIT",
            f'{pip} download {quiet} --no-deps --only-binary=:all: -d "$dl" ' + " ".join(map(q, downloads)),
            f'for f in "$dl"/*; do mv -n "$f" {q(wheelhouse)}/; done',  # each rename is atomic
        ]
        if downloads
        else []
    )
    return locked_build(
        env,
        health_test(env),
        [
            f"mkdir -p {q(wheelhouse)}",
            f"{q(python)} -m venv {venv} {q(env)}",
            *download,
            *(
                [
                    f"{pip} install {quiet} --no-deps --no-index --find-links {q(wheelhouse)} "
                    + " ".join(map(q, installs))
                ]
                if installs
                else []
            ),  # a project without dependencies still gets its (empty) venv
        ],
    )


def project_layer_path(cache_root: str, env: str, wheel: Path) -> str:
    """Where ``wheel`` is unpacked for the venv ``env``: keyed by both, so a new venv gets a new layer."""
    digest = hashlib.sha256(f"{env}\0{wheel_content_hash(wheel)}".encode()).hexdigest()[:16]
    return f"{cache_root}/projects/{digest}"


def ready_test(layer: str) -> str:
    return f"test -f {shlex.quote(layer + '/.ready')}"


def env_and_layer_ready(transport: Transport, env: str, layer: str) -> tuple[bool, bool]:
    """One command: whether the venv ``env`` is whole, and whether the project layer ``layer`` is ready (an
    edit finds the venv and makes only the layer)."""
    out = transport.run(
        f"{{ {health_test(env)} && echo env:ok || echo env:broken; }}; "
        f"{{ {ready_test(layer)} && echo layer:ok || echo layer:absent; }}"
    ).stdout.split()
    return "env:ok" in out, "layer:ok" in out


def ensure_project_layer(
    transport: Transport, spec: EnvironmentSpec, env: str, wheel: Path, cache_root: str
) -> Environment:
    """The project's ``wheel`` unpacked beside the venv ``env`` (reused when ready, else built under a lock)."""
    layer = project_layer_path(cache_root, env, wheel)
    if transport.run(f"{ready_test(layer)} && echo ready || echo absent").stdout.strip() == "ready":
        return Environment(layer, built=False, install_from=None)
    return build_project_layer(transport, spec, env, wheel, cache_root)


def build_project_layer(
    transport: Transport, spec: EnvironmentSpec, env: str, wheel: Path, cache_root: str
) -> Environment:
    """Make the project layer of ``wheel`` for the venv ``env``, known not to be ready."""
    layer = project_layer_path(cache_root, env, wheel)
    files = unpacked(wheel)
    if files is not None:
        # The edit-run loop's path: one command, no pip and no Python started on the cluster. The layer
        # appears whole or not at all (write_files); ".ready" comes last for transports that write in order.
        transport.write_files(layer, {**files, ".ready": (b"", 0o600)})
        return Environment(layer, built=True, install_from=None)
    remote = f"{cache_root}/wheels/{posixpath.basename(layer)}/{wheel.name}"
    transport.put(str(wheel), remote)
    pip = _pip(spec.python, env, spec.node.has_pip)
    script = locked_build(
        layer,
        ready_test(layer),
        [
            f"{pip} install --quiet --no-input --disable-pip-version-check --no-deps --no-index "
            f"--target {shlex.quote(layer)} {shlex.quote(remote)}"
        ],
    )
    built = transport.run(script, timeout=LOCK_WAIT + 600).stdout.split()[-1:] == [BUILT]
    return Environment(layer, built=built, install_from=None)


def unpacked(wheel: Path) -> dict[str, tuple[bytes, int]] | None:
    """The files ``pip install --target`` puts in a layer for a pure wheel (its members as they are, private
    to the user), or None when pip must install it: a ``.data`` directory (scripts, headers and data files
    go elsewhere), a name that is not a plain relative path, or more than ``UNPACK_LIMIT`` files."""
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
        parts = [name.split("/") for name in names]
        if len(names) > UNPACK_LIMIT or any(
            name.startswith("/") or ".." in path or path[0].endswith(".data") or "\\" in name
            for name, path in zip(names, parts, strict=True)
        ):
            return None
        return {name: (archive.read(name), 0o600) for name in names}


def environment_spec(
    transport: Transport,
    *,
    python: str,
    requirements: list[str],
    source: str,
    wheels: list[Path],
    resolver: str,
) -> EnvironmentSpec:
    """Probe the cluster's ``python`` and resolve ``requirements`` (declared in ``source``) for it on this
    host: what the venv holding them and ``wheels`` is made of. Fails before anything is submitted."""
    node = probe_interpreter(transport, python)
    pins = resolve(requirements, node, resolver, source=source)
    return EnvironmentSpec(python, node, tuple(pins), tuple(wheels))


def without_built(requirements: list[str], wheels: list[Path]) -> list[str]:
    """Requirements minus those the shipped wheels satisfy (a project that depends on ``slurm-sdk``, which
    ``include_sdk`` ships), deduplicated in order."""
    built = {normalize_name(wheel.name.split("-", 1)[0]) for wheel in wheels}
    return list(dict.fromkeys(r.strip() for r in requirements if requirement_name(r) not in built))
