"""SSHTransport against a real OpenSSH server started on 127.0.0.1 for this module (skipped without sshd)."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from slurm.backends.slurm import SSHBackend
from slurm.errors import CommandError, ConfigError, SSHError
from slurm.transports.ssh import SSHTransport

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(
    not os.path.exists(SSHD) or not shutil.which("ssh-keygen"),
    reason="needs OpenSSH server (apt-get install -y openssh-server)",
)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (path.parent / (path.name + ".pub")).read_text().strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, deadline_s: float = 10) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not start listening")


class SSHD_:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.host_pub = _keygen(root / "host_ed25519")
        self.client_pub = _keygen(root / "client_ed25519")
        self.client_key = str(root / "client_ed25519")
        self.other_key = str(root / "other_ed25519")
        _keygen(root / "other_ed25519")
        (root / "authorized_keys").write_text(self.client_pub + "\n")
        self.port = _free_port()
        self.user = getpass.getuser()
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_ed25519'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
            f"StrictModes no\nUsePAM no\nPidFile {root / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
            "MaxSessions 50\nMaxStartups 50\n"
            # Sessions skip the host user's ~/.bashrc: bash sources it in a shell that sshd starts unless
            # SHLVL says the shell is nested. The fast tier should neither depend on a developer's dotfiles
            # nor pay for them (a pyenv init there cost 0.15 CPU-s per command, ~10 s per run); a login
            # node's own dotfiles are the integration tier's.
            "SetEnv SHLVL=1\n"
        )
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir sshd insists on
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
        _wait_listening(self.port, self.proc)

    def transport(self, **kw) -> SSHTransport:
        options = dict(user=self.user, key_filename=self.client_key, known_host_key=self.host_pub)
        return SSHTransport("127.0.0.1", self.port, **(options | kw))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_run_collects_output_status_and_env(shared_transport):
    result = shared_transport.run(
        'echo "out $GREETING"; echo err >&2; exit 3', env={"GREETING": "a b'c"}, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, "out a b'c\n", "err\n")
    with pytest.raises(CommandError) as info:
        shared_transport.run("echo nope >&2; false")
    assert info.value.returncode == 1 and "nope" in str(info.value)


def test_large_stdout_and_stderr_do_not_deadlock(shared_transport):
    result = shared_transport.run("head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2; echo done >&2")
    assert len(result.stdout) == 3_000_000 and result.stderr.endswith("done\n")


def test_file_operations(shared_transport, tmp_path):
    base = str(tmp_path / "remote")
    shared_transport.makedirs(base + "/a/b")
    shared_transport.makedirs(base + "/a/b")  # idempotent
    assert shared_transport.exists(base + "/a/b") and not shared_transport.exists(base + "/zzz")
    shared_transport.write_bytes(base + "/new/dir/f.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    assert shared_transport.read_bytes(base + "/new/dir/f.sh") == b"#!/bin/sh\necho hi\n"
    assert os.stat(base + "/new/dir/f.sh").st_mode & 0o777 == 0o700  # private: the owner's bits only
    assert os.listdir(base + "/new/dir") == ["f.sh"]  # no temp file left behind
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(100_000))
    local.chmod(0o750)
    shared_transport.put(str(local), base + "/put/x.bin")
    assert shared_transport.read_bytes(base + "/put/x.bin") == local.read_bytes()
    assert os.stat(base + "/put/x.bin").st_mode & 0o777 == 0o700
    assert shared_transport.home() == os.path.expanduser("~")
    with pytest.raises(FileNotFoundError):
        shared_transport.read_bytes(base + "/missing")


@pytest.mark.parametrize("kind", ["ssh", "host"])
def test_everything_a_transport_writes_is_private_to_the_user(kind, shared_transport, tmp_path):
    """0700 directories, 0600 files (an executable: 0700), whichever way they are made: SFTP (whose server
    would apply its own umask, 022 here), commands (run under umask 077, so jobs submitted through them
    too), the tar of a job directory; the same on this host (the "slurm" backend's transport)."""
    from slurm.transports.host import HostTransport

    used = shared_transport if kind == "ssh" else HostTransport()
    base = tmp_path / "written"
    local = tmp_path / "local.sh"
    local.write_bytes(b"#!/bin/sh\n")
    local.chmod(0o755)
    used.makedirs(f"{base}/made/deep")
    used.write_bytes(f"{base}/bytes/f", b"data")
    used.write_bytes(f"{base}/bytes/script", b"#!/bin/sh\n", mode=0o755)
    used.put(str(local), f"{base}/put/local.sh")
    used.write_files(f"{base}/job", {"payload": (b"p", 0o644), "job.sh": (b"#!/bin/sh\n", 0o755)})
    used.run(f"mkdir -p {base}/cmd/sub && echo x > {base}/cmd/sub/f")
    modes = {str(path.relative_to(base)): path.stat().st_mode & 0o777 for path in base.rglob("*")}
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o077} == {}
    assert modes["put/local.sh"] == modes["bytes/script"] == modes["job/job.sh"] == 0o700
    assert modes["bytes/f"] == modes["job/payload"] == modes["cmd/sub/f"] == 0o600
    assert modes["made"] == modes["made/deep"] == modes["cmd/sub"] == 0o700


