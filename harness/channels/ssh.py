"""SSH channel to the guest's dropbear, through QEMU's user-network port forward."""

from __future__ import annotations

import base64
import io
import select
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import ChannelError, CommandFailed, CommandResult, command_text


def new_client_key() -> paramiko.Ed25519Key:
    """A fresh ed25519 key for one run (paramiko cannot generate ed25519 keys itself)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))


def new_dropbear_host_key(workdir: Path) -> tuple[bytes, str]:
    """A fresh dropbear ed25519 host key file and its public blob, made on the host (the same
    dropbear package the guest runs; generating it natively saves guest boot time)."""
    path = workdir / "dropbear_ed25519_host_key"
    path.unlink(missing_ok=True)
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(path)], check=True,
                   capture_output=True)
    out = subprocess.run(["dropbearkey", "-y", "-f", str(path)], check=True,
                         capture_output=True, text=True).stdout
    blob = next(host_key_blob(line) for line in out.splitlines() if line.startswith("ssh-"))
    data = path.read_bytes()
    path.unlink()
    assert blob is not None
    return data, blob


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Accept exactly the host key the guest printed on its console, nothing else."""

    def __init__(self, expected_b64: str | None) -> None:
        self.expected = expected_b64

    def missing_host_key(self, client, hostname, key) -> None:
        if self.expected is None:
            return
        if key.get_base64() != self.expected:
            raise paramiko.SSHException(
                f"guest host key mismatch: console said {self.expected[:16]}..., "
                f"server offered {key.get_base64()[:16]}..."
            )


