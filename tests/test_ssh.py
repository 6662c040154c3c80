"""The SSH channel's seams that a real guest cannot be made to hit on demand: a server that
closes a channel before the command runs, a connection that dies between commands. (The
integration tests drive the same code against dropbear in a real guest.)"""

from __future__ import annotations

import threading

import paramiko
import pytest

from harness.channels import ChannelError
from harness.channels.ssh import SSHChannel, new_client_key


class FakeChannel:
    def __init__(self, fail: Exception | None) -> None:
        self.fail = fail
        self.closed = False
        self.eof_sent = False
        self.lock = __import__("threading").Lock()
        self.commands: list[str] = []

    def exec_command(self, text: str) -> None:
        if self.fail is not None:
            self.closed = True
            raise self.fail
        self.commands.append(text)

    def _send_eof(self):
        self.eof_sent = True
        return "EOF"

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    def __init__(self, failures: list[Exception | None], active: bool = True) -> None:
        self.failures = failures
        self.active = active
        self.opened: list[FakeChannel] = []
        self.sent: list[str] = []

    def is_active(self) -> bool:
        return self.active

    def open_session(self, window_size=None, timeout=None):
        fail = self.failures.pop(0) if self.failures else None
        if isinstance(fail, paramiko.ChannelException):
            raise fail
        chan = FakeChannel(fail)
        self.opened.append(chan)
        return chan

    def _send_user_message(self, message) -> None:
        self.sent.append(message)


class FakeClient:
    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.closed = False

    def get_transport(self):
        return self.transport

    def close(self) -> None:
        self.closed = True


def channel_with(transport: FakeTransport) -> SSHChannel:
    ch = SSHChannel("127.0.0.1", 1, new_client_key())
    ch.client = FakeClient(transport)  # type: ignore[assignment]
    ch._owner = threading.get_ident()
    return ch


def test_a_channel_closed_before_the_command_ran_is_retried():
    t = FakeTransport([paramiko.SSHException("Channel closed."), None])
    ch = channel_with(t)
    chan = ch._start("cat /tmp/x", None)
    assert chan.commands == ["cat /tmp/x"]
    assert ch.retries == 1 and t.opened[0].closed
    assert t.sent == ["EOF"]  # EOF sent once, on the channel that runs


def test_a_refused_channel_is_retried_then_reported():
    refused = paramiko.ChannelException(2, "Connect failed")
    t = FakeTransport([refused, refused, refused])
    ch = channel_with(t)
    with pytest.raises(ChannelError, match="SSH exec failed for 'true': .*Connect failed"):
        ch._start("true", None)
    assert ch.retries == 3


def test_eof_is_not_sent_on_a_channel_the_server_already_closed():
    t = FakeTransport([])
    channel_with(t)
    chan = FakeChannel(None)
    chan.closed = True
    from harness.channels.ssh import _send_eof
    _send_eof(chan, t)  # type: ignore[arg-type]
    assert t.sent == [] and not chan.eof_sent


def test_a_dead_connection_is_reopened_once_for_the_next_command(monkeypatch):
    dead = FakeTransport([], active=False)
    ch = channel_with(dead)
    fresh = FakeTransport([])
    monkeypatch.setattr(ch, "_new_client", lambda timeout: FakeClient(fresh))
    chan = ch._start("true", None)
    assert chan.commands == ["true"] and ch.reconnects == 1
    assert ch.client.transport is fresh


def test_each_thread_gets_its_own_connection(monkeypatch):
    ch = channel_with(FakeTransport([]))
    made: list[FakeClient] = []

    def new_client(timeout: float) -> FakeClient:
        made.append(FakeClient(FakeTransport([])))
        return made[-1]

    monkeypatch.setattr(ch, "_new_client", new_client)
    assert ch._thread_client() is ch.client  # the thread that connected
    seen = []
    workers = [threading.Thread(target=lambda: seen.append((ch._thread_client(),
                                                            ch._thread_client())))
               for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(made) == 3 and all(a is b for a, b in seen)
    ch.close()
    assert all(c.closed for c in made)


def test_a_dead_connection_that_cannot_be_reopened_is_a_clear_error(monkeypatch):
    ch = channel_with(FakeTransport([], active=False))

    def new_client(timeout: float) -> None:
        raise ChannelError("SSH to 127.0.0.1:1 failed within 5s: refused")

    monkeypatch.setattr(ch, "_new_client", new_client)
    with pytest.raises(ChannelError, match="gone .* reconnecting failed: SSH to 127.0.0.1:1"):
        ch._start("true", None)
