"""gdb's machine interface (MI3), as data: output lines parsed into records, commands quoted.

gdb driven with `--interpreter=mi3` answers every command with a typed record instead of
screen text:

    12^done,bkpt={number="2",type="breakpoint",...}      result (^) of command 12
    *stopped,reason="breakpoint-hit",bkptno="2",frame={func="try_charge_memcg",...}
    ~"#0  try_charge_memcg (...) at mm/memcontrol.c:2632\n"     console stream (~)

A small parser is here rather than a dependency (pygdbmi would bring its own process handling;
the channel needs its own: harness/channels/gdb.py). Pure functions and frozen dataclasses: no
process, no I/O, so it is tested on recorded lines (tests/test_gdbmi.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MIRecord:
    """One line of gdb's MI output.

    kind: `result` (^), `exec` (*), `status` (+), `notify` (=), `console` (~), `target` (@),
    `log` (&), `prompt` ((gdb)) or `other` (not MI: e.g. a warning gdb wrote to stderr).
    """

    kind: str
    token: int | None = None
    cls: str = ""  # done, running, connected, error, exit / stopped, running / ...
    results: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # the stream text, or the raw line for `other`


_PREFIX = {"^": "result", "*": "exec", "+": "status", "=": "notify"}
_STREAMS = {"~": "console", "@": "target", "&": "log"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "e": "\x1b"}


def parse_mi_line(line: str) -> MIRecord:
    """Parse one MI output line (without its newline). Lines that are not MI give `other`."""
    line = line.rstrip("\r\n")
    if line.strip() == "(gdb)":
        return MIRecord("prompt")
    pos = 0
    while pos < len(line) and line[pos].isdigit():
        pos += 1
    token = int(line[:pos]) if pos else None
    if pos >= len(line):
        return MIRecord("other", text=line)
    mark = line[pos]
    try:
        if mark in _STREAMS and token is None:
            text, end = _parse_cstring(line, pos + 1)
            if end == len(line):
                return MIRecord(_STREAMS[mark], text=text)
        elif mark in _PREFIX:
            rest = line[pos + 1:]
            cls, _, tail = rest.partition(",")
            if cls and all(c.isalnum() or c in "-_" for c in cls):
                results, end = _parse_results(tail, 0, "") if tail else ({}, 0)
                if end == len(tail):
                    return MIRecord(_PREFIX[mark], token, cls, results)
    except (ValueError, IndexError):
        pass
    return MIRecord("other", text=line)


def _parse_cstring(s: str, pos: int) -> tuple[str, int]:
    if s[pos] != '"':
        raise ValueError(f"expected a string at {pos}")
    pos += 1
    out = bytearray()
    while True:
        c = s[pos]
        if c == '"':
            return out.decode("utf-8", errors="replace"), pos + 1
        if c == "\\":
            e = s[pos + 1]
            if e in "01234567":  # gdb escapes bytes it will not print as \ooo
                digits = e
                while len(digits) < 3 and s[pos + 1 + len(digits)] in "01234567":
                    digits += s[pos + 1 + len(digits)]
                out.append(int(digits, 8) & 0xFF)
                pos += 1 + len(digits)
                continue
            out += _ESCAPES.get(e, e).encode()
            pos += 2
            continue
        out += c.encode()
        pos += 1


def _parse_value(s: str, pos: int) -> tuple[Any, int]:
    c = s[pos]
    if c == '"':
        return _parse_cstring(s, pos)
    if c == "{":
        if s[pos + 1] == "}":
            return {}, pos + 2
        results, pos = _parse_results(s, pos + 1, "}")
        return results, pos + 1
    if c == "[":
        if s[pos + 1] == "]":
            return [], pos + 2
        items: list[Any] = []
        pos += 1
        while True:
            if s[pos] in '"{[':
                value, pos = _parse_value(s, pos)
            else:  # a list of results (`[frame={...},frame={...}]`): keep the values
                _, value, pos = _parse_result(s, pos)
            items.append(value)
            if s[pos] == ",":
                pos += 1
                continue
            if s[pos] == "]":
                return items, pos + 1
            raise ValueError(f"bad list at {pos}")
    raise ValueError(f"bad value at {pos}")


def _parse_result(s: str, pos: int) -> tuple[str, Any, int]:
    eq = s.index("=", pos)
    name = s[pos:eq]
    value, pos = _parse_value(s, eq + 1)
    return name, value, pos


def _parse_results(s: str, pos: int, closer: str) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while True:
        name, value, pos = _parse_result(s, pos)
        if name in out:  # MI2 repeats keys (bkpt={..},{..}); keep them all
            prev = out[name]
            out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
        if pos >= len(s) or s[pos] == closer:
            return out, pos
        if s[pos] != ",":
            raise ValueError(f"expected ',' at {pos}")
        pos += 1


def mi_quote(text: str) -> str:
    """An MI command argument as a C string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class MIResult:
    """The answer to one MI command: its result record and the stream output before it."""

    cls: str
    results: dict[str, Any]
    console: str  # `~` output (what a CLI command printed)
    log: str  # `&` output (errors and echoes)

    @property
    def error(self) -> str | None:
        return self.results.get("msg", "error") if self.cls == "error" else None


@dataclass(frozen=True)
class Stop:
    """A `*stopped` record, read: why the target stopped, at which breakpoint, where."""

    reason: str | None  # breakpoint-hit, signal-received, exited-normally... (None: not said)
    breakpoint: int | None  # bkptno, for a breakpoint hit
    frame: dict[str, Any] = field(default_factory=dict)  # the MI frame tuple (func, file...)

    @classmethod
    def from_record(cls, rec: MIRecord) -> Stop:
        frame = rec.results.get("frame", {})
        return cls(rec.results.get("reason"), _int(rec.results.get("bkptno")),
                   frame if isinstance(frame, dict) else {})

    @property
    def exited(self) -> bool:
        """The inferior went away (for the gdbstub: QEMU exited)."""
        return self.reason in ("exited", "exited-signalled", "exited-normally")

    @property
    def location(self) -> str:
        """Where it stopped: "try_charge_memcg at mm/memcontrol.c:2632", else
        "try_charge_memcg (0xffffffff81234567)"."""
        return frame_location(self.frame)


def frame_location(frame: dict[str, Any]) -> str:
    """An MI frame tuple as gdb names a location: FUNC at FILE:LINE, else FUNC (ADDR)."""
    func = frame.get("func", "??")
    if frame.get("file") and frame.get("line"):
        return f"{func} at {frame['file']}:{frame['line']}"
    return f"{func} ({frame.get('addr', '?')})"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
