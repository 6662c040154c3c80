#!/usr/bin/env python3
"""Time to first backtrace: QEMU start to the first gdb breakpoint hit, phase by phase.

    .venv/bin/python bench/backtrace.py [--kernel debian:6.1 --kernel debian:6.12] [--repeat 3]
                                        [--json FILE] [--cold-index] [-v]

Each run boots a fresh v2 machine with the gdbstub (boot: QEMU launch to an SSH session, as in
bench/boot.py), makes a cgroup t with memory.max=32M, starts gdb on the kernel's debug vmlinux
(load: symbols and gdb's DWARF index, from $KHARNESS_CACHE/gdb-index when it is there; attach:
to the stub), checks that the six breakpoint locations resolve, sets all six at once and runs
`memhog 64` in the cgroup (64M in 32M: reclaim, then the memcg OOM kill). Capture: from the
guest running again with the breakpoints set to the first hit, and to the last of the six. The
totals are wall time from before the machine is created (so the SSH host key, the cgroup setup
and the checks count too) to the first and to the last backtrace.

Every breakpoint is filtered to memhog (comm), the OOM-path ones to the cgroup too, and the
charge to the anonymous folio (callers), so the six backtraces are all the workload's. A slot
whose function this kernel lacks takes the next name in its row (SLOTS); a slot with none left
is dropped, and said so. A run whose gdb index was not cached yet is the "first time" run; the
others are "cached" (--cold-index: run 1 of each kernel builds the index in an empty temporary
directory, to measure the first time when the shared cache is warm already). Target (from the issue): ~20 s end to end for six breakpoints on 6.1.
Exit status 1 when a breakpoint never hit or a run failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import images, kernels
from harness.capture import BreakpointSpec, CaptureSession, start_capture
from harness.channels import CommandResult
from harness.channels.gdb import GDB, GdbChannel
from harness.events import EventBus, TerminalPrinter
from harness.machine import Machine, MachineConfig, detect_accel
from harness.paths import cache_dir

CGROUP = "/sys/fs/cgroup/t"
LIMIT = "32M"
WORKLOAD = f"sh -c {shlex.quote(f'echo $$ > {CGROUP}/cgroup.procs; exec memhog 64')}"
COMM = "memhog"
# The anonymous folio's charge, not the page tables' kmem charges that come first.
FOLIO_CHARGE = ("__mem_cgroup_charge", "do_anonymous_page")
TARGET_SECONDS = 20.0  # end to end, six breakpoints, 6.1 (the issue)
CAPTURE_TIMEOUT = 120.0
WORKLOAD_TIMEOUT = 300.0


@dataclass(frozen=True)
class Slot:
    """One of the six breakpoints: the first of `names` this kernel has is used."""

    names: tuple[str, ...]
    cgroup: bool = False  # also filter on the memcg being CGROUP
    callers: tuple[str, ...] = ()

    def spec(self, location: str) -> BreakpointSpec:
        return BreakpointSpec(location, comm=COMM, cgroup=CGROUP if self.cgroup else None,
                              callers=self.callers)


# What memhog reaches: exec's slab charges, the folio charges of its page faults, memcg reclaim
# at the limit, the memcg OOM; uncharges from exec (shift_arg_pages) and the OOM kill. The uncharge
# slot is uncharge_batch, where the folio and the list uncharges meet on 6.1 and 6.12 alike:
# memhog reaches mem_cgroup_uncharge only when a fault's charge fails at the OOM kill (not in
# every run), and gdb cannot unwind past __folio_put there on 6.12 (`??` frames).
SLOTS = (
    Slot(("obj_cgroup_charge", "__memcg_kmem_charge_page")),
    Slot(("__mem_cgroup_charge", "charge_memcg")),
    Slot(("try_charge_memcg",), callers=FOLIO_CHARGE),
    Slot(("try_to_free_mem_cgroup_pages",), cgroup=True),
    Slot(("mem_cgroup_out_of_memory",), cgroup=True),
    Slot(("uncharge_batch", "__mem_cgroup_uncharge_folios", "__mem_cgroup_uncharge_list",
          "mem_cgroup_uncharge")),
)


@dataclass(frozen=True)
class HitRecord:
    location: str  # the breakpoint's
    stopped_at: str  # "try_charge_memcg at mm/memcontrol.c:2632"
    seconds: float  # since the capture started
    frames: int  # frames parsed from gdb's bt (0: it did not parse)
    pid: int | None
    functions: list[str] = field(default_factory=list)  # the parsed frames, #0 first


@dataclass(frozen=True)
class Run:
    kernel: str
    release: str
    run: int
    gdb_index: str  # "first time" (gdb built its DWARF index in this run) or "cached"
    boot: float  # QEMU launch to SSH ready
    boot_to_init: float | None  # QEMU launch to the guest's /init marker
    load: float  # gdb: symbols + DWARF index
    attach: float  # gdb: connect to the stub, read the current task
    checks: float  # function_exists for the slots
    first_hit: float | None  # capture start (guest running, breakpoints set) to the first hit
    all_hits: float | None  # ... to the last breakpoint's first hit (None: one never hit)
    total_first: float | None  # before the machine to the first backtrace
    total_all: float | None  # before the machine to the last backtrace
    workload_seconds: float  # the workload command, start to its exit (memhog OOM-killed)
    hits: list[HitRecord] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missed and not self.errors and self.first_hit is not None


@dataclass
class KernelPlan:
    spec: str
    kernel: kernels.Kernel
    debug_vmlinux: Path
    build_id: str | None
    config: MachineConfig
    breakpoints: list[BreakpointSpec] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # slots this kernel has no function for
    replaced: dict[str, str] = field(default_factory=dict)  # first choice -> name used
    runs: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # runs that raised


def index_cached(build_id: str | None, directory: Path) -> bool:
    """Has gdb's index-cache a file for this build ID (`<build-id>.gdb-index`)?"""
    if not build_id:
        return False
    return any(directory.glob(f"{build_id}*"))


