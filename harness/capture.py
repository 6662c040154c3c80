"""A scenario's `gdb:` section on one machine: breakpoints through QEMU's gdbstub while the
steps run, then checks on what was captured.

The runner calls `GdbCapture.start()` after the cgroups are set up and before the first step,
`finish()` after the last one. Breakpoints whose function the kernel does not have (6.12 has no
mem_cgroup_move_task without CONFIG_MEMCG_V1) are not set: their checks skip with that reason.
Every captured hit becomes data in the result (`backtraces`: frames as dicts, gdb-style text).

Underneath, the memcg capture on a gdb channel (harness/channels/gdb.py talks gdb; what a stop
means is decided here):

    with GdbChannel(kernel.debug_vmlinux, vm.gdb_port, bus=bus) as gdb:
        session = start_capture(gdb, [BreakpointSpec("try_charge_memcg", comm="memhog")],
                                expressions=["nr_pages"], timeout=60)
        vm.ssh.run("memhog 64")          # the workload, while the session waits in the background
        hits = session.wait()

A capture is bounded: each breakpoint is deleted (by the number in its stop record: `disable
$bpnum` would hit the newest breakpoint) once it has `count` hits, and the whole capture has a
deadline. The filters (the current task's comm, the memcg's cgroup, functions on the call
chain) are breakpoint conditions, evaluated by gdb: a stop that does not match costs ~5 ms under
TCG and never reaches the loop here (see the channel's discipline: put filters that may never
match on cold functions). The guest is stopped while a hit is recorded (`bt`, the expressions,
the commands) and continued after it; when the capture ends (done, deadline, cancel) its
breakpoints go and the guest runs on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .channels.gdb import BreakpointError, GdbChannel, GdbError
from .channels.gdbmi import Stop
from .checks import Check
from .events import EventBus
from .frames import Backtrace, base_function, format_gdb, missing_in_order, parse_gdb_backtrace
from .results import CapturedBacktrace
from .scenario import GdbBreakpoint

# Seconds the capture keeps going after the last step ended (hits still in flight: an OOM kill
# that the step's exit raced).
GRACE = 1.0
CALLER_DEPTH = 40  # frames searched by BreakpointSpec.callers
# A command's output kept per hit: its last lines (lx-dmesg prints the whole log buffer).
OUTPUT_LINES = 200


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


# --- the capture: breakpoints set, each stop judged and recorded, the guest continued -----------

def start_capture(channel: GdbChannel, breakpoints: Sequence[BreakpointSpec], count: int = 1,
                  expressions: Sequence[str] = (), timeout: float = 60.0,
                  commands: Sequence[str] = ()) -> CaptureSession:
    """Stop the guest, set the breakpoints, continue it, and capture in the background:
    on each of the first `count` hits of each breakpoint, `bt`, the expressions and the
    current task, the output of the gdb `commands` (`lx-dmesg`...); then that breakpoint
    is deleted. Returns at once: run the workload,
    then `wait()`. Raises GdbError (with the guest running again) when a location does
    not resolve: check with `channel.function_exists` first."""
    if not breakpoints:
        raise ValueError("capture needs at least one breakpoint")
    if count < 1:
        raise ValueError("count must be at least 1")
    session: CaptureSession | None = None

    def stop() -> None:  # the channel closes under a running capture
        if session is not None:
            session.cancel()
    channel.claim(on_close=stop)
    numbers: dict[int, BreakpointSpec] = {}
    try:
        channel.interrupt()
        for spec in breakpoints:
            numbers[_insert(channel, spec)] = spec
        session = CaptureSession(channel, numbers, count, expressions, timeout, commands)
        channel.bus.emit("gdb.capture", "capturing " + ", ".join(
            b.location + (f" (comm {b.comm})" if b.comm else "") for b in breakpoints)
            + f": {count} hit(s) each, {timeout:.0f}s at most")
        channel.resume()
        session.started = time.monotonic()
    except BaseException:
        try:
            for number in numbers:
                channel.delete_breakpoint(number)
            if channel.connected and not channel.running:
                channel.resume()
        except GdbError:
            pass
        channel.release()
        raise
    session._thread = threading.Thread(target=session._run, name="gdb-capture", daemon=True)
    session._thread.start()
    return session


def _condition(task: str | None, spec: BreakpointSpec, memcg_var: bool) -> str | None:
    """The breakpoint condition for a spec's filters; `task`: the current task_struct *."""
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


