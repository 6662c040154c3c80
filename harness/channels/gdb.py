"""gdb on the machine's gdbstub: bounded breakpoint captures from a running kernel.

    with GdbChannel(kernel.debug_vmlinux, vm.gdb_port, bus=bus) as gdb:
        session = gdb.capture([BreakpointSpec("try_charge_memcg", comm="memhog")],
                              expressions=["nr_pages"], timeout=60)
        vm.ssh.run("memhog 64")          # the workload, while the session waits in the background
        hits = session.wait()

gdb is driven through its machine interface (MI3) on pipes: every answer is a typed record
(`^done`, `*stopped,reason="breakpoint-hit",bkptno="2"`...) instead of screen text, and the
target runs asynchronously (`mi-async`), so the guest runs freely between hits while gdb waits.
A small MI parser is here rather than a dependency (pygdbmi would bring its own process
handling; we need ours: setpriv --pdeathsig, the stop/continue discipline below).

The discipline:
- The guest only stops for breakpoint hits and for the short moments when breakpoints are
  set or removed; it is continued after each. A capture is bounded: each breakpoint is deleted
  (by the number in its stop record: `disable $bpnum` would hit the newest breakpoint) once it
  has `count` hits, and the whole capture has a deadline. Conditions (the current task's comm,
  the memcg's cgroup, functions on the call chain) are evaluated by gdb: a stop that does not
  match prints nothing but still costs ~5 ms under TCG. Measured on 6.1: memhog 64 in a 32M
  cgroup runs 0.24 s, and 40 s with a try_charge_memcg breakpoint whose condition never
  matches. Put breakpoints with filters that may never match on cold functions.
- At exit, whatever happened: breakpoints deleted, gdb detached (QEMU's stub then drops its
  breakpoints and resumes the guest), gdb quit, then killed if it lingers. If gdb died or hung
  while the guest was stopped (QEMU then keeps it paused), a remote-protocol detach sent to
  the stub directly resumes it (`rsp_detach`).
- gdb runs under util-linux `setpriv --pdeathsig KILL`: it dies with the harness.

The current task comes from the per-cpu variable the kernel keeps it in, read through the
stopped vCPU's `$gs_base` (QEMU exposes it): `current_task` up to 6.1,
`pcpu_hot.current_task` from 6.2 on; which one exists is detected at attach time.

gdb 13 indexes the DWARF lazily: loading the file takes ~0.5 s, the first type lookup waits for
the index (~14 s for 6.1, ~16 s for 6.12). The index is kept in `$KHARNESS_CACHE/gdb-index`
(gdb's index-cache, by build ID): with it the whole load is ~0.5 s. It is done before
attaching, so the guest never waits for it.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ..events import EventBus
from ..hostcmd import pids_of
from ..paths import cache_dir

if TYPE_CHECKING:
    from ..frames import Backtrace

GDB = "gdb"
CALLER_DEPTH = 40  # frames searched by BreakpointSpec.callers

# What gdb is told before it loads anything. `set auto-load off`: no .gdbinit or python scripts
# from the kernel tree; debuginfod would go to the network.
SETTINGS = (
    "set auto-load off", "set debuginfod enabled off", "set pagination off", "set confirm off",
    "set print pretty off", "set width 0", "set height 0", "set print null-stop on",
    "set max-value-size 1048576", "set backtrace limit 64", "set mi-async on",
)

# Defined in gdb's python once: does a linespec (function, file:line) resolve, as `break` would?
# decode_line finds static and inlined-only functions (charge_memcg on 6.12) and needs no target.
_PY_EXISTS = (
    "def _kh_exists(spec):\n"
    "    try:\n"
    "        return bool(gdb.decode_line(spec)[1])\n"
    "    except gdb.error:\n"
    "        return False\n"
)


class GdbError(RuntimeError):
    """gdb could not do what was asked (start, load, attach, set a breakpoint...)."""


# --- the machine interface: records --------------------------------------------------------------

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


# --- what a capture asks and gives back ----------------------------------------------------------

@dataclass(frozen=True)
class BreakpointSpec:
    """Where to stop and for whom. `location`: a function or FILE:LINE. `comm`: only when the
    current task's comm is this. `cgroup`: only when the memcg being charged (a `memcg`
    variable at the location, else the current task's memory cgroup) is a cgroup whose leaf
    name is the last component of this path (best effort: the leaf name, not the whole path).
    `callers`: only when all these functions (inlined ones count) are on the call chain within
    CALLER_DEPTH frames. memhog's first charges are exec's page tables, and under
    do_anonymous_page the page table comes before the folio: ("__mem_cgroup_charge",
    "do_anonymous_page") is the anonymous folio charge. gdb unwinds for it on every stop that
    passed the other filters, so it costs more than they do."""

    location: str
    comm: str | None = None
    cgroup: str | None = None
    callers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One captured stop."""

    breakpoint: BreakpointSpec
    location: str  # where it stopped: "try_charge_memcg at mm/memcontrol.c:2632"
    raw_bt: str  # gdb's `bt` output, as printed
    backtrace: Backtrace | None  # raw_bt parsed by harness.frames; None if it could not be
    values: dict[str, str]  # expression -> value, or "<error: ...>"
    comm: str | None
    pid: int | None
    elapsed: float  # seconds since the capture started
    outputs: dict[str, str] = field(default_factory=dict)  # gdb command -> what it printed