def choose_breakpoints(gdb: GdbChannel, plan: KernelPlan) -> None:
    plan.breakpoints, plan.dropped, plan.replaced = [], [], {}
    for slot in SLOTS:
        name = next((n for n in slot.names if gdb.function_exists(n)), None)
        if name is None:
            plan.dropped.append("/".join(slot.names))
            continue
        if name != slot.names[0]:
            plan.replaced[slot.names[0]] = name
        plan.breakpoints.append(slot.spec(name))


def in_background(vm: Machine, command: str) -> tuple[threading.Thread, dict]:
    """Run a guest command over SSH in a thread while the capture waits."""
    out: dict[str, CommandResult | BaseException] = {}

    def run() -> None:
        try:
            assert vm.ssh is not None
            out["result"] = vm.ssh.run(command, timeout=WORKLOAD_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - reported with the run
            out["error"] = exc
    thread = threading.Thread(target=run, name="workload", daemon=True)
    thread.start()
    return thread, out


def capture(gdb: GdbChannel, vm: Machine, specs: list[BreakpointSpec]
            ) -> tuple[CaptureSession, dict, float]:
    """All breakpoints at once, count 1, while memhog runs. Every one is filtered to memhog: once
    memhog has exited none can hit any more, so the capture ends with the workload at the latest
    (its stops are all handled before memhog can exit: the guest waits for gdb at each)."""
    session = start_capture(gdb, specs, count=1, timeout=CAPTURE_TIMEOUT)
    start = time.monotonic()
    thread, out = in_background(vm, WORKLOAD)
    thread.join(WORKLOAD_TIMEOUT + 30)
    workload_seconds = time.monotonic() - start
    if not session.done:
        session.cancel()
    session.wait()
    return session, out, workload_seconds


def one_run(plan: KernelPlan, number: int, bus: EventBus, index_cache: Path) -> Run:
    cold = not index_cached(plan.build_id, index_cache)
    t0 = time.monotonic()
    with Machine(plan.config, bus) as vm:
        assert vm.ssh is not None and vm.gdb_port is not None
        vm.ssh.run(f"mkdir {CGROUP} && echo {LIMIT} > {CGROUP}/memory.max", check=True)
        with GdbChannel(plan.debug_vmlinux, vm.gdb_port, bus=bus,
                        index_cache=index_cache) as gdb:
            start = time.monotonic()
            choose_breakpoints(gdb, plan)
            checks = time.monotonic() - start
            session, out, workload_seconds = capture(gdb, vm, plan.breakpoints)
    errors = list(session.errors)
    if "error" in out:
        errors.append(f"workload: {out['error']}")
    if session.timed_out:
        errors.append(f"capture timed out after {CAPTURE_TIMEOUT:.0f}s")
    hits = [HitRecord(h.breakpoint.location, h.location, h.elapsed,
                      len(h.backtrace.frames) if h.backtrace else 0, h.pid,
                      [f.function for f in h.backtrace.frames] if h.backtrace else [])
            for h in session.hits]
    first = session.first_hit_seconds
    last = max((h.seconds for h in hits), default=None) if not session.missed else None
    since_t0 = session.started - t0
    return Run(
        kernel=plan.spec, release=plan.kernel.release, run=number,
        gdb_index="first time" if cold else "cached",
        boot=vm.info.ready_seconds, boot_to_init=vm.marker_times.get("init"),
        load=gdb.load_seconds, attach=gdb.attach_seconds, checks=checks,
        first_hit=first, all_hits=last,
        total_first=None if first is None else since_t0 + first,
        total_all=None if last is None else since_t0 + last,
        workload_seconds=workload_seconds, hits=hits,
        missed=[b.location for b in session.missed], errors=errors,
    )


# --- report --------------------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def figure(label: str, runs: list[Run], get: Callable[[Run], float | None],
           split_cold: bool = False) -> str:
    """`label  median X  runs a b* c`; with split_cold, the first-time run apart from the
    cached median (a `*` marks the run that built gdb's index)."""
    values = [get(r) for r in runs]
    marks = ["*" if r.gdb_index == "first time" else "" for r in runs]
    each = " ".join(_fmt(v) + m for v, m in zip(values, marks, strict=True))
    cold = [v for v, r in zip(values, runs, strict=True) if r.gdb_index == "first time"]
    if split_cold and cold:
        warm = [v for v, r in zip(values, runs, strict=True) if r.gdb_index == "cached"]
        head = f"first time {_fmt(cold[0]):>6}s  cached median {_fmt(_median(warm)):>6}s"
    else:
        head = f"median {_fmt(_median(values)):>6}s"
    return f"  {label:27} {head}  runs {each}"


