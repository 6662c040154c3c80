"""Kernel serial-console parser: guest markers and kernel failure reports.

The console of a guest is one byte stream mixing firmware noise (SeaBIOS/iPXE with CRs and ANSI
escapes), kernel printk lines and whatever userspace (/init) writes to /dev/console. This module
turns it into events:

* ``MARKER``: ``KHARNESS:<name> [payload]`` written by the guest's /init, anywhere in a line.
* kernel reports: ``PANIC``, ``OOPS``, ``BUG``, ``WARNING``, ``LOCKUP``, ``HUNG_TASK``,
  ``RCU_STALL`` (the *failures*), plus ``OOM_KILL`` (an expected outcome of memory limits, not a
  failure) and ``TAINT`` (the taint flags from a report's ``CPU: ... Tainted:`` line).

Kernel lines are told apart from userspace output by their printk timestamp
(``[    1.234567] ``): once the stream has shown one timestamped line, an untimestamped line
cannot be a kernel report (so ``echo "BUG: ..."`` from a test is not a failure), and a marker is
only looked for in the text *before* a line's timestamp (so the kernel echoing a string never
produces a marker). Userspace text without a newline followed by a kernel line shares one
console line (``KHARNESS:glued[    1.61] sysrq: ...``): the timestamp is searched anywhere.

This is the bottom layer of the harness: it imports nothing from the package.

Field meanings (see the golden logs in tests/golden/console/ for real examples):

=========== ================================================ ===================================
kind        name                                             payload
=========== ================================================ ===================================
MARKER      marker name                                      rest of the marker line
PANIC       panic reason ("sysrq triggered crash")           the report's header message
OOPS        fault ("kernel NULL pointer dereference",        the report's header message
            "general protection fault", "invalid opcode")
BUG         ``file:line`` of ``kernel BUG at``, else the     the report's header message
            title ("scheduling while atomic")
WARNING     ``file:line`` (or function) of the WARN, or the  the report's header message
            lockdep/UBSAN title
LOCKUP      "soft lockup", "hard LOCKUP", "workqueue lockup" the report's header message
HUNG_TASK   the blocked task's comm                          the report's header message
RCU_STALL   "self-detected stall", "detected stalls", ...    the report's header message
OOM_KILL    the killed task's comm                           its pid
TAINT       ""                                               the flags, spaces removed ("GOE")
=========== ================================================ ===================================

The header message is the kernel line without its timestamp. ``line`` is always the whole
console line, cleaned of CRs and escape sequences, timestamp included.
"""

from __future__ import annotations

import codecs
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "FAILURE_KINDS",
    "ConsoleEvent",
    "ConsoleEventKind",
    "ConsoleParser",
    "classify",
    "clean_line",
    "parse_log",
]


class ConsoleEventKind(enum.Enum):
    MARKER = "marker"
    PANIC = "panic"
    OOPS = "oops"
    BUG = "bug"
    WARNING = "warning"
    LOCKUP = "lockup"
    HUNG_TASK = "hung_task"
    RCU_STALL = "rcu_stall"
    OOM_KILL = "oom_kill"
    TAINT = "taint"


#: Failure kinds, most severe first (the order `classify` uses).
FAILURE_KINDS: tuple[ConsoleEventKind, ...] = (
    ConsoleEventKind.PANIC,
    ConsoleEventKind.OOPS,
    ConsoleEventKind.BUG,
    ConsoleEventKind.WARNING,
    ConsoleEventKind.LOCKUP,
    ConsoleEventKind.HUNG_TASK,
    ConsoleEventKind.RCU_STALL,
)
_SEVERITY = {kind: rank for rank, kind in enumerate(FAILURE_KINDS)}


@dataclass(frozen=True)
class ConsoleEvent:
    kind: ConsoleEventKind
    line: str  # the whole cleaned console line
    lineno: int  # 1-based
    name: str = ""
    payload: str = ""
    time: float | None = None  # kernel timestamp if the line had one

    @property
    def is_failure(self) -> bool:
        return self.kind in _SEVERITY