# A command's output kept per hit: its last lines (lx-dmesg prints the whole log buffer).
OUTPUT_LINES = 200


class CaptureSession:
    """A capture running in the background; `wait()` for its hits."""

    def __init__(self, channel: GdbChannel, breakpoints: dict[int, BreakpointSpec], count: int,
                 expressions: Sequence[str], timeout: float,
                 commands: Sequence[str] = ()) -> None:
        self._channel = channel
        self._by_number = breakpoints  # gdb breakpoint number -> spec
        self.breakpoints = list(dict.fromkeys(breakpoints.values()))
        self.count = count
        self.expressions = list(expressions)
        self.commands = list(commands)
        self.timeout = timeout
        self.hits: list[Hit] = []
        self.counts: dict[int, int] = dict.fromkeys(breakpoints, 0)
        self.errors: list[str] = []
        self.timed_out = False
        self.cancelled = False
        self.started = 0.0
        self.finished = 0.0
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def missed(self) -> list[BreakpointSpec]:
        """Breakpoints that never hit."""
        hit = {h.breakpoint for h in self.hits}
        return [b for b in self.breakpoints if b not in hit]

    @property
    def incomplete(self) -> list[BreakpointSpec]:
        """Breakpoints with fewer than `count` hits."""
        return [spec for number, spec in self._by_number.items()
                if self.counts[number] < self.count]

    @property
    def first_hit_seconds(self) -> float | None:
        return self.hits[0].elapsed if self.hits else None

    def wait(self, timeout: float | None = None) -> list[Hit]:
        """Block until every breakpoint has `count` hits or the capture's deadline passed (the
        guest is running again and the breakpoints are gone by then); the hits so far."""
        limit = timeout
        if limit is None and self.started:
            limit = max(0.0, self.started + self.timeout - time.monotonic()) + 60.0
        self._done.wait(limit)
        if not self._done.is_set():
            raise GdbError(f"capture did not finish within {limit:.0f}s (gdb not answering)")
        return list(self.hits)

    def cancel(self) -> None:
        """Stop capturing now (the breakpoints are removed, the guest continued)."""
        self._cancel.set()
        self._channel._wake()

    def __repr__(self) -> str:
        return (f"<CaptureSession {[b.location for b in self.breakpoints]} "
                f"hits={len(self.hits)} done={self.done} timed_out={self.timed_out}>")


# --- the channel -----------------------------------------------------------------------------------