def describe(spec: BreakpointSpec) -> str:
    filters = [f"comm {spec.comm}"] if spec.comm else []
    if spec.cgroup:
        filters.append(f"cgroup {spec.cgroup}")
    if spec.callers:
        filters.append("callers " + ", ".join(spec.callers))
    return f"{spec.location} [{'; '.join(filters)}]"


def report(plan: KernelPlan) -> None:
    runs = plan.runs
    for failure in plan.failures:
        print(f"{plan.kernel.release}: {failure}")
    if not runs:
        return
    c = plan.config
    n = len(plan.breakpoints)
    print(f"{plan.kernel.release} ({plan.spec}; {c.accel}, {c.cpus} CPU, {c.memory}, "
          f"{len(runs)} run{'s' if len(runs) != 1 else ''})")
    print(f"  breakpoints ({n}): " + ", ".join(describe(b) for b in plan.breakpoints))
    if plan.replaced:
        print("  replaced: " + ", ".join(f"{a} -> {b}" for a, b in plan.replaced.items()))
    if plan.dropped:
        print("  dropped (not in this kernel): " + ", ".join(plan.dropped))
    cold = any(r.gdb_index == "first time" for r in runs)
    print(figure("boot to SSH ready", runs, lambda r: r.boot))
    print(figure("  of which launch to /init", runs, lambda r: r.boot_to_init))
    print(figure("gdb load (symbols, index)", runs, lambda r: r.load, split_cold=True))
    print(figure("gdb attach", runs, lambda r: r.attach))
    print(figure("gdb load + attach", runs, lambda r: r.load + r.attach, split_cold=True))
    print(figure("breakpoint checks", runs, lambda r: r.checks))
    print(figure("capture to first hit", runs, lambda r: r.first_hit))
    print(figure(f"capture to all {n} hits", runs, lambda r: r.all_hits))
    print(figure("total to first backtrace", runs, lambda r: r.total_first, split_cold=True))
    print(figure(f"total to all {n} backtraces", runs, lambda r: r.total_all, split_cold=True))
    if cold:
        print("  * gdb built its DWARF index in this run (first time); the cached runs read it "
              f"from {cache_dir() / 'gdb-index'}")
    else:
        print(f"  gdb index: cached in every run ({cache_dir() / 'gdb-index'})")
    for r in runs:
        order = " ".join(f"{h.location}@{h.seconds:.2f}" for h in
                         sorted(r.hits, key=lambda h: h.seconds))
        verdict = f"all {n} hit" if not r.missed else f"{len(r.missed)} never hit: " + \
            ", ".join(r.missed)
        print(f"  run {r.run}: {verdict}; hits (s after capture start) {order}")
        unparsed = [h.location for h in r.hits if h.frames == 0]
        if unparsed:
            print(f"         backtrace did not parse: {', '.join(unparsed)}")
        for e in r.errors:
            print(f"         error: {e}")


