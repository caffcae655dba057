"""A 200 MB result over real SSH without the dev cluster: this host's own sshd on 127.0.0.1 (the one
``tests/fast/test_ssh_transport.py`` starts), the SDK's transport and result decoding, each read in a
fresh process so its peak RSS is its own.

    python -m bench.loopback_results [ROUNDS]     # prints one JSON line per read

single: one 200 MB result file through ``read_existing`` (one tar stream); map: 200 files of 1 MB the
same way (the map path); sftp-old: the single file through SFTP the way the SDK read it before results came back as one stream
(``handle.read()`` without prefetch: one round trip per 32 KB).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOTAL, PARTS = 200_000_000, 200


def _peak_and_current_mb() -> tuple[float, float]:
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("VmHWM", "VmRSS"):  # "VmHWM:  123456 kB": peak since exec, and now
                values[name] = int(rest.split()[0]) / 1024
    return values["VmHWM"], values["VmRSS"]


def child(mode: str, root: str, port: str, user: str, key: str, host_key: str) -> None:
    from slurm.serialization import Outcome
    from slurm.transports.ssh import SSHTransport

    transport = SSHTransport("127.0.0.1", int(port), user=user, key_filename=key, known_host_key=host_key)
    transport.run("true")
    base = _peak_and_current_mb()[1]
    started = time.perf_counter()
    if mode == "sftp-old":

        def read(sftp: object) -> bytes:
            with sftp.open(f"{root}/single/result-0.pkl", "rb") as handle:  # type: ignore[attr-defined]
                return bytes(handle.read())

        values = [Outcome.load(transport._sftp_call(read)).value("single")]
    else:
        paths = (
            [f"{root}/single/result-0.pkl"]
            if mode == "single"
            else [f"{root}/map/result-{i}.pkl" for i in range(PARTS)]
        )
        found = transport.read_existing(paths)
        values = [Outcome.load(found[path]).value(path) for path in paths]
    seconds = time.perf_counter() - started
    if sum(map(len, values)) != TOTAL:
        raise SystemExit(f"{mode}: wrong size")
    peak = _peak_and_current_mb()[0]
    print(
        json.dumps(
            {
                "mode": mode,
                "seconds": round(seconds, 2),
                "rss_growth_x": round((peak - base) * 2**20 / TOTAL, 2),
            }
        )
    )


def main(rounds: int) -> None:
    from slurm.node.outcome import dump_result
    from tests.fast.test_ssh_transport import SSHD_

    root = Path(tempfile.mkdtemp(prefix="loopback-results-"))
    (root / "single").mkdir()
    (root / "map").mkdir()
    (root / "single" / "result-0.pkl").write_bytes(dump_result(b"\x01" * TOTAL))
    for i in range(PARTS):
        (root / "map" / f"result-{i}.pkl").write_bytes(dump_result(b"\x01" * (TOTAL // PARTS)))
    server = SSHD_(Path(tempfile.mkdtemp(prefix="loopback-sshd-")))
    try:
        for _ in range(rounds):
            for mode in ("single", "map", "sftp-old"):
                args = [str(root), str(server.port), server.user, server.client_key, server.host_pub]
                command = [sys.executable, "-m", "bench.loopback_results", "--child", mode, *args]
                print(
                    subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout.strip(),
                    flush=True,
                )
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:8])
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
