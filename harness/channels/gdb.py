"""gdb on the machine's gdbstub: the channel (the gdb process, attach, breakpoints, stops).

    with GdbChannel(kernel.debug_vmlinux, vm.gdb_port, bus=bus) as gdb:  # attached, guest runs
        gdb.function_exists("try_charge_memcg")          # from the symbols, the guest runs on
        gdb.claim(on_close=session.cancel)               # the command stream is one user's
        gdb.interrupt()
        number = gdb.insert_breakpoint("try_charge_memcg", condition)
        gdb.resume()
        stop = gdb.wait_stopped(deadline)                # a gdbmi.Stop: reason, bkptno, frame
        gdb.evaluate("nr_pages"), gdb.cli("bt").console  # the guest is stopped
        gdb.continue_()
        ...
        gdb.release()

What to capture at a stop, which stops count and when to stop capturing is harness/capture.py's
(the memcg capture: BreakpointSpec, CaptureSession); this module only talks gdb.

gdb is driven through its machine interface (MI3, parsed in harness/channels/gdbmi.py) on pipes:
every answer is a typed record (`^done`, `*stopped,reason="breakpoint-hit",bkptno="2"`...)
instead of screen text, and the target runs asynchronously (`mi-async`), so the guest runs
freely between hits while gdb waits.

The discipline:
- The guest only stops for breakpoint hits and for the short moments when breakpoints are
  set or removed; it is continued after each. A stop whose breakpoint condition (evaluated by
  gdb) does not match prints nothing but still costs ~5 ms under TCG. Measured on 6.1: memhog
  64 in a 32M cgroup runs 0.24 s, and 40 s with a try_charge_memcg breakpoint whose condition
  never matches. Put breakpoints with conditions that may never match on cold functions.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

from ..events import EventBus
from ..hostcmd import pids_of
from ..paths import cache_dir
from .gdbmi import MIRecord, MIResult, Stop, mi_quote, parse_mi_line

GDB = "gdb"

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


class BreakpointError(GdbError):
    """gdb refused a breakpoint; `reason` is gdb's message."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"cannot set a breakpoint at {location}: {reason}")
        self.location = location
        self.reason = reason


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
        self._stops: deque[Stop] = deque()  # *stopped records seen while a command waited
        self._token = 0
        self._write_lock = threading.Lock()
        self._busy = threading.Lock()  # one user of the command stream at a time
        self._on_close: Callable[[], None] | None = None  # how close() stops a claim's holder
        self._released = threading.Event()  # set when a claim() is released
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
        self.wait_stopped(time.monotonic() + self.command_timeout)
        self._check_task_expression()
        self.resume()
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
        on_close = self._on_close
        if on_close is not None:  # a capture holds the stream: stop it, let it clean up
            on_close()
            self._released.wait(30)
        detached = not self.connected
        proc = self.proc
        if proc is not None and proc.poll() is None and self.connected:
            acquired = self._busy.acquire(timeout=30)
            try:
                if self.running:
                    self.interrupt(timeout=10)
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

    def wake(self) -> None:
        """Make a `wait_stopped` that is waiting now (or the next one) return None."""
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
                self._stops.append(Stop.from_record(rec))
            elif rec.kind == "result" and rec.token == token:
                result = MIResult(rec.cls, rec.results, "".join(console), "".join(log))
                if check and result.error:
                    raise GdbError(f"gdb: {text}: {result.error}")
                return result

    def cli(self, line: str, timeout: float | None = None, check: bool = False) -> MIResult:
        """A CLI command (`bt`, `print x`...) through MI; its printed text is `.console`."""
        return self.command(f"-interpreter-exec console {mi_quote(line)}", timeout, check)

    # --- stops and continues ----------------------------------------------------------------

    def wait_stopped(self, deadline: float | None) -> Stop | None:
        """The next `*stopped` record, or None at the deadline or when woken (`wake`)."""
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
                return Stop.from_record(rec)
            if rec.kind == "notify" and rec.cls == "thread-group-exited":
                raise GdbError("the gdbstub connection closed (QEMU exited?)")

    def interrupt(self, timeout: float = 10.0) -> Stop | None:
        """Stop the guest (if it runs) and return the stop record."""
        if not self.running:
            return self._stops.popleft() if self._stops else None
        r = self.command("-exec-interrupt", timeout=timeout)
        deadline = time.monotonic() + timeout
        stop = self.wait_stopped(deadline)
        while stop is None and time.monotonic() < deadline:  # woken by a cancel: keep waiting
            stop = self.wait_stopped(deadline)
        if stop is None:
            raise GdbError(f"the guest did not stop within {timeout:.0f}s of -exec-interrupt "
                           f"({r.error or 'no stop record'})")
        return stop

    def resume(self, settle: float = 0.0) -> None:
        """Continue the guest; with `settle`, continue again if a stray stop (an interrupt that
        crossed a breakpoint hit) arrives within that many seconds."""
        self._stops.clear()
        r = self.command("-exec-continue")
        if r.error and "running" not in r.error:
            raise GdbError(f"gdb could not continue the guest: {r.error}")
        end = time.monotonic() + settle
        while settle and time.monotonic() < end:
            stop = self.wait_stopped(end)
            if stop is None:
                break
            self.bus.emit("debug.gdb", f"stray stop ({stop.reason or '?'}): continuing")
            self.command("-exec-continue")

    def continue_(self) -> MIResult:
        """`-exec-continue` after a stop, its answer as it is (a failure shows at the next
        `wait_stopped`)."""
        return self.command("-exec-continue")

    # --- breakpoints -------------------------------------------------------------------------

    def insert_breakpoint(self, location: str, condition: str | None = None) -> int:
        """Set a breakpoint (with a gdb condition: it stops only when that is true); its
        number. The guest must be stopped. Raises BreakpointError with gdb's reason."""
        cmd = "-break-insert " + (f"-c {mi_quote(condition)} " if condition else "")
        r = self.command(cmd + mi_quote(location))
        if r.error:
            raise BreakpointError(location, r.error)
        return int(r.results["bkpt"]["number"])

    def delete_breakpoint(self, number: int) -> None:
        self.command(f"-break-delete {number}")

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

    def claim(self, on_close: Callable[[], None]) -> None:
        """Take the command stream for a user that runs in the background (a capture) until
        it calls `release()`, from whichever thread. `close()` calls `on_close` (which should
        make the user finish: `wake()` it) and waits for the release, at most 30 s."""
        if not self._busy.acquire(timeout=self.command_timeout):
            raise GdbError("gdb is busy with another capture")
        self._released.clear()
        self._on_close = on_close

    def release(self) -> None:
        self._on_close = None
        self._busy.release()
        self._released.set()


# --- the stub directly ----------------------------------------------------------------------------

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
