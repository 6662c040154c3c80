"""The SSH channel's seams that a real guest cannot be made to hit on demand: a server that
closes a channel before the command runs, a connection that dies between commands. (The
integration tests drive the same code against dropbear in a real guest.)"""

from __future__ import annotations

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

    def connect(timeout: float = 20.0) -> None:
        ch.client = FakeClient(fresh)  # type: ignore[assignment]

    monkeypatch.setattr(ch, "connect", connect)
    chan = ch._start("true", None)
    assert chan.commands == ["true"] and ch.reconnects == 1


def test_a_dead_connection_that_cannot_be_reopened_is_a_clear_error(monkeypatch):
    ch = channel_with(FakeTransport([], active=False))

    def connect(timeout: float = 20.0) -> None:
        raise ChannelError("SSH to 127.0.0.1:1 failed within 5s: refused")

    monkeypatch.setattr(ch, "connect", connect)
    with pytest.raises(ChannelError, match="gone .* reconnecting failed: SSH to 127.0.0.1:1"):
        ch._start("true", None)
