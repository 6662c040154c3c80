"""Backtraces as data: gdb's ``bt`` and the kernel's ``Call Trace:``, parsed into frames.

A :class:`Backtrace` is a tuple of :class:`Frame` from frame #0 (where the kernel stopped)
outwards, plus where it came from (``gdb`` or ``dmesg``; ``ftrace`` or ``perf`` for a pasted trace,
see harness/traces.py), the task (comm, pid) when known and the values of expressions captured
with it. It goes to JSON (:meth:`Backtrace.to_dict`) and back, is printed the way gdb prints it
(:func:`format_gdb`, so ``parse_gdb_backtrace(format_gdb(bt)) == bt`` for a parsed gdb trace),
checked (:func:`contains_in_order`, :func:`missing_in_order`) and compared across kernels
(:func:`diff_chains`, :func:`format_diff`).

Inlined frames. gdb shows a function inlined into its caller as a frame of its own; both frames
share one pc. gdb prints ``0xADDR in`` on a frame line only when it can name a pc for that
frame's location; a frame whose callee was inlined into it has none (its location is the call
site of the inlined code), so gdb prints it without the address. The rule is therefore:

    frame #N is inlined (into frame #N+1)  <=>  frame #N+1 is printed without "0xADDR in".

Not "a frame printed without an address is inlined": that frame is the caller the inlined code
went into, and a frame's own address speaks about the frame below it. Frame #0 has none below;
it shows an address only when the pc is not at the start of a source line. Checked with gdb 13
on a two-level always_inline chain, and it matches the kernel: in
``#1 0x... in obj_cgroup_charge_pages (...)`` / ``#2 obj_cgroup_charge (...)`` the static
obj_cgroup_charge_pages is inlined into obj_cgroup_charge; ``#16 __x64_sys_mkdir`` (no
address, called through the syscall table, so never inlined) has __se_sys_mkdir and
__do_sys_mkdir inlined into it. With ``set print address off`` gdb prints no addresses at all
and nothing can be told; don't capture that way.

gdb's unwinder also goes past the kernel's entry code (entry_SYSCALL_64, asm_exc_page_fault, ...)
into the user registers and shows them as bogus kernel frames. :func:`parse_gdb_backtrace` keeps
the first entry frame and drops what follows, recording the entry function in ``truncated_at``.

dmesg frames. ``func+0x1/0x2`` gives ``offset="0x1/0x2"``; `` ? func+...`` (a return address the
unwinder found on the stack but could not prove is part of the chain) is ``unreliable`` and left
out of :meth:`Backtrace.functions` and of the comparisons; a ``RIP: 0010:func+0x1/0x2`` line inside
a Call Trace (an exception taken in the kernel) is the interrupted function and becomes a frame.
The kernel's unwinder does not see inlined functions: dmesg frames are never ``inlined``.

``file`` with ``line`` None names the object the code is in: gdb's ``from /lib/...``, dmesg's
``[module]``.

This is the bottom layer of the harness: it imports nothing from the package.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

GDB = "gdb"
DMESG = "dmesg"
FTRACE = "ftrace"  # a pasted function_graph or stacktrace (harness/traces.py): no offsets
PERF = "perf"  # a pasted perf script call chain (harness/traces.py): offsets like "0x3d"
SOURCES = (GDB, DMESG, FTRACE, PERF)

# Past these gdb unwinds user registers as kernel frames. Every asm_exc_* / asm_sysvec_* stub is
# an idtentry: the same pt_regs frame as asm_exc_page_fault.
ENTRY_FUNCTIONS = frozenset({
    "entry_SYSCALL_64", "entry_SYSCALL_64_after_hwframe", "ret_from_fork", "ret_from_fork_asm",
    "asm_common_interrupt",
})
ENTRY_PREFIXES = ("asm_exc_", "asm_sysvec_")


def base_function(function: str) -> str:
    """The function without GCC's clone suffixes: ``oom_kill_process.cold`` -> ``oom_kill_process``.

    dmesg prints the symbol (``.cold``, ``.constprop.0``, ``.isra.0``, ``.part.0``); gdb prints the
    DWARF name. Checks and comparisons go by this name.
    """
    return function.partition(".")[0] or function


def is_entry_function(function: str) -> bool:
    """True for the kernel entry code past which gdb's frames are user registers."""
    return function in ENTRY_FUNCTIONS or function.startswith(ENTRY_PREFIXES)