def test_a_built_environment_is_private_whatever_modes_its_tools_set(tmp_path):
    """venv and pip chmod files themselves (0644 activate scripts, 0755 extension modules), past any
    umask: a build under ``locked_build`` ends with no group or other bit anywhere."""
    from slurm.packaging.environment import locked_build
    from slurm.transports.host import HostTransport

    target = tmp_path / "envs" / "key"
    build = [f"mkdir -p {target}/bin", f"echo x > {target}/bin/tool", f"chmod 755 {target} {target}/bin/tool"]
    HostTransport().run(locked_build(str(target), "false", build))
    modes = {str(p.relative_to(target)): oct(p.stat().st_mode & 0o777) for p in [target, *target.rglob("*")]}
    assert modes == {".": "0o700", "bin": "0o700", "bin/tool": "0o700", ".ready": "0o600"}


def test_read_existing_fetches_many_files_in_one_stream(shared_transport, memory_tmp_path, monkeypatch):
    results = memory_tmp_path / "results"
    results.mkdir()
    paths = [str(results / f"result-{i}.pkl") for i in range(3000)]
    for i, path in enumerate(paths[:-1]):
        Path(path).write_bytes(os.urandom(i % 50) + b"\0\n" * (i % 3))  # binary, some empty
    big = str(results / "big.pkl")
    Path(big).write_bytes(os.urandom(3_000_000))  # more than any SSH window or tar block
    commands = []
    original = shared_transport._exec
    monkeypatch.setattr(
        shared_transport,
        "_exec",
        lambda command, *a, **kw: commands.append(command) or original(command, *a, **kw),
    )
    found = shared_transport.read_existing([*paths, big])
    expected = {path: Path(path).read_bytes() for path in [*paths[:-1], big]}
    assert found.keys() == expected.keys() and found == expected  # the missing one is left out
    assert len(commands) == 1  # paths on stdin: no chunking, however many
    assert shared_transport.read_existing([]) == {} and shared_transport.read_existing(paths[-1:]) == {}


def test_result_files_of_many_directories_are_fetched_in_one_command(shared_transport, tmp_path, monkeypatch):
    wanted = [str(tmp_path / f"job {d}" / f"result-{i}.pkl") for d in range(3) for i in range(4)]
    for path in wanted[::2]:
        Path(path).parent.mkdir(exist_ok=True)
        Path(path).write_bytes(b"x")
    (tmp_path / "job 0" / "slurm-1.out").write_text("not asked for")
    (tmp_path / "job*").mkdir()  # a glob character in a name matches only itself
    exchanges = _recorded_exchanges(shared_transport, monkeypatch)
    found = shared_transport.read_existing([*wanted, str(tmp_path / "missing" / "result-0.pkl")])
    assert found == dict.fromkeys(wanted[::2], b"x")
    assert len(exchanges) == 1 and "slurm-1.out" not in exchanges[0].command


class _Exchange(NamedTuple):
    command: str
    sent: bytes
    answer: object


def _recorded_exchanges(transport, monkeypatch) -> list[_Exchange]:
    """Every command the transport runs, with what it sent on stdin and what came back."""
    exchanges: list[_Exchange] = []
    original = transport._exec

    def recorded(command, timeout, consume, stdin=None, **options):
        code, answer, stderr = original(command, timeout, consume, stdin=stdin, **options)
        exchanges.append(_Exchange(command, stdin or b"", answer))
        return code, answer, stderr

    monkeypatch.setattr(transport, "_exec", recorded)
    return exchanges


def test_one_connection_is_reused(shared_transport):
    shared_transport.run("true")
    client = shared_transport._client
    shared_transport.exists("/")
    shared_transport.run("true")
    assert shared_transport._client is client


def test_reconnects_after_transport_closed(transport):
    transport.run("true")
    transport._client.get_transport().close()
    assert transport.run("echo back").stdout == "back\n"
    transport._client.get_transport().close()
    assert transport.exists("/")


def test_reconnects_after_socket_dropped(transport):
    transport.exists("/")
    dropped = transport._client
    dropped.get_transport().sock.shutdown(socket.SHUT_RDWR)
    assert transport.exists("/")
    assert transport._client is not dropped
    dropped = transport._client
    dropped.get_transport().sock.shutdown(socket.SHUT_RDWR)
    assert transport.run("echo back").stdout == "back\n"
    assert transport._client is not dropped