class SSHChannel:
    name = "ssh"

    def __init__(self, host: str, port: int, key: paramiko.PKey, host_key: str | None = None,
                 user: str = "root") -> None:
        self.host = host
        self.port = port
        self.key = key
        self.host_key = host_key
        self.user = user
        self.client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self._owner: int | None = None  # the thread that connected uses self.client
        self._local = threading.local()  # other threads' own connections
        self._others: list[paramiko.SSHClient] = []
        self.retries = 0  # exec attempts that failed before the command ran (then retried)
        self.reconnects = 0

    @property
    def authorized_key(self) -> str:
        """The base64 blob of the public key, for the guest's authorized_keys."""
        return self.key.get_base64()

    def connect(self, timeout: float = 20.0) -> None:
        """Connect, retrying while the guest's port is not answering yet, until `timeout`.
        This thread uses this connection; other threads get their own on first use."""
        self.client = self._new_client(timeout)
        self._owner = threading.get_ident()

    def _new_client(self, timeout: float) -> paramiko.SSHClient:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(_PinnedHostKey(self.host_key))
            try:
                sock = socket.create_connection((self.host, self.port),
                                                timeout=max(1.0, deadline - time.monotonic()))
                # Without TCP_NODELAY, Nagle and delayed ACKs cost ~40 ms per round trip of the
                # handshake (measured: 96 ms -> 10 ms against a local dropbear).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.connect(
                    self.host, port=self.port, username=self.user, pkey=self.key, sock=sock,
                    allow_agent=False, look_for_keys=False,
                    timeout=max(1.0, deadline - time.monotonic()),
                    banner_timeout=max(1.0, deadline - time.monotonic()),
                    auth_timeout=10,
                )
                transport = client.get_transport()
                assert transport is not None
                transport.set_keepalive(5)
                return client
            except (paramiko.SSHException, OSError, EOFError) as exc:
                last = exc
                client.close()
                time.sleep(0.05)
        raise ChannelError(f"SSH to {self.host}:{self.port} failed within {timeout:.0f}s: {last}")

    def run(self, cmd: str | Sequence[str], timeout: float | None = 60.0,
            stdin: str | bytes | None = None, check: bool = False,
            pty: bool = False) -> CommandResult:
        """Run a shell command in the guest; collect stdout, stderr, the exit status.

        `pty`: on a terminal, as a user's shell would: the program's stdio is line-buffered
        and stderr arrives in stdout, in order (what a kselftest binary printed before a crash
        is not lost in a buffer); lines end in CRLF."""
        if self.client is None:
            raise ChannelError("SSH channel is not connected")
        text = command_text(cmd)
        start = time.monotonic()
        chan = self._start(text, stdin, pty)
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else start + timeout
        timed_out = False
        try:
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if chan.exit_status_ready() and chan.eof_received:
                    break
                if chan.closed:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    timed_out = True
                    break
                # paramiko's channel fileno() is a pipe set when stdout, stderr or EOF arrives.
                select.select([chan], [], [], 1.0 if remaining is None else min(remaining, 1.0))
            status = -1 if timed_out else chan.recv_exit_status()
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            raise ChannelError(f"SSH connection lost while running {text!r}: {exc}") from exc
        finally:
            chan.close()
        result = CommandResult(
            command=text, exit_status=status, stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"), duration=time.monotonic() - start,
            timed_out=timed_out,
        )
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def _start(self, text: str, stdin: str | bytes | None,
               pty: bool = False) -> paramiko.Channel:
        """A channel running `text`. A failure before the server accepted the exec request
        means the command never ran, so it is retried (twice): dropbear sometimes closes a
        channel it has just opened, or drops the connection, when several channels open and
        close at once (seen when an OOM kill ends two commands together). A dead connection
        is reopened first."""
        last: Exception | None = None
        for _ in range(3):
            client = self._thread_client()
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                try:
                    client = self._reconnect(client)
                except ChannelError as exc:
                    raise ChannelError(f"SSH connection to the guest is gone ({last or 'closed'}) "
                                       f"and reconnecting failed: {exc}") from exc
                transport = client.get_transport()
                if transport is None:
                    raise ChannelError("SSH connection to the guest is gone")
            chan = None
            try:
                # A window no command's output fills: paramiko never sends a WINDOW_ADJUST,
                # which could cross the server's CLOSE (see _send_eof).
                chan = transport.open_session(window_size=WINDOW, timeout=10)
                if pty:
                    chan.get_pty(term="dumb", width=500, height=50)
                chan.exec_command(text)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                last = exc
                if chan is not None:
                    chan.close()
                self.retries += 1
                time.sleep(0.05)
                continue
            try:
                if stdin is not None:
                    chan.sendall(stdin.encode() if isinstance(stdin, str) else stdin)
                _send_eof(chan, transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                chan.close()
                raise ChannelError(f"SSH connection lost while running {text!r}: {exc}") \
                    from exc
            return chan
        raise ChannelError(f"SSH exec failed for {text!r}: {last}")

    def _thread_client(self) -> paramiko.SSHClient:
        """The connection of the calling thread. Each thread has its own: dropbear (2022.83)
        mixes up channels that open and close at once on one connection (a fresh channel
        closed before or right after its exec, without an exit status), which the runner's
        background steps and samplers otherwise do all the time."""
        if self.client is None:
            raise ChannelError("SSH channel is not connected")
        if threading.get_ident() == self._owner:
            return self.client
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client(timeout=10.0)
            self._local.client = client
            with self._lock:
                self._others.append(client)
        return client

    def _reconnect(self, dead: paramiko.SSHClient) -> paramiko.SSHClient:
        """A new connection in place of `dead`, the calling thread's."""
        fresh = self._new_client(timeout=5.0)
        dead.close()
        with self._lock:
            self.reconnects += 1
            if self.client is dead:
                self.client = fresh
            else:
                self._local.client = fresh
                self._others.append(fresh)
        return fresh

    def start(self, cmd: str | Sequence[str]) -> None:
        """Start a command and do not wait for it (e.g. `poweroff -f`, which never answers)."""
        if self.client is None:
            raise ChannelError("SSH channel is not connected")
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise ChannelError("SSH connection to the guest is gone")
        try:
            transport.open_session(timeout=5).exec_command(command_text(cmd))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ChannelError(f"SSH exec failed for {cmd!r}: {exc}") from exc

    def interactive(self) -> int:
        """An interactive shell on the caller's terminal; returns the shell's exit status."""
        if self.client is None:
            raise ChannelError("SSH channel is not connected")
        import os
        import sys
        import termios
        import tty

        chan = self.client.invoke_shell(term=os.environ.get("TERM", "vt100"),
                                        width=os.get_terminal_size().columns,
                                        height=os.get_terminal_size().lines)
        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
        try:
            tty.setraw(fd)
            while True:
                ready, _, _ = select.select([chan, fd], [], [])
                if chan in ready:
                    data = chan.recv(4096)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                if fd in ready:
                    data = os.read(fd, 1024)
                    if not data:
                        break
                    chan.sendall(data)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
        return chan.recv_exit_status() if chan.exit_status_ready() else 0

    def close(self) -> None:
        with self._lock:
            others, self._others = self._others, []
        for client in others:
            client.close()
        if self.client is not None:
            self.client.close()
            self.client = None


WINDOW = 2**31 - 1


def _send_eof(chan: paramiko.Channel, transport: paramiko.Transport) -> None:
    """Send EOF on the channel unless it is already closed, holding the channel's lock while
    sending. paramiko's shutdown_write() releases that lock before it sends: when the command
    ends at once, its EOF can then leave after paramiko's own reply to the server's CLOSE.
    dropbear has freed the channel by then: the late EOF either hits a new channel that took
    the slot (that channel closes before its command runs: "Channel closed") or is an
    "Unknown channel" and dropbear drops the whole connection."""
    with chan.lock:
        if chan.closed or chan.eof_sent:
            return
        message = chan._send_eof()
        if message is not None:
            transport._send_user_message(message)


def host_key_blob(line: str) -> str | None:
    """The base64 blob of an `ssh-ed25519 AAAA...` line, validated."""
    parts = line.split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        return None
    try:
        base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    return parts[1]
