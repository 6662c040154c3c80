"""Ways to talk to a running guest: SSH (paramiko), the serial console (pexpect), gdb."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """What one command run in the guest gave back."""

    command: str
    exit_status: int  # -1 when the command was killed by a signal or the status never came
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    channel: str = "ssh"

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out


class ChannelError(RuntimeError):
    """The channel could not carry the command (connection lost, not up)."""


class CommandFailed(RuntimeError):
    def __init__(self, result: CommandResult) -> None:
        self.result = result
        tail = (result.stderr or result.stdout).strip()[-500:]
        what = "timed out" if result.timed_out else f"exited {result.exit_status}"
        super().__init__(f"guest command {what}: {result.command}" + (f"\n{tail}" if tail else ""))


def command_text(cmd: str | Sequence[str]) -> str:
    """A guest shell command line: a string is used as is, an argv list is quoted."""
    return cmd if isinstance(cmd, str) else shlex.join(cmd)