@functools.cache
def gdb_version() -> str:
    try:
        proc = subprocess.run([GDB, "--version"], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.splitlines()[0] if proc.stdout else "unknown"


def write_json(path: Path, plans: list[KernelPlan]) -> None:
    """The figures so far (rewritten after every run: an interrupted benchmark keeps them)."""
    doc = {
        "benchmark": "backtrace",
        "target_seconds": TARGET_SECONDS,
        "workload": WORKLOAD,
        "cgroup": {"path": CGROUP, "memory.max": LIMIT},
        "gdb": gdb_version(),
        "gdb_index": str(cache_dir() / "gdb-index"),
        "kernels": [{
            "spec": p.spec, "release": p.kernel.release, "accel": p.config.accel,
            "cpus": p.config.cpus, "memory": p.config.memory, "build_id": p.build_id,
            "breakpoints": [asdict(b) for b in p.breakpoints],
            "replaced": p.replaced, "dropped": p.dropped,
            "runs": [asdict(r) for r in p.runs],
            "failures": p.failures,
            # over the runs that found gdb's index cached (all runs when none did)
            "medians": {key: _median([getattr(r, key) for r in p.runs if r.gdb_index == "cached"]
                                     or [getattr(r, key) for r in p.runs])
                        for key in ("boot", "load", "attach", "checks", "first_hit",
                                    "all_hits", "total_first", "total_all")},
        } for p in plans],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", action="append",
                    help="kernel spec, repeatable (default: debian:6.1 and debian:6.12)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per kernel (default: 3)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    ap.add_argument("--cold-index", action="store_true",
                    help="run 1 of each kernel builds gdb's index in an empty temporary "
                         "directory (a first-time figure even when the shared one is warm)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print progress events")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    bus = EventBus()
    if args.verbose:
        bus.subscribe(TerminalPrinter())
    plans: list[KernelPlan] = []
    shared_index = cache_dir() / "gdb-index"
    failed = False
    try:
        for spec in args.kernel or ["debian:6.1", "debian:6.12"]:
            kernel = kernels.resolve(spec, bus)
            debug = kernels.fetch_debug(kernel, bus)
            config = MachineConfig(kernel=kernel, initrd=images.initrd_for(kernel, bus),
                                   hierarchy="v2", gdb=True)
            config.accel = detect_accel(config, bus)
            plans.append(KernelPlan(spec, kernel, debug, kernels.build_id(debug), config))
        # Kernels alternate, so each sees the same load from the rest of the machine.
        for number in range(1, args.repeat + 1):
            for plan in plans:
                print(f"run {number}/{args.repeat} {plan.kernel.release}...", file=sys.stderr,
                      flush=True)
                try:
                    if args.cold_index and number == 1:
                        with tempfile.TemporaryDirectory(prefix="kharness-gdb-index-") as tmp:
                            run = one_run(plan, number, bus, Path(tmp))
                    else:
                        run = one_run(plan, number, bus, shared_index)
                except Exception as exc:  # noqa: BLE001 - a failed run is a figure too
                    plan.failures.append(f"run {number}: {type(exc).__name__}: {exc}")
                    print(f"  failed: {plan.failures[-1]}", file=sys.stderr, flush=True)
                    failed = True
                else:
                    plan.runs.append(run)
                    failed |= not run.ok
                    problems = run.errors + ([f"never hit: {', '.join(run.missed)}"]
                                             if run.missed else [])
                    print(f"  total to first backtrace {_fmt(run.total_first)}s, to all "
                          f"{_fmt(run.total_all)}s (gdb index {run.gdb_index})"
                          + "".join(f"; {p}" for p in problems), file=sys.stderr, flush=True)
                if args.json:
                    write_json(args.json, plans)
    except KeyboardInterrupt:
        print("interrupted: figures of the finished runs follow", file=sys.stderr)
        failed = True
    for plan in plans:
        report(plan)
    print(f"target: ~{TARGET_SECONDS:.0f}s end to end for six breakpoints on 6.1 (the issue)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