def test_threads_share_the_connection(shared_transport):
    results: list[str] = []

    def poll(i: int) -> None:
        results.append(shared_transport.run(f"echo {i}").stdout.strip())
        shared_transport.exists("/")

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=int) == [str(i) for i in range(8)]


def test_refused_key_names_user_and_key(sshd):
    t = sshd.transport(key_filename=sshd.other_key)
    with pytest.raises(SSHError, match="refused the key") as info:
        t.run("true")
    assert sshd.other_key in str(info.value) and sshd.user in str(info.value)


def test_connection_refused_says_so():
    t = SSHTransport("127.0.0.1", _free_port(), key_filename=__file__)
    with pytest.raises(SSHError, match=r"127\.0\.0\.1:\d+ refused; is the cluster up"):
        t.run("true")


def test_host_key_mismatch_is_refused(sshd):
    wrong = (sshd.root / "other_ed25519.pub").read_text()
    with pytest.raises(SSHError, match="host key mismatch"):
        sshd.transport(known_host_key=wrong).run("true")


def test_unknown_host_key_refused_unless_trusted_then_pinned(sshd):
    with pytest.raises(SSHError, match="unknown host key"):
        sshd.transport(known_host_key=None).run("true")
    trusting = sshd.transport(known_host_key=None, trust_unknown_host=True)
    assert trusting.run("echo ok").stdout == "ok\n"
    assert trusting.known_host_key.get_base64() == sshd.host_pub.split()[1]
    # The key seen first is pinned: a reconnect to a server with another key is refused.
    other = (sshd.root / "other_ed25519.pub").read_text()
    trusting.known_host_key = SSHTransport("x", key_filename="k", known_host_key=other).known_host_key
    trusting._client.get_transport().close()
    with pytest.raises(SSHError, match="host key mismatch"):
        trusting.run("true")
    trusting.close()


def test_missing_key_file_and_bad_host_key_are_config_errors(sshd):
    with pytest.raises(ConfigError, match="key_filename"):
        SSHTransport("127.0.0.1", sshd.port)
    with pytest.raises(ConfigError, match="known_host_key"):
        sshd.transport(known_host_key="ssh-ed25519")
    with pytest.raises(ConfigError, match="invalid environment variable"):
        sshd.transport().run("true", env={"A; rm -rf /": "x"})


def test_ssh_backend_builds_slurm_backend_over_ssh(sshd):
    backend = SSHBackend(
        "127.0.0.1", sshd.port, sshd.user, sshd.client_key, sshd.host_pub, job_ids_per_query=7
    )
    assert backend.type_name == "slurm" and backend.job_ids_per_query == 7
    assert backend.transport.run("echo $0").stdout.strip() == "sh"
    backend.close()


def test_connection_lost_mid_command_is_a_transient_drop_not_an_exit_code(transport, tmp_path):
    """The command ran (its marker exists) but the session died before an exit status came back: that
    is a dropped connection, never "exit code -1" (which made a queued sbatch look like a failure)."""
    marker = tmp_path / "ran"
    # $PPID of `sh -c` is this session's sshd process: killing it closes the channel with no exit status.
    with pytest.raises(SSHError, match="dropped while running") as caught:
        transport.run(f"touch {marker}; kill -9 $PPID; sleep 5")
    assert caught.value.transient
    assert marker.exists()
    assert transport.run("echo back").stdout == "back\n"  # the next command reconnects


def test_write_files_makes_a_whole_directory_in_one_command(shared_transport, tmp_path, monkeypatch):
    commands = []
    original = shared_transport._exec
    monkeypatch.setattr(
        shared_transport,
        "_exec",
        lambda command, *a, **kw: commands.append(command) or original(command, *a, **kw),
    )
    payload = os.urandom(300_000)
    target = tmp_path / "root" / "job dir"
    shared_transport.write_files(
        str(target), {"payload.pkl": (payload, 0o600), "job.sh": (b"#!/bin/sh\n", 0o700)}
    )
    assert len(commands) == 1
    assert (target / "payload.pkl").read_bytes() == payload and (
        target / "job.sh"
    ).read_bytes() == b"#!/bin/sh\n"
    assert os.stat(target / "job.sh").st_mode & 0o777 == 0o700 and os.stat(target).st_mode & 0o777 == 0o700
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["job dir"]  # no temporary left
    with pytest.raises(CommandError):  # an existing directory is never merged into
        shared_transport.write_files(str(target), {"x": (b"", 0o600)})
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["job dir"]


