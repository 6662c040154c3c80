"""The serial console as a command channel, for when SSH is not up or the kernel is dying.

The machine owns the console stream (one reader: log, parsers, and this channel's copy). This
channel gets its own socket of a socketpair; what it writes there goes to the guest's ttyS0, where
busybox init keeps a shell respawning.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Sequence

import pexpect
import pexpect.fdpexpect

from . import ChannelError, CommandFailed, CommandResult, command_text


class SerialChannel:
    name = "serial"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.child = pexpect.fdpexpect.fdspawn(sock.fileno(), encoding="utf-8",
                                               codec_errors="replace", timeout=30)

    def run(self, cmd: str | Sequence[str], timeout: float | None = 60.0,
            check: bool = False) -> CommandResult:
        """Run a command in the console shell. stdout and stderr come back mixed, in stdout;
        kernel messages printed meanwhile may be mixed in too."""
        text = command_text(cmd)
        tag = uuid.uuid4().hex[:8]
        begin, end = f"KH-BEGIN-{tag}", f"KH-END-{tag}"
        # The markers are built by the shell (quotes split them) so the echoed command line
        # cannot match them.
        line = (f"echo {begin[:3]}''{begin[3:]}; {text} 2>&1; "
                f"echo {end[:3]}''{end[3:]}=$?\n")
        start = time.monotonic()
        self._drain()
        try:
            self.child.send(line)
            self.child.expect_exact(begin + "\r\n", timeout=min(timeout or 30, 30))
            self.child.expect(re.escape(end) + r"=(\d+)", timeout=timeout)
        except pexpect.TIMEOUT:
            return CommandResult(text, -1, self.child.before or "", "", time.monotonic() - start,
                                 timed_out=True, channel=self.name)
        except pexpect.EOF as exc:
            raise ChannelError("serial console closed (QEMU exited?)") from exc
        output = (self.child.before or "").replace("\r\n", "\n")
        result = CommandResult(text, int(self.child.match.group(1)), output, "",
                               time.monotonic() - start, channel=self.name)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def _drain(self) -> None:
        """Drop console output buffered since the last command (the machine logs it all)."""
        try:
            while True:
                self.child.read_nonblocking(65536, timeout=0)
        except (pexpect.TIMEOUT, pexpect.EOF):
            pass

    def send(self, data: str) -> None:
        self.child.send(data)

    def expect(self, pattern: str, timeout: float = 30.0) -> str:
        """Wait for a regex on the console; returns the text matched."""
        self.child.expect(pattern, timeout=timeout)
        return self.child.after if isinstance(self.child.after, str) else ""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