def _insert(channel: GdbChannel, spec: BreakpointSpec) -> int:
    """Set a spec's breakpoint; a cgroup filter uses the location's `memcg` variable, or the
    current task's memcg where there is none."""
    errors = []
    for memcg_var in ((True, False) if spec.cgroup else (True,)):
        condition = _condition(channel.current_task, spec, memcg_var)
        try:
            return channel.insert_breakpoint(spec.location, condition)
        except BreakpointError as exc:
            errors.append(exc.reason)
            if "memcg" not in exc.reason:
                break
    raise GdbError(f"cannot set a breakpoint at {spec.location} in {channel.vmlinux.name}: "
                   f"{'; '.join(errors)}")


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
        self._channel.wake()

    def __repr__(self) -> str:
        return (f"<CaptureSession {[b.location for b in self.breakpoints]} "
                f"hits={len(self.hits)} done={self.done} timed_out={self.timed_out}>")

    def _run(self) -> None:
        """The capture thread: per stop, does it count (a hit of a breakpoint still wanted,
        the comm right), record it, delete the breakpoint once it has `count`, continue."""
        channel = self._channel
        deadline = self.started + self.timeout
        remaining = set(self.counts)
        try:
            while remaining and not self._cancel.is_set():
                stop = channel.wait_stopped(deadline)
                if stop is None:
                    if self._cancel.is_set():
                        break
                    if time.monotonic() >= deadline:
                        self.timed_out = True
                        break
                    continue
                number = stop.breakpoint
                if stop.reason == "breakpoint-hit" and number in remaining:
                    hit = self._record_hit(number, stop)
                    if hit is not None:
                        self.hits.append(hit)
                        self.counts[number] += 1
                        channel.bus.emit("gdb.hit", f"hit {hit.location} in {hit.comm}[{hit.pid}]"
                                         f" after {hit.elapsed:.2f}s", elapsed=hit.elapsed,
                                         location=hit.location, comm=hit.comm, pid=hit.pid)
                        if self.counts[number] >= self.count:
                            channel.delete_breakpoint(number)
                            remaining.discard(number)
                elif stop.exited:
                    raise GdbError("the target went away (QEMU exited?)")
                if remaining and not self._cancel.is_set():
                    channel.continue_()
            self.cancelled = self._cancel.is_set()
            # Done, timed out or cancelled: the breakpoints go, the guest runs on. An interrupt
            # can cross a breakpoint hit: then a second stop may follow the continue.
            interrupted = channel.running
            if interrupted:
                channel.interrupt()
            for number in remaining:
                channel.delete_breakpoint(number)
            channel.resume(settle=0.3 if interrupted else 0.0)
        except Exception as exc:  # noqa: BLE001 - recorded; the channel's close() resumes the guest
            self.errors.append(str(exc))
            channel.bus.emit("gdb.error", f"capture failed: {exc}")
        finally:
            self.finished = time.monotonic()
            channel.release()
            self._done.set()
            missed = ", ".join(b.location for b in self.missed)
            channel.bus.emit("gdb.captured", f"captured {len(self.hits)} hit(s) in "
                             f"{self.finished - self.started:.1f}s"
                             + (f"; never hit: {missed}" if missed else ""),
                             hits=len(self.hits), missed=[b.location for b in self.missed])

    def _record_hit(self, number: int, stop: Stop) -> Hit | None:
        channel = self._channel
        elapsed = time.monotonic() - self.started
        spec = self._by_number[number]
        task = channel.current_task
        comm = channel.evaluate(f"{task}->comm")
        comm = comm[1:-1] if comm.startswith('"') and comm.endswith('"') else None
        if spec.comm and comm is not None and comm != spec.comm[:15]:
            return None  # the condition failed to evaluate and gdb stopped anyway
        pid = _int(channel.evaluate(f"{task}->pid"))
        values = {expr: channel.evaluate(expr) for expr in self.expressions}
        raw = channel.cli("bt").console
        outputs = {}
        for command in self.commands:
            r = channel.cli(command, timeout=channel.command_timeout)
            text = r.console.rstrip("\n") if not r.error else f"<error: {r.error}>"
            lines = text.splitlines()
            if len(lines) > OUTPUT_LINES:
                text = "\n".join([f"[... {len(lines) - OUTPUT_LINES} earlier lines]",
                                  *lines[-OUTPUT_LINES:]])
            outputs[command] = text
        return Hit(breakpoint=spec, location=stop.location, raw_bt=raw,
                   backtrace=_parse_backtrace(raw, comm, pid, values), values=values,
                   comm=comm, pid=pid, elapsed=elapsed, outputs=outputs)


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_backtrace(raw: str, comm: str | None, pid: int | None,
                     values: dict[str, str]) -> Backtrace | None:
    try:
        bt = parse_gdb_backtrace(raw)
    except ValueError:
        return None
    return replace(bt, comm=comm, pid=pid, values=dict(values))


