"""A scenario's `gdb:` section on one machine: breakpoints through QEMU's gdbstub while the
steps run, then checks on what was captured.

The runner calls `GdbCapture.start()` after the cgroups are set up and before the first step,
`finish()` after the last one. Breakpoints whose function the kernel does not have (6.12 has no
mem_cgroup_move_task without CONFIG_MEMCG_V1) are not set: their checks skip with that reason.
Every captured hit becomes data in the result (`backtraces`: frames as dicts, gdb-style text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .channels.gdb import BreakpointSpec, CaptureSession, GdbChannel, GdbError, Hit
from .checks import Check
from .events import EventBus
from .frames import base_function, format_gdb, missing_in_order
from .results import CapturedBacktrace
from .scenario import GdbBreakpoint

# Seconds the capture keeps going after the last step ended (hits still in flight: an OOM kill
# that the step's exit raced).
GRACE = 1.0


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
                self.session = self.channel.capture(specs, count=count, expressions=expressions,
                                                    timeout=self.timeout, commands=commands)
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