# --- line cleaning -------------------------------------------------------------------------------

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), and the short forms: ESC c (reset, which
# SeaBIOS sends first), ESC ( B and friends.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # everything but TAB


def clean_line(line: str) -> str:
    """Drop escape sequences, CRs and other control characters (TAB is kept)."""
    if "\x1b" in line:
        line = _ESCAPE.sub("", line)
    return _CONTROL.sub("", line)


# printk time prefix, with the optional caller id of CONFIG_PRINTK_CALLER ("[    T1]").
_TIMESTAMP = re.compile(r"\[\s*(\d+\.\d{6})\](?:\[\s*[CT]\d+\])? ?")

_MARKER_TAG = "KHARNESS:"
_MARKER = re.compile(r"([a-z0-9_.-]+)(?:[ \t]+(.*?))?[ \t]*", re.DOTALL)

# End of a kernel report: where `excerpt` stops.
_REPORT_END = ("---[ end trace", "---[ end Kernel panic")
_CUT_HERE = "------------[ cut here ]"  # starts a WARNING or BUG() report; not an event itself

# --- kernel report patterns (matched against the message, after the timestamp) ------------------

_PANIC = re.compile(r"Kernel panic - not syncing: ?(.*)")

# Report headers that start an oops.
_OOPS_HEADERS = (
    re.compile(r"BUG: (kernel NULL pointer dereference)"),
    re.compile(r"BUG: (unable to handle (?:page fault|kernel NULL pointer dereference"
               r"|kernel paging request))"),
    re.compile(r"(?:Oops: )?(general protection fault)\b"),
    re.compile(r"Unable to handle kernel (NULL pointer dereference|paging request)"),  # arm64
)
# The die() line ("Oops: 0002 [#1] PREEMPT SMP", 6.1's "invalid opcode: 0000 [#1]", 6.12's
# "Oops: invalid opcode: 0000 [#1]", arm64's "Internal error: Oops: 96000045 [#1]"). It follows
# the header of the same report within a few lines; alone it is an oops of its own.
_DIE = re.compile(r"(?:Oops: (?:(.+?): )?[0-9a-f]{4,16} \[#\d+\]"
                  r"|([a-z][a-z0-9 -]*?): [0-9a-f]{4} \[#\d+\]"
                  r"|Internal error: (Oops)\b)")
_DIE_FOLLOWS_WITHIN = 12  # lines between a report header and its die() line

_KERNEL_BUG_AT = re.compile(r"kernel BUG at (.+?)!?$")
_SOFT_LOCKUP = re.compile(r"(?:watchdog: )?BUG: (soft lockup)\b")
_HARD_LOCKUP = re.compile(r"(?:(?:NMI )?watchdog: )?(?:CPU\d+: )?Watchdog detected (hard LOCKUP)\b")
_WQ_LOCKUP = re.compile(r"BUG: (workqueue lockup)\b")
_BUG = re.compile(r"BUG: (.*)")
_SLUB_BUG = re.compile(r"BUG [\w.:-]+ \((?:Not t|T)ainted[^)]*\): (.*)")  # slub_debug reports

_WARN = re.compile(r"WARNING: CPU: \d+ PID: \d+ at (\S+)")
_LOCKDEP_WARN = re.compile(r"WARNING: (.*)")  # only right after a "=====" line
_SEPARATOR = re.compile(r"=+")
_UBSAN = re.compile(r"UBSAN: (\S+) in ")

_HUNG_TASK = re.compile(r"INFO: task (.+):(\d+) blocked for more than \d+ seconds")
_RCU_STALL = re.compile(r"(?:rcu: )?INFO: rcu_\w+ (self-detected stall|detected (?:expedited )?"
                        r"stalls)")

_OOM_KILL = re.compile(r"(?:Memory cgroup out of memory|Out of memory"
                       r"(?: \(oom_kill_allocating_task\))?): Killed process (\d+) \((.*?)\)"
                       r"(?= total-vm:|,|$)")
_OOM_KILL_LOOSE = re.compile(r"(?:Memory cgroup out of memory|Out of memory[^:]*): "
                             r"Killed process (\d+) \((.*)\)")

# "CPU: 0 UID: 0 PID: 85 Comm: insmod Tainted: G           OE      6.1.0-56-amd64 #1 ..." and the
# hung-task report's "      Tainted: G  OE  6.1.0 ...". The flags are a fixed-width field of
# letters and blanks, followed by the release (which starts with a digit).
_TAINT = re.compile(r"(?:CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: .*? |\s+)Tainted: ([A-Z][A-Z ]*?)"
                    r" +\d")


# Every report line above contains one of these: a cheap gate for the other 99% of lines.
_INTERESTING = re.compile(r"Kernel panic|BUG|Oops|\[#\d|fault|Unable to handle|WARNING|UBSAN|"
                          r"LOCKUP|INFO: |Killed process|Tainted: |Internal error")


def _short(text: str) -> str:
    """A report title: the text up to its first ':' / ',' / ' at ' / ' in '."""
    return re.split(r":|,| at | in ", text, maxsplit=1)[0].strip()


def _bug_title(rest: str) -> str:
    """The title of a "BUG: ..." line; sanitizers keep their kind ("KASAN: use-after-free")."""
    m = re.match(r"(K[A-Z]*SAN|KFENCE): (\S+)", rest)
    if m:
        return f"{m.group(1)}: {m.group(2)}"
    return _short(rest)


def _warn_location(where: str) -> str:
    """``file:line`` as printed, or the function name without its offset."""
    return where if re.search(r":\d+$", where) else where.split("+", 1)[0]


# --- the parser ----------------------------------------------------------------------------------


class ConsoleParser:
    """Incremental console parser; keeps every cleaned line for `excerpt`.

    `require_timestamp` decides which lines can be kernel reports: True, only timestamped
    lines; False, every line; None (default), every line until the first timestamped line has
    been seen, then only timestamped ones (covers kernels booted with ``printk.time=0``).
    """

    #: A "line" longer than this without a newline is processed anyway (a runaway writer).
    max_line = 1 << 20

    def __init__(self, require_timestamp: bool | None = None) -> None:
        self.events: list[ConsoleEvent] = []
        self.lines: list[str] = []  # cleaned lines, lines[i] is line number i + 1
        self._require_timestamp = require_timestamp
        self._seen_timestamp = False
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._prev_msg = ""  # previous kernel message, for lockdep's "=====" + "WARNING:"
        self._open_header: int | None = None  # lineno of the last oops/BUG header
        self._last_end: int = 0  # lineno of the last end-of-report line
        self._taint: str | None = None
        self._failure_lines: set[int] = set()

    # -- input --

    def feed(self, data: str | bytes) -> list[ConsoleEvent]:
        """Feed an arbitrary chunk; complete lines are parsed, a trailing partial line waits."""
        if isinstance(data, bytes):
            data = self._decoder.decode(data)
        out: list[ConsoleEvent] = []
        newline = "\n" in data
        self._partial += data
        if newline:
            *complete, self._partial = self._partial.split("\n")
            for line in complete:
                out += self.feed_line(line)
        while len(self._partial) > self.max_line:
            line, self._partial = self._partial[: self.max_line], self._partial[self.max_line:]
            out += self.feed_line(line)
        return out

    def flush(self) -> list[ConsoleEvent]:
        """Parse a pending partial line (at the end of the stream)."""
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        return self.feed_line(rest) if rest else []

    def feed_line(self, line: str) -> list[ConsoleEvent]:
        """Parse one console line (without its newline); returns the events it triggered."""
        text = clean_line(line)
        self.lines.append(text)
        lineno = len(self.lines)

        m = _TIMESTAMP.search(text)
        if m:
            self._seen_timestamp = True
            prefix, msg, ts = text[: m.start()], text[m.end():], float(m.group(1))
        else:
            prefix, msg, ts = text, text, None

        found: list[ConsoleEvent] = []
        for name, payload in _find_markers(prefix):
            found.append(ConsoleEvent(ConsoleEventKind.MARKER, text, lineno, name, payload))

        require = self._require_timestamp
        if require is None:
            require = self._seen_timestamp
        if ts is not None or not require:
            ev = self._kernel_event(msg, text, lineno, ts)
            if ev is not None:
                found.append(ev)
                if ev.is_failure:
                    self._failure_lines.add(lineno)
            if msg.startswith(_REPORT_END):
                self._last_end = lineno
                self._open_header = None
            self._prev_msg = msg
        self.events += found
        return found

    # -- kernel messages --

    def _kernel_event(self, msg: str, line: str, lineno: int,
                      ts: float | None) -> ConsoleEvent | None:
        if not _INTERESTING.search(msg):
            return None
        hit = self._match(msg, lineno)
        if hit is None:
            return None
        kind, name, payload = hit
        if kind is ConsoleEventKind.TAINT:
            if payload == self._taint:  # the same flags again: nothing new
                return None
            self._taint = payload
        return ConsoleEvent(kind, line, lineno, name, msg.strip() if payload is None else payload,
                            ts)

    def _match(self, msg: str, lineno: int) -> tuple[ConsoleEventKind, str, str | None] | None:
        """(kind, name, payload) for one kernel message; payload None means the message."""
        K = ConsoleEventKind
        if m := _PANIC.match(msg):
            return K.PANIC, m.group(1).strip(), None
        for rx in (_SOFT_LOCKUP, _HARD_LOCKUP, _WQ_LOCKUP):
            if m := rx.match(msg):
                return K.LOCKUP, m.group(1), None
        for rx in _OOPS_HEADERS:
            if m := rx.match(msg):
                if "[#" in msg and self._in_report(lineno):
                    return None  # 6.12's "Oops: general protection fault ... [#1]" after a header
                self._open_header = lineno
                return K.OOPS, m.group(1), None
        if m := _DIE.match(msg):
            if self._in_report(lineno):
                return None  # the die() line of the report whose header we already have
            title = next((g for g in m.groups() if g), "Oops")
            return K.OOPS, _short(title) or "Oops", None
        if m := _KERNEL_BUG_AT.match(msg):
            self._open_header = lineno
            return K.BUG, m.group(1), None
        if m := _BUG.match(msg):
            self._open_header = lineno
            return K.BUG, _bug_title(m.group(1)), None
        if m := _SLUB_BUG.match(msg):
            return K.BUG, m.group(1).strip(), None
        if m := _WARN.match(msg):
            return K.WARNING, _warn_location(m.group(1)), None
        if (m := _LOCKDEP_WARN.match(msg)) and _SEPARATOR.fullmatch(self._prev_msg.strip()):
            return K.WARNING, m.group(1).strip().rstrip("!"), None
        if m := _UBSAN.match(msg):
            return K.WARNING, f"UBSAN: {m.group(1)}", None
        if m := _HUNG_TASK.match(msg):
            return K.HUNG_TASK, m.group(1), None
        if m := _RCU_STALL.match(msg):
            return K.RCU_STALL, m.group(1), None
        if m := _OOM_KILL.match(msg) or _OOM_KILL_LOOSE.match(msg):
            return K.OOM_KILL, m.group(2), m.group(1)
        if m := _TAINT.match(msg):
            return K.TAINT, "", m.group(1).replace(" ", "")
        return None

    def _in_report(self, lineno: int) -> bool:
        """Whether a die() line at `lineno` belongs to an oops/BUG header just before it."""
        return (self._open_header is not None and self._open_header > self._last_end
                and lineno - self._open_header <= _DIE_FOLLOWS_WITHIN)

    # -- output --

    @property
    def failures(self) -> list[ConsoleEvent]:
        """Kernel failure reports so far (not markers, OOM kills or taint records)."""
        return [e for e in self.events if e.kind in _SEVERITY]

    def excerpt(self, event: ConsoleEvent, after: int = 100, before: int = 5) -> str:
        """The console lines around `event`: `before` lines before it, then up to `after` lines
        after it. It stops early at the end of the report: after an end line ("---[ end trace",
        "---[ end Kernel panic"), or before the next report starts (another failure event or a
        "[ cut here ]" line), as a soft lockup, a hung task or a panic_on_warn WARNING have no
        end line. Real reports run 35-60 lines from header to end line (tests/golden/console/).
        """
        # The lines before are context only while they are the kernel's (timestamped): the
        # excerpt starts at the kernel's report, never at a shell banner or a prompt that
        # happened to precede it (a prompt sharing the line is cut off).
        start = event.lineno - 1
        while start > 0 and event.lineno - 1 - start < before:
            m = _TIMESTAMP.search(self.lines[start - 1])
            if m is None:
                break
            start -= 1
        stop = min(len(self.lines), event.lineno + after)
        for i in range(event.lineno, stop):  # lines[i] is line number i + 1
            msg = _strip_timestamp(self.lines[i])
            if msg.startswith(_REPORT_END):
                stop = i + 1
                break
            if i + 1 in self._failure_lines or msg.startswith(_CUT_HERE):
                stop = i
                break
        lines = self.lines[start:stop]
        if start < event.lineno - 1 and (m := _TIMESTAMP.search(lines[0])):
            lines[0] = lines[0][m.start():]
        return "\n".join(lines)


def _strip_timestamp(text: str) -> str:
    m = _TIMESTAMP.search(text)
    return text[m.end():] if m else text


def _find_markers(text: str) -> Iterable[tuple[str, str]]:
    """``(name, payload)`` of each ``KHARNESS:`` marker in `text`; a payload ends at the next
    marker."""
    if _MARKER_TAG not in text:
        return
    parts = text.split(_MARKER_TAG)
    for part in parts[1:]:
        m = _MARKER.fullmatch(part)
        if m:
            yield m.group(1), m.group(2) or ""


def parse_log(text: str | bytes) -> ConsoleParser:
    """Parse a whole console log."""
    parser = ConsoleParser()
    parser.feed(text)
    parser.flush()
    return parser


def classify(events: Iterable[ConsoleEvent]) -> str | None:
    """The most severe failure kind among `events` ("panic" > "oops" > "bug" > "warning" >
    "lockup" > "hung_task" > "rcu_stall"), or None when there is none."""
    best: ConsoleEventKind | None = None
    for ev in events:
        rank = _SEVERITY.get(ev.kind)
        if rank is not None and (best is None or rank < _SEVERITY[best]):
            best = ev.kind
    return best.value if best is not None else None