# --- a scenario's gdb section ---------------------------------------------------------------------

@dataclass
class Planned:
    bp: GdbBreakpoint
    spec: BreakpointSpec | None  # None: not set (absent function, `when` does not match)
    skip_reason: str | None = None
    hits: list[Hit] = field(default_factory=list)


def describe(bp: GdbBreakpoint) -> str:
    return f"gdb #{bp.index} {bp.location}"


class GdbCapture:
    def __init__(self, breakpoints: list[tuple[GdbBreakpoint, str | None, str | None]],
                 vmlinux: Path, port: int, release: str, bus: EventBus, log: Path | None = None,
                 timeout: float = 600.0, scripts: Path | None = None) -> None:
        """`breakpoints`: (breakpoint, the cgroup directory its `cgroup` filter names or None,
        a skip reason the runner already decided (`when`) or None)."""
        self.release = release
        self.bus = bus
        self.timeout = timeout
        self.planned: list[Planned] = []
        self._pending = breakpoints
        self.channel = GdbChannel(vmlinux, port, bus=bus, log=log, scripts=scripts)
        self.session: CaptureSession | None = None
        self.errors: list[str] = []

    def start(self) -> list[Planned]:
        """gdb attached (the guest keeps running) and the plan made: which breakpoints will be
        set, which skip and why. `arm()` sets them."""
        self.channel.start()
        for bp, cgroup, skip in self._pending:
            if skip is not None:
                self.planned.append(Planned(bp, None, skip))
                continue
            if bp.is_function and not self.channel.function_exists(bp.location):
                self.planned.append(Planned(bp, None, f"function {bp.location} does not exist "
                                            f"in {self.release} (its vmlinux has no such symbol)"))
                continue
            spec = BreakpointSpec(bp.location, comm=bp.comm, cgroup=cgroup, callers=bp.callers)
            self.planned.append(Planned(bp, spec))
        return self.planned

    def arm(self) -> None:
        """Set the planned breakpoints and let the guest run: the capture is on."""
        specs = [p.spec for p in self.planned if p.spec is not None]
        if specs and self.session is None:
            count = max(p.bp.count for p in self.planned if p.spec is not None)
            expressions = sorted({e for p in self.planned if p.spec for e in p.bp.capture})
            commands = list(dict.fromkeys(c for p in self.planned if p.spec
                                          for c in p.bp.commands))
            try:
                self.session = start_capture(self.channel, specs, count=count,
                                             expressions=expressions, timeout=self.timeout,
                                             commands=commands)
            except GdbError as exc:
                self.errors.append(str(exc))
                raise

    @property
    def settable(self) -> bool:
        """Some breakpoint is to be set (the others skip)."""
        return any(p.spec is not None for p in self.planned)

    @property
    def active(self) -> bool:
        return self.session is not None

    def finish(self) -> None:
        """Stop capturing (after a grace for hits in flight), collect the hits per breakpoint,
        detach gdb: the guest runs on."""
        try:
            if self.session is not None:
                if not self.session.done:
                    self.session._done.wait(GRACE)
                    self.session.cancel()
                hits = self.session.wait(timeout=60)
                self.errors += self.session.errors
                for p in self.planned:
                    if p.spec is not None:
                        p.hits = [h for h in hits if h.breakpoint == p.spec][:p.bp.count]
        finally:
            self.close()

    def close(self) -> None:
        self.channel.close()

    # --- results --------------------------------------------------------------------------

    def backtraces(self) -> list[CapturedBacktrace]:
        """Every captured hit as data: which breakpoint, where, the task, the values, the
        frames (function, args, file, line, inlined) and gdb's text."""
        out = []
        for p in self.planned:
            for n, hit in enumerate(p.hits):
                bt = hit.backtrace
                out.append(CapturedBacktrace(
                    breakpoint=p.bp.index, location=p.bp.location, hit=n,
                    stopped_at=hit.location, comm=hit.comm, pid=hit.pid,
                    elapsed=round(hit.elapsed, 3), values=dict(hit.values),
                    outputs=dict(hit.outputs), text=format_gdb(bt) if bt else hit.raw_bt,
                    raw=hit.raw_bt, frames=bt.frames if bt else (),
                    truncated_at=bt.truncated_at if bt else None))
        return out

    def checks(self) -> list[Check]:
        """Per breakpoint: the hit count, the frames that must appear in order, those that
        must not. A failing frame check shows the trace it looked at."""
        out: list[Check] = []
        for p in self.planned:
            bp = p.bp
            low, high = bp.hits if bp.hits is not None else (1, bp.count)
            hits_desc = f"{describe(bp)} hits"
            hits_exp = f"{low}" if low == high else f"between {low} and {high}"
            frame_checks = []
            if bp.frames:
                frame_checks.append(((f"{describe(bp)} backtrace has {' > '.join(bp.frames)} "
                                     "(in order, from #0 outwards)"),
                                     "every captured trace", "frames"))
            if bp.not_frames:
                frame_checks.append(((f"{describe(bp)} backtrace has none of "
                                     f"{', '.join(bp.not_frames)}"), "no captured trace",
                                     "not_frames"))
            if p.spec is None:
                out.append(Check(hits_desc, hits_exp, "", False, p.skip_reason))
                out += [Check(d, e, "", False, p.skip_reason) for d, e, _ in frame_checks]
                continue
            n = len(p.hits)
            note = ""
            if n == 0 and self.errors:
                note = f" (gdb: {'; '.join(self.errors)})"
            out.append(Check(hits_desc, hits_exp, f"{n}{note}", low <= n <= high, None))
            for desc, exp, kind in frame_checks:
                if not p.hits:
                    reason = "no hit was captured" if low == 0 else None
                    out.append(Check(desc, exp, "no hit was captured", False, reason))
                    continue
                bad = []
                for k, hit in enumerate(p.hits):
                    bt = hit.backtrace
                    if bt is None:
                        bad.append(f"hit {k}: gdb's backtrace could not be parsed:\n{hit.raw_bt}")
                        continue
                    if kind == "frames":
                        missing = missing_in_order(bt, bp.frames)
                        if missing:
                            bad.append(f"hit {k} in {hit.comm}[{hit.pid}] lacks "
                                       f"{', '.join(missing)}:\n{format_gdb(bt)}")
                    else:
                        names = {base_function(f) for f in bt.functions()}
                        present = [f for f in bp.not_frames if base_function(f) in names]
                        if present:
                            bad.append(f"hit {k} in {hit.comm}[{hit.pid}] has "
                                       f"{', '.join(present)}:\n{format_gdb(bt)}")
                observed = "\n".join(bad) if bad else (
                    f"all {len(p.hits)} trace(s) as expected")
                out.append(Check(desc, exp, observed, not bad, None))
        return out