def test_write_files_sends_a_large_payload_intact_copying_each_byte_about_once(
    shared_transport, tmp_path, monkeypatch
):
    # paramiko's sendall re-slices the unsent rest after every ~32 KB packet: O(n²) bytes copied, which
    # made a 100 MB payload take most of an hour. Count what reaches Channel.send instead of timing it.
    import paramiko

    handed_over = []
    original = paramiko.Channel.send
    monkeypatch.setattr(
        paramiko.Channel, "send", lambda self, data: handed_over.append(len(data)) or original(self, data)
    )
    payload = os.urandom(4_000_000)
    target = tmp_path / "big"
    shared_transport.write_files(str(target), {"payload.pkl": (payload, 0o600)})
    assert (target / "payload.pkl").read_bytes() == payload
    assert sum(handed_over) <= 3 * len(payload), f"{sum(handed_over):,} bytes handed to send"


def test_the_connection_does_not_delay_small_packets(shared_transport):
    # With Nagle's algorithm on, each command's last small packet waited for the peer's delayed ACK
    # (~40-50 ms a command on the dev cluster); OpenSSH's client turns it off too.
    shared_transport.run("true")
    sock = shared_transport._connected().get_transport().sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_long_lived_client_follows_its_rewritten_config_file_on_reconnect(sshd, tmp_path):
    """``Cluster.from_env``'s client reads its config file again before it reconnects, when the file
    changed: rewritten for a stack started anew (another port, another key), it connects there."""
    import yaml

    from slurm import Cluster

    config = tmp_path / "slurm.yaml"
    copy = tmp_path / "copied_key"
    shutil.copy(sshd.client_key, copy)

    def write(port: int, key: str, stamp: int) -> None:
        backend = dict(type="ssh", host="127.0.0.1", port=port, user=sshd.user, key_filename=key)
        config.write_text(yaml.safe_dump({"backend": backend | {"known_host_key": sshd.host_pub}}))
        os.utime(config, ns=(stamp, stamp))  # a distinct modification time, however fast the rewrite

    write(sshd.port, sshd.client_key, 1_000_000_000)
    with Cluster.from_env(str(config)) as cluster:
        transport = cluster.backend.transport
        assert transport.run("echo one").stdout == "one\n"
        nowhere = _free_port()
        write(nowhere, sshd.client_key, 2_000_000_000)
        assert transport.run("echo still").stdout == "still\n"  # the live connection is kept
        transport.close()  # dropped: the next command reconnects, to what the file says now
        with pytest.raises(SSHError, match=f"127.0.0.1:{nowhere} refused"):
            transport.run("echo never")
        write(sshd.port, str(copy), 3_000_000_000)
        assert transport.run("echo two").stdout == "two\n"
        assert (transport.port, transport.key_filename) == (sshd.port, str(copy))


def test_a_command_interrupted_by_ctrl_c_leaves_the_next_one_a_fresh_connection(transport, monkeypatch):
    """Ctrl-C inside paramiko may leave its locks or stream half-way: the interrupted connection is dropped,
    so what runs next (an interrupted map's scancel) does not wait on it for good."""
    from slurm.transports import ssh_channel

    transport.run("true")
    interrupted = transport._client
    read_all = ssh_channel.read_all

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ssh_channel, "read_all", interrupt)
    with pytest.raises(KeyboardInterrupt):
        transport.run("sleep 1")
    monkeypatch.setattr(ssh_channel, "read_all", read_all)
    assert transport.run("echo back").stdout == "back\n"
    assert transport._client is not interrupted


@pytest.mark.parametrize(
    "connect",
    [
        "from slurm.transports.ssh import SSHTransport\n"
        "SSHTransport('127.0.0.1', port=PORT, key_filename=KEY, connect_timeout=5).run('true')",
        "from slurm_dev_cluster import ssh\n"
        "ssh.connect('127.0.0.1', PORT, 'u', KEY, 'ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIEPlmvhYJP1WvjKnqq8EfLhfjyRLnmmHP1ZDSLz5djAH', timeout=5)",
    ],
    ids=["sdk", "kit"],
)
def test_a_server_that_closes_before_its_banner_prints_no_paramiko_traceback(tmp_path, connect):
    """An sshd still starting accepts and closes: the caller gets an error, and the terminal no traceback
    from paramiko's thread (logging's last resort, in a process that configured no logging)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def close_each() -> None:
        for _ in range(3):
            conn, _ = listener.accept()
            conn.close()

    threading.Thread(target=close_each, daemon=True).start()
    key = tmp_path / "id"
    key.write_text("not read: the handshake ends first\n")
    code = connect.replace("PORT", str(port)).replace("KEY", repr(str(key)))
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            f"try:\n{textwrap.indent(code, '    ')}\nexcept Exception as e:\n    print(type(e).__name__)\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    listener.close()
    assert run.stdout.strip() in ("SSHError", "SSHException", "ConnectionError"), run
    assert "Traceback" not in run.stderr and "protocol banner" not in run.stderr, run.stderr