def _launcher() -> list[str]:
    """As for QEMU (machine.py): if the harness dies where no `finally` runs, gdb dies too."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


_WAKE = MIRecord("other", text="<wake>")


class GdbChannel:
    name = "gdb"

    def __init__(self, vmlinux: Path | str | None, port: int, *, host: str = "127.0.0.1",
                 bus: EventBus | None = None, log: Path | None = None,
                 index_cache: Path | None = None, gdb: str = GDB,
                 command_timeout: float = 60.0, load_timeout: float = 300.0,
                 scripts: Path | None = None) -> None:
        if vmlinux is None:
            raise GdbError("no vmlinux with debug info: fetch it first "
                           "(`kharness kernel fetch --debug SPEC`, kernels.fetch_debug)")
        self.vmlinux = Path(vmlinux)
        self.scripts = scripts  # the kernel's vmlinux-gdb.py (lx-dmesg, $lx_current()...)
        self.port = port
        self.host = host
        self.bus = bus or EventBus()
        self.log_path = log
        self.index_cache = index_cache if index_cache is not None else cache_dir() / "gdb-index"
        self.gdb = gdb
        self.command_timeout = command_timeout
        self.load_timeout = load_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.current_task: str | None = None  # the expression for the current task_struct *
        self.load_seconds = 0.0
        self.attach_seconds = 0.0
        self.connected = False
        self.running = False  # the guest runs (as gdb last reported)
        self._records: queue.Queue[MIRecord] = queue.Queue()
        self._stops: deque[MIRecord] = deque()  # *stopped records seen while a command waited
        self._token = 0
        self._write_lock = threading.Lock()
        self._busy = threading.Lock()  # one user of the command stream at a time
        self._session: CaptureSession | None = None
        self._reader: threading.Thread | None = None
        self._log: Any = None
        self._closed = False
        self._t0 = time.monotonic()

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def argv(self) -> list[str]:
        return [self.gdb, "--nx", "--quiet", "--interpreter=mi3"]

    def start(self) -> None:
        """Start gdb, load the symbols, attach to the stub, leave the guest running."""
        if not self.vmlinux.is_file():
            raise GdbError(f"{self.vmlinux} does not exist: fetch the debug symbols first "
                           "(`kharness kernel fetch --debug SPEC`)")
        argv = self.argv()
        if not shutil.which(argv[0]):
            raise GdbError(f"{argv[0]} not found: run `kharness setup` (apt-get install gdb)")
        if self.log_path:
            self._log = open(self.log_path, "a", buffering=1, errors="replace")  # noqa: SIM115
        self.proc = subprocess.Popen([*_launcher(), *argv], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="gdb-mi", daemon=True)
        self._reader.start()
        for setting in SETTINGS:
            self.cli(setting)
        if self.index_cache:
            # gdb's DWARF index of the vmlinux, kept by build ID: the first lookup after a
            # load takes ~10 s without it (6.1 under gdb 13), ~0.2 s with it.
            self.index_cache.mkdir(parents=True, exist_ok=True)
            self.cli(f"set index-cache directory {self.index_cache}")
            self.cli("set index-cache enabled on")
        self.cli("python " + f"exec({_PY_EXISTS!r})", check=True)
        start = time.monotonic()
        r = self.command(f"-file-exec-and-symbols {mi_quote(str(self.vmlinux))}",
                         timeout=self.load_timeout)
        if r.error:
            raise GdbError(f"gdb could not load {self.vmlinux}: {r.error}")
        if self.scripts:
            self._load_scripts(self.scripts)
        # gdb indexes the DWARF lazily: the first type lookup waits for the index. Do it here,
        # before attaching, not with the guest stopped (and it counts as loading).
        self.current_task = self._current_task_expression()
        for warm in ("sizeof(struct task_struct)", "sizeof(struct mem_cgroup)"):
            self.command(f"-data-evaluate-expression {mi_quote(warm)}", timeout=self.load_timeout)
        self.load_seconds = time.monotonic() - start
        self.bus.emit("gdb.load", f"gdb loaded {self.vmlinux.name} in {self.load_seconds:.1f}s",
                      seconds=self.load_seconds, vmlinux=str(self.vmlinux))
        start = time.monotonic()
        r = self.command(f"-target-select remote {self.host}:{self.port}",
                         timeout=self.command_timeout)
        if r.error:
            raise GdbError(f"gdb could not attach to the gdbstub on {self.host}:{self.port}: "
                           f"{r.error} (was the machine started with MachineConfig.gdb=True?)")
        self.connected = True
        self._wait_stopped(time.monotonic() + self.command_timeout)
        self._check_task_expression()
        self._resume()
        self.attach_seconds = time.monotonic() - start
        self.bus.emit("gdb.attached", f"gdb attached to {self.host}:{self.port} in "
                      f"{self.attach_seconds:.2f}s", seconds=self.attach_seconds)

    def _load_scripts(self, script: Path) -> None:
        """The kernel's own gdb helpers (scripts/gdb, installed by `kharness kernel build` as
        gdb/vmlinux-gdb.py next to the vmlinux): lx-dmesg, lx-ps, $lx_current()..."""
        self.cli(f"add-auto-load-safe-path {script.parent}")
        r = self.cli(f"source {script}", timeout=self.load_timeout)
        if r.error or "lx_current" not in self.cli("help function").console:
            raise GdbError(f"gdb could not load the kernel's gdb scripts {script}: "
                           f"{r.error or r.console.strip() or 'no $lx_current after loading'}")

    def close(self) -> None:
        """Breakpoints deleted, gdb detached (the guest runs), gdb gone. Never raises."""
        if self._closed:
            return
        self._closed = True
        session = self._session
        if session is not None and not session.done:
            session.cancel()
            session._done.wait(30)
        detached = not self.connected
        proc = self.proc
        if proc is not None and proc.poll() is None and self.connected:
            acquired = self._busy.acquire(timeout=30)
            try:
                if self.running:
                    self._interrupt(timeout=10)
                self.command("-break-delete", timeout=10)
                r = self.command("-target-detach", timeout=10)
                detached = r.cls == "done"
                self.connected = not detached
                self.command("-gdb-exit", timeout=5)
            except (GdbError, OSError) as exc:
                self.bus.emit("debug.gdb", f"gdb did not detach cleanly: {exc}")
            finally:
                if acquired:
                    self._busy.release()
        if proc is not None:
            for sig, wait in ((None, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                if proc.poll() is not None:
                    break
                try:
                    if sig is not None:
                        proc.send_signal(sig)
                    proc.wait(timeout=wait)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
        # The reader sees EOF once gdb is gone: join it before closing its pipe.
        if self._reader is not None:
            self._reader.join(timeout=5)
        if proc is not None:
            streams = [proc.stdin]
            if self._reader is None or not self._reader.is_alive():
                streams.append(proc.stdout)
            for stream in streams:
                with contextlib.suppress(OSError):
                    if stream:
                        stream.close()
        if not detached:
            # gdb went away with the guest possibly stopped (QEMU leaves it paused when the
            # debugger's connection closes): a bare detach on the stub resumes it.
            resumed = rsp_detach(self.host, self.port)
            self.bus.emit("debug.gdb", "guest resumed through the stub" if resumed
                          else "could not reach the gdbstub to resume the guest")
        if proc is not None:
            self.bus.emit("gdb.detached", f"gdb detached from {self.host}:{self.port}"
                          + ("" if detached else " (resumed through the stub)"))
        self.connected = False
        self.running = False
        if self._log is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- MI plumbing ---------------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            if self._log is not None:
                with contextlib.suppress(ValueError):
                    self._log.write(f"{time.monotonic() - self._t0:9.3f} < {line}")
            rec = parse_mi_line(line)
            if rec.kind == "prompt":
                continue
            if rec.kind == "exec":
                self.running = rec.cls == "running"
            elif rec.kind == "result" and rec.cls == "running":
                self.running = True
            self._records.put(rec)
        self._records.put(MIRecord("eof"))

    def _wake(self) -> None:
        self._records.put(_WAKE)

    def _send(self, text: str) -> int:
        with self._write_lock:
            self._token += 1
            token = self._token
            line = f"{token}{text}\n"
            if self._log is not None:
                with contextlib.suppress(ValueError):
                    self._log.write(f"{time.monotonic() - self._t0:9.3f} > {line}")
            if self.proc is None or self.proc.stdin is None:
                raise GdbError("gdb is not running")
            try:
                self.proc.stdin.write(line.encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise GdbError(f"gdb is gone ({exc})") from exc
            return token

    def _next(self, deadline: float | None) -> MIRecord | None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return self._records.get(timeout=remaining)
        except queue.Empty:
            return None

    def command(self, text: str, timeout: float | None = None, check: bool = False) -> MIResult:
        """Send one MI command and wait for its result record. `*stopped` records that arrive
        meanwhile are kept for whoever waits for a stop."""
        token = self._send(text)
        deadline = time.monotonic() + (timeout or self.command_timeout)
        console: list[str] = []
        log: list[str] = []
        while True:
            rec = self._next(deadline)
            if rec is None:
                raise GdbError(f"gdb did not answer {text!r} within "
                               f"{timeout or self.command_timeout:.0f}s")
            if rec.kind == "eof":
                self._records.put(rec)
                raise GdbError(f"gdb exited while running {text!r}: "
                               + "".join(log[-5:]).strip())
            if rec.kind == "console":
                console.append(rec.text)
            elif rec.kind == "log":
                log.append(rec.text)
            elif rec.kind == "exec" and rec.cls == "stopped":
                self._stops.append(rec)
            elif rec.kind == "result" and rec.token == token:
                result = MIResult(rec.cls, rec.results, "".join(console), "".join(log))
                if check and result.error:
                    raise GdbError(f"gdb: {text}: {result.error}")
                return result

    def cli(self, line: str, timeout: float | None = None, check: bool = False) -> MIResult:
        """A CLI command (`bt`, `print x`...) through MI; its printed text is `.console`."""
        return self.command(f"-interpreter-exec console {mi_quote(line)}", timeout, check)

    def _wait_stopped(self, deadline: float | None) -> MIRecord | None:
        """The next `*stopped` record, or None at the deadline or when woken (cancel)."""
        if self._stops:
            return self._stops.popleft()
        while True:
            rec = self._next(deadline)
            if rec is None or rec is _WAKE:
                return None
            if rec.kind == "eof":
                self._records.put(rec)
                raise GdbError("gdb exited")
            if rec.kind == "exec" and rec.cls == "stopped":
                return rec
            if rec.kind == "notify" and rec.cls == "thread-group-exited":
                raise GdbError("the gdbstub connection closed (QEMU exited?)")

    def _interrupt(self, timeout: float = 10.0) -> MIRecord | None:
        """Stop the guest (if it runs) and return the stop record."""
        if not self.running:
            return self._stops.popleft() if self._stops else None
        r = self.command("-exec-interrupt", timeout=timeout)
        deadline = time.monotonic() + timeout
        stop = self._wait_stopped(deadline)
        while stop is None and time.monotonic() < deadline:  # woken by a cancel: keep waiting
            stop = self._wait_stopped(deadline)
        if stop is None:
            raise GdbError(f"the guest did not stop within {timeout:.0f}s of -exec-interrupt "
                           f"({r.error or 'no stop record'})")
        return stop

    def _resume(self, settle: float = 0.0) -> None:
        """Continue the guest; with `settle`, continue again if a stray stop (an interrupt that
        crossed a breakpoint hit) arrives within that many seconds."""
        self._stops.clear()
        r = self.command("-exec-continue")
        if r.error and "running" not in r.error:
            raise GdbError(f"gdb could not continue the guest: {r.error}")
        end = time.monotonic() + settle
        while settle and time.monotonic() < end:
            stop = self._wait_stopped(end)
            if stop is None:
                break
            self.bus.emit("debug.gdb", f"stray stop ({stop.results.get('reason', '?')}): "
                          "continuing")
            self.command("-exec-continue")

    # --- the kernel's current task ---------------------------------------------------------------

    def _current_task_expression(self) -> str:
        for symbol in ("current_task", "pcpu_hot.current_task"):
            r = self.command(f"-data-evaluate-expression {mi_quote('&' + symbol)}")
            if not r.error:
                return f"(*(struct task_struct **)($gs_base + (unsigned long)&{symbol}))"
        raise GdbError(f"{self.vmlinux}: neither current_task nor pcpu_hot.current_task is "
                       "known: cannot tell the current task (not an x86-64 Linux vmlinux?)")

    def _check_task_expression(self) -> None:
        r = self.command(f"-data-evaluate-expression {mi_quote(self.current_task + '->pid')}")
        if r.error:
            raise GdbError(f"cannot read the current task ({self.current_task}): {r.error} "
                           "(does the stub expose $gs_base? is the kernel booted with nokaslr "
                           "and the vmlinux the booted one?)")

    # --- queries -------------------------------------------------------------------------------

    def function_exists(self, name: str) -> bool:
        """Does `name` (a function, inlined-only ones too, or FILE:LINE) resolve to code in this
        kernel, as `break name` would? From the symbols alone: the guest is not stopped."""
        with self._held():
            r = self.cli(f"python print(int(_kh_exists({name!r})))", check=True)
        return r.console.strip().endswith("1")

    def evaluate(self, expression: str) -> str:
        """An expression's value while the guest is stopped (`print EXPR` without `$N = `);
        errors come back as `<error: ...>`."""
        r = self.command(f"-data-evaluate-expression {mi_quote(expression)}")
        return f"<error: {r.error}>" if r.error else str(r.results.get("value", ""))

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        if not self._busy.acquire(timeout=self.command_timeout):
            raise GdbError("gdb is busy with a capture: wait() for it first")
        try:
            yield
        finally:
            self._busy.release()

    # --- capture ---------------------------------------------------------------------------------

    def _condition(self, spec: BreakpointSpec, memcg_var: bool) -> str | None:
        task = self.current_task
        terms = []
        if spec.comm:
            terms.append(f"$_streq({task}->comm, {_c_string(spec.comm[:15])})")
        if spec.cgroup:
            leaf = spec.cgroup.rstrip("/").rsplit("/", 1)[-1] or "/"
            memcg = ("memcg" if memcg_var else
                     f"((struct mem_cgroup *){task}->cgroups->subsys[memory_cgrp_id])")
            terms.append(f"$_streq({memcg}->css.cgroup->kn->name, {_c_string(leaf)})")
        for caller in spec.callers:
            terms.append(f"$_any_caller_is({_c_string(caller)}, {CALLER_DEPTH})")
        return " && ".join(terms) or None

    def _insert(self, spec: BreakpointSpec) -> int:
        errors = []
        for memcg_var in ((True, False) if spec.cgroup else (True,)):
            cond = self._condition(spec, memcg_var)
            cmd = "-break-insert " + (f"-c {mi_quote(cond)} " if cond else "")
            r = self.command(cmd + mi_quote(spec.location))
            if not r.error:
                return int(r.results["bkpt"]["number"])
            errors.append(r.error)
            if "memcg" not in r.error:
                break
        raise GdbError(f"cannot set a breakpoint at {spec.location} in {self.vmlinux.name}: "
                       f"{'; '.join(errors)}")

    def capture(self, breakpoints: Sequence[BreakpointSpec], count: int = 1,
                expressions: Sequence[str] = (), timeout: float = 60.0,
                commands: Sequence[str] = ()) -> CaptureSession:
        """Stop the guest, set the breakpoints, continue it, and capture in the background:
        on each of the first `count` hits of each breakpoint, `bt`, the expressions and the
        current task, the output of the gdb `commands` (`lx-dmesg`...); then that breakpoint
        is deleted. Returns at once: run the workload,
        then `wait()`. Raises GdbError (with the guest running again) when a location does
        not resolve: check with `function_exists` first."""
        if not breakpoints:
            raise ValueError("capture needs at least one breakpoint")
        if count < 1:
            raise ValueError("count must be at least 1")
        if not self._busy.acquire(timeout=self.command_timeout):
            raise GdbError("gdb is busy with another capture")
        numbers: dict[int, BreakpointSpec] = {}
        try:
            self._interrupt()
            for spec in breakpoints:
                numbers[self._insert(spec)] = spec
            session = CaptureSession(self, numbers, count, expressions, timeout, commands)
            self._session = session
            self.bus.emit("gdb.capture", "capturing " + ", ".join(
                b.location + (f" (comm {b.comm})" if b.comm else "") for b in breakpoints)
                + f": {count} hit(s) each, {timeout:.0f}s at most")
            self._resume()
            session.started = time.monotonic()
        except BaseException:
            try:
                for number in numbers:
                    self.command(f"-break-delete {number}")
                if self.connected and not self.running:
                    self._resume()
            except GdbError:
                pass
            self._busy.release()
            raise
        session._thread = threading.Thread(target=self._capture_loop, args=(session,),
                                           name="gdb-capture", daemon=True)
        session._thread.start()
        return session

    def _capture_loop(self, session: CaptureSession) -> None:
        deadline = session.started + session.timeout
        remaining = set(session.counts)
        try:
            while remaining and not session._cancel.is_set():
                stop = self._wait_stopped(deadline)
                if stop is None:
                    if session._cancel.is_set():
                        break
                    if time.monotonic() >= deadline:
                        session.timed_out = True
                        break
                    continue
                number = _int(stop.results.get("bkptno"))
                if stop.results.get("reason") == "breakpoint-hit" and number in remaining:
                    hit = self._record_hit(session, number, stop)
                    if hit is not None:
                        session.hits.append(hit)
                        session.counts[number] += 1
                        self.bus.emit("gdb.hit", f"hit {hit.location} in {hit.comm}[{hit.pid}]"
                                      f" after {hit.elapsed:.2f}s", elapsed=hit.elapsed,
                                      location=hit.location, comm=hit.comm, pid=hit.pid)
                        if session.counts[number] >= session.count:
                            self.command(f"-break-delete {number}")
                            remaining.discard(number)
                elif stop.results.get("reason") in ("exited", "exited-signalled",
                                                    "exited-normally"):
                    raise GdbError("the target went away (QEMU exited?)")
                if remaining and not session._cancel.is_set():
                    self.command("-exec-continue")
            session.cancelled = session._cancel.is_set()
            # Done, timed out or cancelled: the breakpoints go, the guest runs on. An interrupt
            # can cross a breakpoint hit: then a second stop may follow the continue.
            interrupted = self.running
            if interrupted:
                self._interrupt()
            for number in remaining:
                self.command(f"-break-delete {number}")
            self._resume(settle=0.3 if interrupted else 0.0)
        except Exception as exc:  # noqa: BLE001 - recorded; close() resumes the guest
            session.errors.append(str(exc))
            self.bus.emit("gdb.error", f"capture failed: {exc}")
        finally:
            session.finished = time.monotonic()
            self._session = None
            self._busy.release()
            session._done.set()
            missed = ", ".join(b.location for b in session.missed)
            self.bus.emit("gdb.captured", f"captured {len(session.hits)} hit(s) in "
                          f"{session.finished - session.started:.1f}s"
                          + (f"; never hit: {missed}" if missed else ""),
                          hits=len(session.hits), missed=[b.location for b in session.missed])

    def _record_hit(self, session: CaptureSession, number: int, stop: MIRecord) -> Hit | None:
        elapsed = time.monotonic() - session.started
        spec = session._by_number[number]
        task = self.current_task
        comm = self.evaluate(f"{task}->comm")
        comm = comm[1:-1] if comm.startswith('"') and comm.endswith('"') else None
        if spec.comm and comm is not None and comm != spec.comm[:15]:
            return None  # the condition failed to evaluate and gdb stopped anyway
        pid = _int(self.evaluate(f"{task}->pid"))
        values = {expr: self.evaluate(expr) for expr in session.expressions}
        raw = self.cli("bt").console
        outputs = {}
        for command in session.commands:
            r = self.cli(command, timeout=self.command_timeout)
            text = r.console.rstrip("\n") if not r.error else f"<error: {r.error}>"
            lines = text.splitlines()
            if len(lines) > OUTPUT_LINES:
                text = "\n".join([f"[... {len(lines) - OUTPUT_LINES} earlier lines]",
                                  *lines[-OUTPUT_LINES:]])
            outputs[command] = text
        return Hit(breakpoint=spec, location=_where(stop.results.get("frame", {})), raw_bt=raw,
                   backtrace=_parse_backtrace(raw, comm, pid, values), values=values,
                   comm=comm, pid=pid, elapsed=elapsed, outputs=outputs)


# --- helpers --------------------------------------------------------------------------------------

def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _where(frame: dict[str, Any]) -> str:
    func = frame.get("func", "??")
    if frame.get("file") and frame.get("line"):
        return f"{func} at {frame['file']}:{frame['line']}"
    return f"{func} ({frame.get('addr', '?')})"


def _parse_backtrace(raw: str, comm: str | None, pid: int | None,
                     values: dict[str, str]) -> Backtrace | None:
    try:
        from .. import frames
    except ImportError:
        return None
    try:
        bt = frames.parse_gdb_backtrace(raw)
    except ValueError:
        return None
    return replace(bt, comm=comm, pid=pid, values=dict(values))


def _rsp_packet(payload: str) -> bytes:
    return f"${payload}#{sum(payload.encode()) % 256:02x}".encode()


def rsp_detach(host: str, port: int, timeout: float = 5.0) -> bool:
    """Detach through the gdb remote protocol directly: QEMU's stub drops all breakpoints and
    resumes the guest. For when gdb died with the guest stopped (QEMU keeps it paused then).
    The stub keeps the multiprocess mode the dead gdb negotiated (a bare `D` gets E22), so
    this negotiates it too and detaches process 1. True when the stub said OK."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            end = time.monotonic() + timeout

            def exchange(payload: str) -> bytes:
                s.sendall(_rsp_packet(payload))
                data = b""
                while time.monotonic() < end:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    hash_at = data.find(b"#", data.find(b"$"))
                    if data.find(b"$") >= 0 and 0 <= hash_at <= len(data) - 3:
                        s.sendall(b"+")
                        return data[data.find(b"$") + 1:hash_at]
                return b""

            exchange("qSupported:multiprocess+")
            return exchange("D;1") == b"OK"
    except OSError:
        return False


def gdb_pids(parent: int | None = None) -> set[int]:
    """gdb processes running now (children of `parent` only, when given): for tests."""
    return pids_of("gdb", parent)