@dataclass(frozen=True)
class Frame:
    """One frame of a backtrace. See the module docstring for ``inlined`` and ``file``."""

    index: int
    function: str
    args: str = ""  # gdb's argument text as printed, without the parentheses
    file: str | None = None
    line: int | None = None
    address: int | None = None  # the pc gdb printed ("0x... in"), or a dmesg address-only frame
    inlined: bool = False  # inlined into the next frame (index + 1)
    unreliable: bool = False  # dmesg's "? func+0x../0x.."
    offset: str | None = None  # dmesg's "0x131/0x150"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "function": self.function, "args": self.args,
            "file": self.file, "line": self.line,
            # hex: JSON readers that use doubles would round a kernel address
            "address": None if self.address is None else f"0x{self.address:x}",
            "inlined": self.inlined, "unreliable": self.unreliable, "offset": self.offset,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Frame:
        address = data.get("address")
        if isinstance(address, str):
            address = int(address, 16)
        return cls(
            index=int(data["index"]), function=str(data["function"]),
            args=data.get("args") or "", file=data.get("file"), line=data.get("line"),
            address=address, inlined=bool(data.get("inlined", False)),
            unreliable=bool(data.get("unreliable", False)), offset=data.get("offset"),
        )


@dataclass(frozen=True)
class Backtrace:
    """A call chain from frame #0 outwards."""

    frames: tuple[Frame, ...]
    source: str  # one of SOURCES
    comm: str | None = None
    pid: int | None = None
    values: dict[str, str] = field(default_factory=dict)  # expression -> value captured with it
    truncated_at: str | None = None  # entry function after which gdb's bogus frames were dropped

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"backtrace source must be one of {SOURCES}, not {self.source!r}")
        if not isinstance(self.frames, tuple):
            object.__setattr__(self, "frames", tuple(self.frames))

    def functions(self) -> list[str]:
        """The function names of the reliable frames (inlined ones included), #0 first."""
        return [f.function for f in self.frames if not f.unreliable]

    def find(self, function: str) -> Frame | None:
        """The first reliable frame of ``function``, counting from #0."""
        return next((f for f in self.frames if f.function == function and not f.unreliable),
                    None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "comm": self.comm, "pid": self.pid,
            "truncated_at": self.truncated_at, "values": dict(self.values),
            "frames": [f.to_dict() for f in self.frames],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backtrace:
        return cls(
            frames=tuple(Frame.from_dict(f) for f in data.get("frames", ())),
            source=data["source"], comm=data.get("comm"), pid=data.get("pid"),
            values=dict(data.get("values") or {}), truncated_at=data.get("truncated_at"),
        )


# --- gdb -----------------------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # gdb styles its output on a terminal
_GDB_FRAME = re.compile(r"\s*#(\d+)\s+(?:(0x[0-9a-fA-F]+) in )?(.*)")
_GDB_AT = re.compile(r"at (\S.*):(\d+)")
_GDB_FROM = re.compile(r"from (\S.*)")
_TRUNCATION_NOTE = "(frames past {} dropped: gdb unwinds the user registers there as kernel frames)"
_TRUNCATION = re.compile(r"\(frames past (\S+) dropped\b")


def _clean(text: str) -> list[str]:
    return ANSI.sub("", text).replace("\r", "").splitlines()


def _closing_paren(text: str, start: int) -> int:
    """Index of the ``)`` closing the ``(`` just before ``start``, or -1 (still open).

    gdb's argument values may hold parentheses inside strings (``buf=0x... "f(x)\\n"``) or char
    literals (``c=40 '('``).
    """
    depth, quote, i = 1, "", start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_frame(rest: str) -> tuple[str, str, str] | None:
    """``function (args) tail`` -> (function, args, tail); None while the args are unclosed."""
    if rest.startswith("<") and rest.endswith(">") and " (" not in rest:
        return rest, "", ""  # <signal handler called>, <function called from gdb>
    open_ = rest.find(" (")
    if open_ < 0:
        return None
    close = _closing_paren(rest, open_ + 2)
    if close < 0:
        return None
    return rest[:open_], rest[open_ + 2:close], rest[close + 1:].strip()


def _gdb_frame_texts(lines: list[str]) -> tuple[list[tuple[int, int | None, str]], str | None]:
    """Group lines into (index, address, text) frames, joining the lines gdb wrapped.

    gdb wraps a long frame at an argument (after ``(`` or ``, ``) or before `` at ``/``from``,
    indenting the rest. Other lines (``Backtrace stopped:``, ``bt full``'s locals, prompts) are
    not frames.
    """
    frames: list[list[Any]] = []
    truncated_at = None
    for raw in lines:
        m = _GDB_FRAME.fullmatch(raw)
        if m:
            address = int(m.group(2), 16) if m.group(2) else None
            frames.append([int(m.group(1)), address, m.group(3).rstrip()])
            continue
        note = _TRUNCATION.match(raw.strip())
        if note:
            truncated_at = note.group(1)
            continue
        if not frames or not raw.strip():
            continue
        current = frames[-1][2]
        piece = raw.strip()
        split = _split_frame(current)
        if split is None:  # the arguments go on
            sep = "" if current.endswith("(") else " "
            frames[-1][2] = current + sep + piece
        elif not split[2] and (_GDB_AT.fullmatch(piece) or _GDB_FROM.fullmatch(piece)):
            frames[-1][2] = current + " " + piece
    return [(i, a, t) for i, a, t in frames], truncated_at


def parse_gdb_backtrace(text: str) -> Backtrace:
    """Parse the output of one gdb ``bt`` (prompts, ``Backtrace stopped:`` and other lines that
    are not frames are skipped; styled terminal output is fine).

    Frames after the first entry frame (:func:`is_entry_function`) are dropped, unparsed, and
    the entry function is recorded in ``truncated_at``. Raises ValueError when there is no
    frame, a frame cannot be read, or the frame numbers start again (two backtraces).
    """
    texts, truncated_at = _gdb_frame_texts(_clean(text))
    if not texts:
        first = next((ln.strip() for ln in _clean(text) if ln.strip()), "")
        raise ValueError(f"no gdb backtrace frames (#0 ...) in the text: {first[:120]!r}")
    for (before, _, _), (after, _, _) in pairwise(texts):
        if after <= before:
            raise ValueError(f"gdb frame #{after} follows #{before}: more than one backtrace "
                             "in the text; pass one bt's output")
    parsed: list[Frame] = []
    for index, address, body in texts:
        if parsed and is_entry_function(parsed[-1].function):
            truncated_at = parsed[-1].function  # the rest is user registers: not even parsed
            break
        split = _split_frame(body)
        if split is None:
            raise ValueError(f"gdb frame #{index} has no closed argument list: {body!r}")
        function, args, tail = split
        file = line = None
        if tail:
            at = _GDB_AT.fullmatch(tail)
            frm = _GDB_FROM.fullmatch(tail)
            if at:
                file, line = at.group(1), int(at.group(2))
            elif frm:
                file = frm.group(1)
            else:
                raise ValueError(f"gdb frame #{index}: unexpected text after the arguments: "
                                 f"{tail!r} (expected 'at FILE:LINE' or 'from LIB')")
        parsed.append(Frame(index=index, function=function, args=args, file=file, line=line,
                            address=address))
    frames = tuple(replace(f, inlined=_inlined_into_next(f, parsed[pos + 1:pos + 2]))
                   for pos, f in enumerate(parsed))
    return Backtrace(frames=frames, source=GDB, truncated_at=truncated_at)


def _inlined_into_next(frame: Frame, following: list[Frame]) -> bool:
    if not following:
        return False
    caller = following[0]
    return (caller.index == frame.index + 1 and caller.address is None
            and not caller.function.startswith("<"))


def format_frame(frame: Frame) -> str:
    """One frame the way gdb prints it (``#1  0xffffffff8134c6d3 in f (a=1) at x.c:3``)."""
    text = f"#{frame.index:<2} "
    if frame.address is not None:
        text += f"0x{frame.address:016x} in "
    text += frame.function
    if not (frame.function.startswith("<") and frame.function.endswith(">")):
        text += f" ({frame.args})"
    if frame.line is not None:
        text += f" at {frame.file}:{frame.line}"
    elif frame.file is not None:
        text += f" from {frame.file}"
    return text


def format_gdb(bt: Backtrace) -> str:
    """gdb-style text of a backtrace, one frame a line, plus a note when frames were dropped.

    Meant for gdb traces; a dmesg trace gets the same layout without offsets or ``?`` marks (use
    :func:`format_backtrace` to print each in its own format).
    """
    lines = [format_frame(f) for f in bt.frames]
    if bt.truncated_at:
        lines.append(_TRUNCATION_NOTE.format(bt.truncated_at))
    return "\n".join(lines) + "\n"


# --- dmesg ---------------------------------------------------------------------------------------

PRINTK_PREFIX = re.compile(r"^\s*\[\s*\d+\.\d+\](?:\[\s*[CT]\d+\])?")  # [ 1.2][T42]
_DMESG_FRAME = re.compile(
    r"(?:^|\s)(?P<unreliable>\?\s+)?"
    r"(?:(?P<function>[A-Za-z_.$][\w.$]*)\+(?P<offset>0x[0-9a-f]+/0x[0-9a-f]+)"
    r"(?:\s+\[(?P<module>[^\]]+)\])?"
    r"|(?P<address>0xffff[0-9a-f]{12}))\s*$"  # an address the kernel has no symbol for
)
_DMESG_RIP = re.compile(r"\bRIP: 0010:(?P<function>[A-Za-z_.$][\w.$]*)\+"
                        r"(?P<offset>0x[0-9a-f]+/0x[0-9a-f]+)(?:\s+\[(?P<module>[^\]]+)\])?\s*$")
_DMESG_CPU = re.compile(r"\bCPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>.*?)"
                        r"(?: (?:Not tainted|Tainted:).*)?$")


def parse_dmesg_trace(text: str) -> Backtrace:
    """Parse the first kernel ``Call Trace:`` in ``text`` (printk timestamps optional).

    Frames are taken from the ``Call Trace:`` line to its ``</TASK>`` (the ``<IRQ>``/``<TASK>``
    marks and register dumps in between are skipped); without a ``Call Trace:`` line, every frame
    line of the text up to a ``</TASK>``. comm and pid come from the closest ``CPU: N PID: N Comm:
    NAME`` line above the trace. Raises ValueError when there is no frame.
    """
    lines = [PRINTK_PREFIX.sub("", ln) for ln in _clean(text)]
    header = next((i for i, ln in enumerate(lines) if ln.strip() == "Call Trace:"), None)
    frames: list[Frame] = []
    start = 0 if header is None else header + 1
    for ln in lines[start:]:
        stripped = ln.strip()
        if frames and (stripped in ("</TASK>", "Call Trace:")
                       or stripped.startswith("---[ end trace")):
            break
        m = _DMESG_FRAME.search(ln)
        if m and m.group("address"):
            frames.append(Frame(index=len(frames), function="??",
                                address=int(m.group("address"), 16),
                                unreliable=bool(m.group("unreliable"))))
        elif m:
            frames.append(Frame(index=len(frames), function=m.group("function"),
                                file=m.group("module"), offset=m.group("offset"),
                                unreliable=bool(m.group("unreliable"))))
        elif frames and (rip := _DMESG_RIP.search(ln)):
            # an exception taken in the kernel: the interrupted function, printed nowhere else
            frames.append(Frame(index=len(frames), function=rip.group("function"),
                                file=rip.group("module"), offset=rip.group("offset")))
    if not frames:
        first = next((ln.strip() for ln in lines if ln.strip()), "")
        raise ValueError(f"no kernel call trace frames (func+0x../0x..) in the text: "
                         f"{first[:120]!r}")
    comm = pid = None
    above = lines[:header] if header is not None else lines
    for ln in reversed(above):
        cpu = _DMESG_CPU.search(ln)
        if cpu:
            comm, pid = cpu.group("comm"), int(cpu.group("pid"))
            break
    return Backtrace(frames=tuple(frames), source=DMESG, comm=comm, pid=pid)


def format_dmesg(bt: Backtrace) -> str:
    """Kernel-style ``Call Trace:`` text; parse_dmesg_trace() of it gives back the frames."""
    lines = ["Call Trace:", " <TASK>"]
    for f in bt.frames:
        mark = "? " if f.unreliable else ""
        if f.offset is not None:
            where = f"{f.function}+{f.offset}"
        elif f.function == "??" and f.address is not None:
            where = f"0x{f.address:x}"
        else:
            where = f.function  # a gdb frame: no offset to show
        module = f" [{f.file}]" if f.file and f.line is None else ""
        lines.append(f" {mark}{where}{module}")
    lines.append(" </TASK>")
    return "\n".join(lines) + "\n"


def format_backtrace(bt: Backtrace) -> str:
    """The text of a backtrace in the format it came in; ftrace and perf ones as dmesg's."""
    return format_gdb(bt) if bt.source == GDB else format_dmesg(bt)


# --- reference files -----------------------------------------------------------------------------

_SECTION = re.compile(r"^## trace (\d+)\s*$", re.MULTILINE)
_ANY_GDB_FRAME = re.compile(r"^\s*#\d+\s", re.MULTILINE)


def parse_reference(text: str) -> list[Backtrace]:
    """Backtraces of a reference file: ``## trace N`` sections holding gdb bt or dmesg text.

    Lines before the first section are comments. A section with ``#N`` frame lines is gdb,
    otherwise dmesg.
    """
    parts = _SECTION.split(text)
    traces = []
    for number, body in zip(parts[1::2], parts[2::2]):
        try:
            if _ANY_GDB_FRAME.search(body):
                traces.append(parse_gdb_backtrace(body))
            else:
                traces.append(parse_dmesg_trace(body))
        except ValueError as exc:
            raise ValueError(f"trace {number}: {exc}") from None
    return traces


# --- checks and comparisons ----------------------------------------------------------------------


def missing_in_order(bt: Backtrace, functions: list[str] | tuple[str, ...]) -> list[str]:
    """The ``functions`` not found, in this order, from frame #0 outwards (inlined frames count).

    Names are compared without clone suffixes (:func:`base_function`). Each function is looked
    for after the previous one found; one that is not there (or only before it) is missing and
    the search goes on from the same place.
    """
    chain = [base_function(f) for f in bt.functions()]
    missing = []
    pos = 0
    for name in functions:
        try:
            pos = chain.index(base_function(name), pos) + 1
        except ValueError:
            missing.append(name)
    return missing


def contains_in_order(bt: Backtrace, functions: list[str] | tuple[str, ...]) -> bool:
    """True when ``functions`` is a subsequence of the trace's reliable frames, #0 outwards."""
    return not missing_in_order(bt, functions)


@dataclass(frozen=True)
class ChainDiff:
    """How call chain b differs from a (frames aligned by function name)."""

    added: tuple[Frame, ...]  # frames of b only
    removed: tuple[Frame, ...]  # frames of a only
    inlined_changed: tuple[tuple[Frame, Frame], ...]  # (frame in a, frame in b)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.inlined_changed)


def diff_chains(a: Backtrace, b: Backtrace) -> ChainDiff:
    """Compare two call chains, e.g. the same breakpoint on two kernels.

    The reliable frames are aligned by function name (difflib.SequenceMatcher, on
    :func:`base_function` names: ``oom_kill_process.cold`` is oom_kill_process); a function moved
    elsewhere in the chain shows as removed and added. Inlining is compared only between two gdb
    traces: the kernel's unwinder shows no inlined frames at all.
    """
    fa = [f for f in a.frames if not f.unreliable]
    fb = [f for f in b.frames if not f.unreliable]
    matcher = difflib.SequenceMatcher(None, [base_function(f.function) for f in fa],
                                      [base_function(f.function) for f in fb], autojunk=False)
    added: list[Frame] = []
    removed: list[Frame] = []
    changed: list[tuple[Frame, Frame]] = []
    compare_inlining = a.source == GDB and b.source == GDB
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            if compare_inlining:
                changed += [(x, y) for x, y in zip(fa[i1:i2], fb[j1:j2]) if x.inlined != y.inlined]
            continue
        removed += fa[i1:i2]
        added += fb[j1:j2]
    return ChainDiff(added=tuple(added), removed=tuple(removed), inlined_changed=tuple(changed))


def format_diff(diff: ChainDiff, label_a: str, label_b: str) -> str:
    """Readable text of a ChainDiff: ``+`` only in b, ``-`` only in a, ``~`` inlining changed."""
    head = f"call chain differences {label_a} -> {label_b}:"
    if diff.empty:
        return f"{head} none (same functions, same inlining)\n"
    names = [f.function for f in diff.added + diff.removed] + [
        x.function for x, _ in diff.inlined_changed]
    width = max(24, *(len(n) for n in names)) + 2
    lines = [head]
    lines += [f"  + {f.function:<{width}}(only in {label_b})" for f in diff.added]
    lines += [f"  - {f.function:<{width}}(only in {label_a})" for f in diff.removed]
    for x, y in diff.inlined_changed:
        inl, not_inl = (label_b, label_a) if y.inlined else (label_a, label_b)
        lines.append(f"  ~ {x.function:<{width}}inlined in {inl}, not in {not_inl}")
    return "\n".join(lines) + "\n"
