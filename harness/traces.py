"""A trace someone pasted: find it in the text, tell its format, parse it into a Backtrace.

Users bring a call chain in whatever shape they have it: gdb's ``bt``, the kernel's ``Call
Trace:`` (a WARNING/BUG report or an OOM-killer report from dmesg), ftrace's function_graph or
stacktrace output, or ``perf script`` with call chains. :func:`parse_trace` turns any of them into
a :class:`PastedTrace`: the format, a :class:`~harness.frames.Backtrace` from frame #0 (innermost)
outwards and, for an OOM-killer report, the memcg figures it printed (:class:`OomReport`).

The text around the trace does not matter: a shell prompt, an e-mail's ``> `` quoting, CRLF line
ends, ANSI colours, printk timestamps (``[ 6377.444341] ``, ``[ T311]`` caller ids) and journal
prefixes (``Mar 01 12:00:00 host kernel: ``) are taken off every line first. When the text holds
several traces, the first one is taken: the first gdb ``bt`` (until the frame numbers start
again), the first ``Call Trace:``, the first OOM-killer report, the first perf sample with kernel
frames; for ftrace, the first of a stacktrace or a function_graph call tree.

The format is decided in this order, first match wins (:func:`detect_format`):

1. ``oom``: an ``invoked oom-killer:`` line;
2. ``gdb``: ``#N  function (...`` frame lines;
3. ``perf``: a sample header (``comm pid [cpu] time: event:``) followed by a call chain line
   (``address symbol (dso)``);
4. ``ftrace``: function_graph ``|  func() {`` / ``|  func();`` lines, or ``=> func`` lines after a
   ``<stack trace>`` line (or two of them in a row);
5. ``dmesg``: ``func+0x1a/0x40`` frame lines.

Where the Backtrace comes from, per format:

- gdb: :func:`~harness.frames.parse_gdb_backtrace` (inlined frames, cut at the entry code).
- dmesg and oom: :func:`~harness.frames.parse_dmesg_trace`. For a WARNING or BUG (an exception
  taken in the kernel) the kernel prints the faulting function only in the ``RIP: 0010:`` line
  above ``Call Trace:``, and the trace starts at its caller; that function is put in as frame #0
  so the chain starts where the kernel stopped, as a gdb one would.
- ftrace function_graph: the chain of open calls at the first line of the deepest nesting (by the
  indentation after the ``|``), innermost first; no offsets, lines of different CPUs kept apart.
  stacktrace: the ``=>`` lines as they are (they are innermost first already).
- perf: the kernel frames (``[kernel.kallsyms]``, ``[module]``, a ``vmlinux``) of the first
  sample that has any; user-space frames are dropped. ``func+0x3d`` gives ``offset="0x3d"``.

This is a bottom-floor data module: it imports only :mod:`harness.frames` and the stdlib.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from pathlib import PurePosixPath
from typing import Any

from . import frames
from .frames import Backtrace, Frame, parse_dmesg_trace, parse_gdb_backtrace

GDB, DMESG, OOM, FTRACE, PERF = "gdb", "dmesg", "oom", "ftrace", "perf"

# In the order of the "no trace" message; each names the format and shows a line of it.
FORMATS: dict[str, str] = {
    GDB: 'gdb bt ("#0  try_charge_memcg (memcg=...) at mm/memcontrol.c:2629")',
    DMESG: 'dmesg Call Trace ("try_charge_memcg+0x741/0x810")',
    OOM: 'an OOM-killer report ("memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), ...")',
    FTRACE: 'ftrace function_graph (" 1)   |  try_charge_memcg() {") '
            'or stacktrace ("=> try_charge_memcg")',
    PERF: 'perf script ("ffffffff8134a5a1 try_charge_memcg+0x1 ([kernel.kallsyms])")',
}

# The limit the kernel prints for "max"/-1: PAGE_COUNTER_MAX pages in kB, 9007199254740988kB with
# 4 KiB pages (LONG_MAX / 4096 * 4). Other page sizes round it a little lower (64 KiB pages:
# 9007199254740928kB), hence the slack.
_UNLIMITED_KB = 9007199254740988 - 4096


class TraceFormatError(ValueError):
    """The text holds no trace kharness can read, or the one it holds cannot be read.

    ``name`` is what the text was called (a file name); ``format`` the format detected, None
    when no trace was found.
    """

    def __init__(self, message: str, *, name: str, format: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.format = format


@dataclass(frozen=True)
class OomReport:
    """The figures of an OOM-killer report, as the kernel printed them (sizes in bytes).

    A limit is None when it is unlimited ("max"). The memory+swap and kmem lines are printed on
    cgroup v1 only, the swap line on v2 only (memsw is memory plus swap; v2's swap is swap alone).
    """

    comm: str | None = None  # the task that invoked the OOM killer
    gfp_mask: str | None = None  # "0xcc0(GFP_KERNEL)", as printed
    order: int | None = None
    oom_score_adj: int | None = None
    memory_usage: int | None = None
    memory_limit: int | None = None
    memory_failcnt: int | None = None
    memsw_usage: int | None = None  # v1 "memory+swap:"
    memsw_limit: int | None = None
    swap_usage: int | None = None  # v2 "swap:"
    swap_limit: int | None = None
    kmem_usage: int | None = None  # v1 "kmem:"
    kmem_limit: int | None = None
    memcg: str | None = None  # "Memory cgroup stats for /kh/bt:" -> "/kh/bt"
    constraint: str | None = None  # "CONSTRAINT_MEMCG", from the "oom-kill:" line
    oom_memcg: str | None = None
    killed_pid: int | None = None
    killed_comm: str | None = None

    @property
    def hierarchy(self) -> str | None:
        """"v1" (a memory+swap line), "v2" (a swap line) or None (neither: a global OOM or an
        excerpt)."""
        if self.memsw_usage is not None:
            return "v1"
        if self.swap_usage is not None:
            return "v2"
        return None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["hierarchy"] = self.hierarchy
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OomReport:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class PastedTrace:
    """A trace found in pasted text."""

    format: str  # one of FORMATS
    backtrace: Backtrace  # frame #0 (innermost) outwards
    oom: OomReport | None = None  # for format "oom"
    header: str | None = None  # the line that announced the trace, without timestamp

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"trace format must be one of {tuple(FORMATS)}, not {self.format!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "header": self.header,
            "backtrace": self.backtrace.to_dict(),
            "oom": None if self.oom is None else self.oom.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PastedTrace:
        oom = data.get("oom")
        return cls(format=data["format"], backtrace=Backtrace.from_dict(data["backtrace"]),
                   oom=None if oom is None else OomReport.from_dict(oom),
                   header=data.get("header"))


# --- the text ------------------------------------------------------------------------------------

_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")  # e-mail quoting: "> ", "> > ", ">>"
_JOURNAL = re.compile(r"^\s*(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
                      r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) \S+ kernel: ?")


def _split(text: str) -> tuple[list[str], list[bool]]:
    """The lines of ``text`` without what pasting adds (see the module docstring), and which of
    them had a printk timestamp.

    The kernel's own indentation is kept: dmesg frames, ftrace columns and perf call chains are
    told apart by it.
    """
    lines, stamped = [], []
    for line in frames.ANSI.sub("", text).replace("\r", "").split("\n"):
        line = _JOURNAL.sub("", _QUOTE.sub("", line))
        bare = frames.PRINTK_PREFIX.sub("", line)
        lines.append(bare.rstrip())
        stamped.append(bare != line)
    return lines, stamped


# --- detection -----------------------------------------------------------------------------------

_OOM_INVOKED = re.compile(r"^\s*(?P<comm>\S.*?) invoked oom-killer: (?P<rest>gfp_mask=.*)$")
_GDB_FRAME = re.compile(r"^\s*#(?P<index>\d+)\s+(?:0x[0-9a-fA-F]+ in )?"
                        r"(?:[A-Za-z_$?][^\s(]*\s\(|<[^>]+>\s*$)")
_ANY_GDB_FRAME = re.compile(r"^\s*#(?P<index>\d+)\s")  # what parse_gdb_backtrace takes for one
_DMESG_FRAME = re.compile(r"^\s*(?:\?\s+)?[A-Za-z_.$][\w.$]*\+0x[0-9a-f]+/0x[0-9a-f]+"
                          r"(?:\s+\[[^\]]+\])?\s*$")
_PERF_HEADER = re.compile(
    r"^\s*(?P<comm>\S(?:.*?\S)?)\s+(?P<pid>\d+)(?:/\d+)?\s+"
    r"(?:\[\d+\]\s+(?:\d+\.\d+:(?:\s|$))?|\d+\.\d+:(?:\s|$))")
_PERF_FRAME = re.compile(r"^\s*(?P<address>[0-9a-f]+)\s+(?P<symbol>\S.*?)\s+"
                         r"\((?P<dso>[^()]*)\)\s*$")
_GRAPH_CALL = re.compile(
    r"\|(?P<indent> *)(?P<function>[A-Za-z_$][\w.$]*)(?: \[(?P<module>[\w-]+)\])?"
    r"\((?:[^()]|\([^()]*\))*\)\s*(?P<end>[{;])\s*(?:/\*.*\*/)?$")
_GRAPH_CLOSE = re.compile(r"\|(?P<indent> *)\}\s*(?:/\*.*\*/)?$")
_GRAPH_PREFIX = re.compile(r"^\s*(?:\d+\.\d+\s*\|\s*)?(?P<cpu>\d+)\)"
                           r"(?:\s*(?P<comm>\S.*?)-(?P<pid>\d+)\s*\|)?")
_STACK_MARK = re.compile(r"<stack trace>\s*$")
_STACK_LINE = re.compile(
    r"^\s*=>\s+(?:(?P<function>[A-Za-z_$][\w.$]*)(?:\+(?P<offset>0x[0-9a-f]+/0x[0-9a-f]+))?"
    r"(?:\s+\[(?P<module>[\w-]+)\])?|(?P<bare>0x[0-9a-f]+|<[0-9a-f]+>))"
    r"(?:\s+<(?P<address>[0-9a-f]+)>)?\s*$")


def detect_format(text: str) -> str | None:
    """The format :func:`parse_trace` reads ``text`` as, None when it holds no trace.

    Formats are tried in the order of the module docstring, wherever in the text each trace is:
    an ``invoked oom-killer:`` line below a gdb ``bt`` still makes it an OOM report.
    """
    return _detect(_split(text)[0])


def _detect(lines: list[str]) -> str | None:
    if any(_OOM_INVOKED.match(ln) for ln in lines):
        return OOM
    if any(_GDB_FRAME.match(ln) for ln in lines):
        return GDB
    if _perf_samples(lines):
        return PERF
    if _graph_start(lines) is not None or _stack_start(lines) is not None:
        return FTRACE
    if any(_DMESG_FRAME.match(ln) for ln in lines):
        return DMESG
    return None


def parse_trace(text: str, *, name: str = "the text") -> PastedTrace:
    """The trace in ``text``, in the format :func:`detect_format` finds; the first one when there
    are several of that format.

    ``name`` (a file name) is what errors call the text. Raises :class:`TraceFormatError` when
    the text holds no trace, or the trace found cannot be read.
    """
    lines, stamped = _split(text)
    fmt = _detect(lines)
    if fmt is None:
        raise TraceFormatError(f"no trace in {name}: kharness understands "
                               f"{', '.join(FORMATS.values())}", name=name)
    try:
        if fmt == DMESG:
            return _parse_dmesg(lines, stamped)
        return {GDB: _parse_gdb, OOM: _parse_oom, FTRACE: _parse_ftrace, PERF: _parse_perf}[fmt](
            lines)
    except ValueError as exc:
        raise TraceFormatError(f"the {fmt} trace in {name} cannot be read: {exc}", name=name,
                               format=fmt) from None


# --- gdb -----------------------------------------------------------------------------------------

_GDB_STOP = re.compile(r"^\s*(?:Thread \d+ .*\bhit \w+ \d+, |(?:Temporary )?[Bb]reakpoint \d+, "
                       r"|(?:Thread \d+ .*)?[Pp]rogram received signal )")


def _parse_gdb(lines: list[str]) -> PastedTrace:
    start = next(i for i, ln in enumerate(lines) if _GDB_FRAME.match(ln))
    end, last = len(lines), -1
    for i in range(start, len(lines)):
        m = _ANY_GDB_FRAME.match(lines[i])
        if not m:
            continue
        index = int(m.group("index"))
        if index <= last or not _GDB_FRAME.match(lines[i]):
            end = i  # a second bt (or `frame N`), or a "#1 ..." line that is no frame
            break
        last = index
    bt = parse_gdb_backtrace("\n".join(lines[start:end]))
    header = next((ln.strip() for ln in reversed(lines[:start]) if _GDB_STOP.match(ln)), None)
    return PastedTrace(format=GDB, backtrace=bt, header=header)


# --- dmesg and OOM-killer reports ----------------------------------------------------------------

_REPORT_HEADER = re.compile(
    r"^\s*(?:\w+: )?(?:WARNING: |BUG: |kernel BUG at |Oops: |general protection fault"
    r"|Unable to handle kernel |Kernel panic - not syncing|INFO: task \S.* blocked for "
    r"|INFO: rcu_\w+ (?:self-)?detected stall|NMI backtrace for cpu )")
_REPORT_END = re.compile(r"^\s*(?:</TASK>|---\[ end |Call Trace:)")
_CPU_LINE = re.compile(r"\bCPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: ")
_KERNEL_RIP = re.compile(r"\bRIP: 0010:(?P<function>[A-Za-z_.$][\w.$]*)\+"
                         r"(?P<offset>0x[0-9a-f]+/0x[0-9a-f]+)(?:\s+\[(?P<module>[^\]]+)\])?\s*$")
_HEADER_REACH = 60  # lines above Call Trace: a report's header is within ~20


def _trace_start(lines: list[str]) -> int:
    """Where parse_dmesg_trace starts: the first ``Call Trace:`` line, else the first frame."""
    return next((i for i, ln in enumerate(lines) if ln.strip() == "Call Trace:"),
                next((i for i, ln in enumerate(lines) if _DMESG_FRAME.match(ln)), 0))


def _report_header(lines: list[str], stamped: list[bool], start: int) -> str | None:
    """The first header line (WARNING:, BUG:, ...) of the report the trace at ``start`` is in.

    When the trace has printk timestamps, a line without one is no kernel line (a program's
    output that looks like a report on the same console).
    """
    header = None
    for i in range(start - 1, max(0, start - _HEADER_REACH) - 1, -1):
        if _REPORT_END.match(lines[i]):
            break
        if _REPORT_HEADER.match(lines[i]) and stamped[i] >= stamped[start]:
            header = lines[i].strip()
    return header


def _faulting_frame(lines: list[str], start: int) -> Frame | None:
    """The ``RIP: 0010:`` function between the report's CPU line and its Call Trace."""
    for ln in reversed(lines[max(0, start - _HEADER_REACH):start]):
        if _REPORT_END.match(ln) or _CPU_LINE.search(ln) or _REPORT_HEADER.match(ln):
            return None
        rip = _KERNEL_RIP.search(ln)
        if rip:
            return Frame(index=0, function=rip.group("function"), file=rip.group("module"),
                         offset=rip.group("offset"))
    return None


def _parse_dmesg(lines: list[str], stamped: list[bool]) -> PastedTrace:
    bt = parse_dmesg_trace("\n".join(lines))
    start = _trace_start(lines)
    rip = _faulting_frame(lines, start)
    reliable = bt.functions()
    if rip is not None and (not reliable or reliable[0] != rip.function):
        chain = (rip, *bt.frames)
        bt = replace(bt, frames=tuple(replace(f, index=i) for i, f in enumerate(chain)))
    return PastedTrace(format=DMESG, backtrace=bt, header=_report_header(lines, stamped, start))


_COUNTER = re.compile(r"^\s*(?P<kind>memory|memory\+swap|swap|kmem): usage (?P<usage>\d+)kB, "
                      r"limit (?P<limit>\d+)kB, failcnt (?P<failcnt>\d+)")
_STATS_FOR = re.compile(r"^\s*Memory cgroup stats for (?P<path>\S.*?):(?=\s|$)")
_OOM_KILL = re.compile(r"^\s*oom-kill:(?P<fields>.*)$")
_KILLED = re.compile(r"\bOut of memory(?: \([^)]*\))?: Killed process (?P<pid>\d+) "
                     r"\((?P<comm>.*?)\)(?= total-vm:|,|\s*$)", re.IGNORECASE)


def _kb(value: str) -> int:
    return int(value) * 1024


def _limit(value: str) -> int | None:
    return None if int(value) >= _UNLIMITED_KB else _kb(value)


def _field(text: str, key: str) -> str | None:
    m = re.search(rf"(?:^|,){key}=([^,]*)", text)
    return m.group(1) if m else None


def _oom_report(lines: list[str]) -> OomReport:
    """The figures of the report whose ``invoked oom-killer:`` line is ``lines[0]``."""
    invoked = _OOM_INVOKED.match(lines[0])
    assert invoked is not None
    rest = invoked.group("rest")
    gfp = re.search(r"gfp_mask=([^,\s]+)", rest)
    order = re.search(r"\border=(-?\d+)", rest)
    adj = re.search(r"oom_score_adj=(-?\d+)", rest)
    values: dict[str, Any] = {
        "comm": invoked.group("comm"), "gfp_mask": gfp.group(1) if gfp else None,
        "order": int(order.group(1)) if order else None,
        "oom_score_adj": int(adj.group(1)) if adj else None,
    }
    prefix = {"memory": "memory", "memory+swap": "memsw", "swap": "swap", "kmem": "kmem"}
    for ln in lines[1:]:
        if counter := _COUNTER.match(ln):
            key = prefix[counter.group("kind")]
            if f"{key}_usage" in values:
                continue
            values[f"{key}_usage"] = _kb(counter.group("usage"))
            values[f"{key}_limit"] = _limit(counter.group("limit"))
            if key == "memory":
                values["memory_failcnt"] = int(counter.group("failcnt"))
        elif (stats := _STATS_FOR.match(ln)) and "memcg" not in values:
            values["memcg"] = stats.group("path")
        elif (kill := _OOM_KILL.match(ln)) and "constraint" not in values:
            values["constraint"] = _field(kill.group("fields"), "constraint")
            values["oom_memcg"] = _field(kill.group("fields"), "oom_memcg")
        elif killed := _KILLED.search(ln):
            values["killed_pid"] = int(killed.group("pid"))
            values["killed_comm"] = killed.group("comm")
            break  # the end of this report
    return OomReport(**values)


def _parse_oom(lines: list[str]) -> PastedTrace:
    start = next(i for i, ln in enumerate(lines) if _OOM_INVOKED.match(ln))
    end = next((i for i in range(start + 1, len(lines)) if _OOM_INVOKED.match(lines[i])),
               len(lines))
    report = lines[start:end]
    if not any(_DMESG_FRAME.match(ln) for ln in report):
        raise ValueError("the report has no Call Trace; paste it from the 'invoked oom-killer' "
                         "line to the 'Killed process' line")
    bt = parse_dmesg_trace("\n".join(report))
    return PastedTrace(format=OOM, backtrace=bt, oom=_oom_report(report),
                       header=report[0].strip())


# --- ftrace --------------------------------------------------------------------------------------


def _graph_start(lines: list[str]) -> int | None:
    return next((i for i, ln in enumerate(lines) if _GRAPH_CALL.search(ln)), None)


def _stack_start(lines: list[str]) -> int | None:
    """The first ``=>`` line after a ``<stack trace>`` line, or of two ``=>`` lines in a row."""
    for i, ln in enumerate(lines[:-1]):
        if _STACK_LINE.match(lines[i + 1]) and (_STACK_MARK.search(ln) or _STACK_LINE.match(ln)):
            return i + 1 if _STACK_MARK.search(ln) else i
    return None


def _parse_ftrace(lines: list[str]) -> PastedTrace:
    graph, stack = _graph_start(lines), _stack_start(lines)
    if stack is not None and (graph is None or stack < graph):
        return _parse_stacktrace(lines, stack)
    assert graph is not None
    return _parse_graph(lines, graph)


_FTRACE_TASK = re.compile(r"^\s*(?P<comm>\S.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\]")


def _parse_stacktrace(lines: list[str], start: int) -> PastedTrace:
    chain = []
    for ln in lines[start:]:
        m = _STACK_LINE.match(ln)
        if not m:
            break  # "<user stack trace>" or the next event
        address = m.group("address") or (m.group("bare") or "").strip("<>") or None
        chain.append(Frame(index=len(chain), function=m.group("function") or "??",
                           file=m.group("module"), offset=m.group("offset"),
                           address=int(address, 16) if address else None))
    mark = lines[start - 1] if start and _STACK_MARK.search(lines[start - 1]) else None
    task = _FTRACE_TASK.match(mark) if mark else None
    bt = Backtrace(frames=tuple(chain), source=frames.FTRACE,
                   comm=task.group("comm") if task else None,
                   pid=int(task.group("pid")) if task else None)
    return PastedTrace(format=FTRACE, backtrace=bt, header=mark.strip() if mark else None)


def _parse_graph(lines: list[str], start: int) -> PastedTrace:
    """The open calls at the first line of the deepest nesting, innermost first.

    Nesting is the indentation after the last ``|`` (the kernel indents two spaces a level). A
    pasted excerpt may start inside calls whose entry it lacks: those are simply not in the
    chain. Each CPU's lines nest on their own.
    """
    stacks: dict[str | None, list[tuple[int, str, str | None]]] = {}
    best: tuple[int, list[tuple[int, str, str | None]], re.Match[str] | None] | None = None
    for ln in lines[start:]:
        call = _GRAPH_CALL.search(ln)
        m = call or _GRAPH_CLOSE.search(ln)
        if m is None:
            continue
        prefix = _GRAPH_PREFIX.match(ln)
        stack = stacks.setdefault(prefix.group("cpu") if prefix else None, [])
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()  # returned: a "}" line, or a call at the same level or above
        if call is None:
            continue
        stack.append((indent, call.group("function"), call.group("module")))
        if best is None or indent > best[0]:
            best = (indent, list(reversed(stack)), prefix)
        if call.group("end") == ";":
            stack.pop()  # a leaf returns on its own line
    assert best is not None
    _, chain, prefix = best
    bt = Backtrace(
        frames=tuple(Frame(index=i, function=f, file=mod) for i, (_, f, mod) in enumerate(chain)),
        source=frames.FTRACE,
        comm=prefix.group("comm") if prefix and prefix.group("comm") else None,
        pid=int(prefix.group("pid")) if prefix and prefix.group("pid") else None)
    header = next((ln.strip() for ln in lines[:start] if re.match(r"\s*# tracer: ", ln)), None)
    return PastedTrace(format=FTRACE, backtrace=bt, header=header)


# --- perf script ---------------------------------------------------------------------------------

# perf's names for user-space memory that are no module: [vdso], [heap], [anon:...], ...
_PERF_USER = ("vdso", "vsyscall", "vvar", "vectors", "sigpage", "heap", "stack", "anon",
              "uprobes")
_KERNEL_HALF = 0xffff800000000000  # x86_64 and arm64 kernel addresses are above it


def _perf_samples(lines: list[str]) -> list[tuple[int, list[re.Match[str]]]]:
    """(header line index, call chain lines) of each sample: a header followed at once by a call
    chain line; the chain ends at a blank line or the next header."""
    samples = []
    i = 0
    while i < len(lines) - 1:
        if not (_PERF_HEADER.match(lines[i]) and _PERF_FRAME.match(lines[i + 1])):
            i += 1
            continue
        chain, j = [], i + 1
        while j < len(lines) and lines[j].strip():
            if (m := _PERF_FRAME.match(lines[j])):
                chain.append(m)
            elif _PERF_HEADER.match(lines[j]):
                break
            j += 1  # other lines (srcline, ...) are not frames
        samples.append((i, chain))
        i = j
    return samples


def _perf_kernel_dso(dso: str, address: int) -> tuple[bool, str | None]:
    """(is it kernel code, the module name) for a call chain line's dso."""
    dso = re.sub(r"\+0x[0-9a-f]+$", "", dso)  # -F +dsoff
    if dso.startswith("[") and dso.endswith("]"):
        name = dso[1:-1]
        if name == "unknown":
            return address >= _KERNEL_HALF, None
        if name.startswith("kernel."):
            return True, None  # [kernel.kallsyms]
        if re.fullmatch(r"[\w-]+", name) and not name.startswith(_PERF_USER):
            return True, name
        return False, None
    return PurePosixPath(dso).name.startswith("vmlinux"), None


def _perf_frames(chain: list[re.Match[str]]) -> list[Frame]:
    """The kernel frames of a call chain; an ``(inlined)`` entry goes with the frame after it
    (the function it was inlined into)."""
    kept: list[Frame] = []
    inlined: list[Frame] = []
    for m in chain:
        address = int(m.group("address"), 16)
        symbol = m.group("symbol")
        function, _, offset = symbol.partition("+")
        if symbol == "[unknown]" or not re.fullmatch(r"0x[0-9a-f]+", offset or "0x0"):
            function, offset = ("??" if symbol == "[unknown]" else symbol), ""
        frame = Frame(index=0, function=function, address=address, offset=offset or None)
        if m.group("dso") == "inlined":
            inlined.append(replace(frame, inlined=True))
            continue
        kernel, module = _perf_kernel_dso(m.group("dso"), address)
        if kernel:
            kept += [replace(f, file=module) for f in inlined]
            kept.append(replace(frame, file=module))
        inlined = []
    return [replace(f, index=i) for i, f in enumerate(kept)]


def _parse_perf(lines: list[str]) -> PastedTrace:
    samples = _perf_samples(lines)
    for at, chain in samples:
        kept = _perf_frames(chain)
        if kept:
            head = _PERF_HEADER.match(lines[at])
            assert head is not None
            bt = Backtrace(frames=tuple(kept), source=frames.PERF, comm=head.group("comm"),
                           pid=int(head.group("pid")))
            return PastedTrace(format=PERF, backtrace=bt, header=lines[at].strip())
    raise ValueError(f"none of its {len(samples)} sample(s) has a kernel frame; record with "
                     "call chains that reach the kernel (perf record -g, kernel symbols readable)")
