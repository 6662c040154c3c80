"""The matrix: kernel x hierarchy x scenario.

Scenarios that need the same machine (kernel, hierarchy, memory, swap, disk, rdma) share one
boot; each gets a fresh cgroup subtree that is removed afterwards. A panic, a hang or a scenario
asking for a fresh boot gets the next scenario a new machine. Machines run in parallel
(`jobs`). Every finished scenario is written at once (ResultsWriter), so a crash keeps them.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

from . import images, kernels
from .capture import GdbCapture
from .cgroups.hierarchy import CgroupError, make_hierarchy
from .cgroups.knobs import KNOBS, controller_name
from .channels import ChannelError, CommandResult
from .checks import Check, evaluate, skip
from .console import ConsoleEventKind, classify
from .events import EventBus
from .kernels import Kernel
from .machine import RETRIED_FAILURES, BootError, Machine, MachineConfig
from .output import OutputError
from .results import ERROR, FAIL, PASS, SKIP, ResultsWriter, ScenarioResult
from .scenario import (
    KillStep,
    RunStep,
    Scenario,
    SleepStep,
    WaitStep,
    WriteFileStep,
    WriteStep,
    kernel_matches,
    when_matches,
)
from .units import parse_size

SUBTREE = "kharness"  # every scenario's cgroups live below /sys/fs/cgroup[/<ctrl>]/kharness/


@dataclass(frozen=True)
class Cell:
    scenario: Scenario
    kernel: Kernel
    hierarchy: str


@dataclass
class MachineJob:
    kernel: Kernel
    hierarchy: str
    spec: object  # the scenarios' MachineSpec
    cells: list[Cell] = field(default_factory=list)
    name: str = ""


@dataclass(frozen=True)
class Shard:
    """`--shard I/N`: the I-th (1-based) of N disjoint slices of a run's matrix."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise ValueError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/2")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def scenario_cost(sc: Scenario, hierarchies: list[str]) -> int:
    """What a scenario's cells are estimated to cost, in tenths of a run step, from the file
    alone: per hierarchy of the run it applies to, 10 for the scenario, 10 per run step, 10 per
    second of sleep, 30 for a boot of its own (`fresh_boot`). Integers: the same sums
    everywhere."""
    steps = sum(10 for st in sc.steps if isinstance(st, RunStep))
    steps += sum(round(10 * float(st.sleep)) for st in sc.steps if isinstance(st, SleepStep))
    boot = 30 if sc.machine.fresh_boot else 0
    return sum(h in sc.hierarchies for h in dict.fromkeys(hierarchies)) * (10 + steps + boot)


def shard_scenarios(scenarios: list[Scenario], hierarchies: list[str],
                    shard: Shard) -> list[Scenario]:
    """The scenarios of `shard`: a scenario goes to one shard with all its cells (every kernel
    and hierarchy, the skips that need no machine included), so the N shards partition the
    matrix exactly.

    The rule depends only on the scenario files and the hierarchies, never on input order,
    kernel releases or timing, so every machine computes the same slices. Costs are
    `scenario_cost`. Scenarios with a boot of their own (`fresh_boot`) share no machine: they
    are dealt out first, largest first, each to the least loaded shard (the lowest on a tie).
    The others are sorted by (machine spec, name), so that those sharing a boot are neighbours,
    and the list is cut into contiguous runs that fill the shards in order up to an equal share
    of the total (a scenario stays in a shard when its cost's midpoint fits, or the shard is
    empty): N shards boot at most N-1 more shared machines per kernel x hierarchy than one run.
    The scenarios come back in the order given."""
    n = shard.count
    costs = {sc.name: scenario_cost(sc, hierarchies) for sc in scenarios}
    if not any(costs.values()):  # nothing boots (v2-only scenarios run on v1): cut by count
        costs = dict.fromkeys(costs, 1)
    total = sum(costs.values())
    load = [0] * n
    owner: dict[str, int] = {}
    for sc in sorted((s for s in scenarios if s.machine.fresh_boot),
                     key=lambda s: (-costs[s.name], s.name)):
        k = min(range(n), key=lambda i: (load[i], i))
        owner[sc.name] = k
        load[k] += costs[sc.name]
    k = 0
    for sc in sorted((s for s in scenarios if not s.machine.fresh_boot),
                     key=lambda s: (json.dumps(asdict(s.machine), sort_keys=True), s.name)):
        while k < n - 1 and load[k] and n * (2 * load[k] + costs[sc.name]) > 2 * total:
            k += 1  # full: the next shard (an empty one takes at least one scenario)
        owner[sc.name] = k
        load[k] += costs[sc.name]
    return [sc for sc in scenarios if owner[sc.name] == shard.index - 1]


class ScenarioAbort(Exception):
    """The scenario cannot go on (a kernel failure, a hang); carries the error for the result."""

    def __init__(self, kind: str, message: str, excerpt: str = "", reboot: bool = False):
        super().__init__(message)
        self.kind = kind
        self.excerpt = excerpt
        self.reboot = reboot


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "scenario"


class Runner:
    def __init__(self, scenarios: list[Scenario], kernels: list[Kernel], hierarchies: list[str],
                 writer: ResultsWriter, bus: EventBus, jobs: int = 2, accel: str = "auto",
                 boot_timeout: float = 90.0) -> None:
        self.scenarios = scenarios
        self.kernels = kernels
        self.hierarchies = hierarchies
        self.writer = writer
        self.bus = bus
        self.jobs = max(1, jobs)
        self.accel = accel
        self.boot_timeout = boot_timeout
        self._machines: set[Machine] = set()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.counts = {PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0}
        self.total = 0
        self.planned: list[str] = []  # every cell's key (ScenarioResult.key), in plan order
        # The first write into the results that failed (a full disk): the run stops, fatal.
        self.fatal: OutputError | None = None

    # --- planning -------------------------------------------------------------------------

    def plan(self) -> tuple[list[MachineJob], list[ScenarioResult]]:
        """Machine jobs for the cells that need a machine; results for those that need none."""
        jobs: dict[tuple, MachineJob] = {}
        pre: list[ScenarioResult] = []
        fresh = 0
        for kernel in self.kernels:
            for hierarchy in self.hierarchies:
                for sc in self.scenarios:
                    cell = Cell(sc, kernel, hierarchy)
                    reason = self._static_skip(cell)
                    if reason:
                        pre.append(self._result(cell, SKIP, reason))
                        continue
                    if sc.machine.fresh_boot:
                        fresh += 1
                        key = (kernel.release, hierarchy, sc.machine, f"fresh-{fresh}")
                    else:
                        key = (kernel.release, hierarchy, sc.machine)
                    job = jobs.setdefault(key, MachineJob(kernel, hierarchy, sc.machine))
                    job.cells.append(cell)
        ordered = sorted(jobs.values(), key=lambda j: -len(j.cells))
        for i, job in enumerate(ordered):
            job.name = f"m{i + 1:02d}-{job.kernel.release}-{job.hierarchy}"
        return ordered, pre

    def _static_skip(self, cell: Cell) -> str | None:
        sc = cell.scenario
        if cell.hierarchy not in sc.hierarchies:
            return f"the scenario applies to {'/'.join(sc.hierarchies)} only"
        if sc.requires.kernel and not kernel_matches(sc.requires.kernel, cell.kernel.release):
            return f"kernel {cell.kernel.release} does not satisfy {sc.requires.kernel}"
        for cg in sc.cgroups:
            if cg.when and not when_matches(cg.when, cell.hierarchy, cell.kernel.release):
                continue
            raw = cg.raw.get(cell.hierarchy) or {}
            for knob in cg.knobs:
                k = KNOBS[knob]
                has = k.v2_file if cell.hierarchy == "v2" else k.v1_files
                if not has and not raw:
                    return (f"{knob} has no {cell.hierarchy} counterpart "
                            f"(cgroup {cg.path}; give a raw {cell.hierarchy}: file to run it)")
        return None

    # --- running --------------------------------------------------------------------------

    def _fetch_debug(self, jobs: list[MachineJob]) -> dict[str, str]:
        """Debug symbols for every kernel a gdb scenario runs on, fetched before any boot (one
        download per kernel, not one per machine). Kernel release -> why there are none."""
        missing: dict[str, str] = {}
        seen: set[str] = set()
        for job in jobs:
            if not any(c.scenario.gdb for c in job.cells) or job.kernel.release in seen:
                continue
            seen.add(job.kernel.release)
            try:
                kernels.fetch_debug(job.kernel, self.bus)
            except Exception as exc:  # noqa: BLE001 - the scenarios say why they cannot run
                missing[job.kernel.release] = f"no vmlinux with debug info for gdb: {exc}"
                self.bus.emit("kernel.debug.missing", f"{job.kernel.release}: {exc}")
        return missing

    def run(self) -> list[ScenarioResult]:
        jobs, pre = self.plan()
        for release, reason in self._fetch_debug(jobs).items():
            for job in jobs:
                if job.kernel.release != release:
                    continue
                keep = []
                for cell in job.cells:
                    if cell.scenario.gdb:
                        pre.append(self._result(cell, SKIP, reason))
                    else:
                        keep.append(cell)
                job.cells = keep
        jobs = [j for j in jobs if j.cells]
        self.total = len(pre) + sum(len(j.cells) for j in jobs)
        self.planned = [r.key for r in pre] + [self._result(c, PASS).key
                                               for j in jobs for c in j.cells]
        self.bus.emit("run.plan", f"{self.total} scenario runs on {len(jobs)} machine(s), "
                      f"{len(pre)} skipped before boot, {self.jobs} in parallel",
                      total=self.total, machines=len(jobs))
        for r in pre:
            self._record(r)
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="machine")
        futures: list[Future] = [pool.submit(self._run_job, job) for job in jobs]
        try:
            for fut in futures:
                fut.result()
        except BaseException as exc:
            # Interrupted (SIGINT/SIGTERM arrive as KeyboardInterrupt) or a failed write: the
            # cells still running are not results; they are left out (see not_run).
            if isinstance(exc, OutputError):
                self.fatal = self.fatal or exc
            self._stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
            if self.fatal is not None and not isinstance(exc, KeyboardInterrupt):
                raise self.fatal from None
            raise
        pool.shutdown(wait=True)
        if self.fatal is not None:
            raise self.fatal
        return self.writer.results

    def not_run(self) -> list[str]:
        """The planned cells that have no result (an interrupted or stopped run)."""
        done = {r.key for r in self.writer.results}
        return [key for key in self.planned if key not in done]

    def _stop_all(self) -> None:
        """Cancel the run: no new boots or scenarios, every machine stopped at once (the
        workers blocked on them unwind)."""
        self._cancel.set()
        with self._lock:
            machines = list(self._machines)
        for vm in machines:
            with contextlib.suppress(Exception):
                vm.stop(soft_timeout=0.5)

    def _output_failed(self, exc: OutputError) -> None:
        """A machine's console log could not be written (called from its reader thread): the
        run stops within seconds; the machines are stopped from another thread (a reader
        cannot wait for itself)."""
        with self._lock:
            if self.fatal is not None:
                return
            self.fatal = exc
        threading.Thread(target=self._stop_all, name="stop-all", daemon=True).start()

    def _record(self, result: ScenarioResult) -> None:
        try:
            self.writer.add(result)
        except OutputError as exc:
            self._output_failed(exc)
            raise
        with self._lock:
            self.counts[result.status] += 1
            done = sum(self.counts.values())
        extra = f": {result.reason}" if result.status in (SKIP, ERROR) and result.reason else ""
        if result.status == FAIL:
            extra = ": " + "; ".join(
                f"{c['description']}: expected {c['expected']}, observed {c['observed']}"
                for c in result.failed_checks())
        self.bus.emit(f"scenario.{result.status}",
                      f"[{done}/{self.total}] {result.status.upper():5} {result.key}{extra}",
                      result=result.key, status=result.status)

    def _machine_config(self, job: MachineJob, boot: int, retries: int) -> MachineConfig:
        spec = job.spec
        initrd = images.initrd_for(job.kernel, self.bus)
        workdir = self.writer.dir / "machines" / f"{job.name}-boot{boot}"
        return MachineConfig(
            kernel=job.kernel, initrd=initrd, memory=spec.memory, cpus=spec.cpus,
            hierarchy=job.hierarchy, swap=spec.swap, rdma=spec.rdma, disk=spec.disk,
            accel=self.accel, boot_timeout=self.boot_timeout, workdir=workdir,
            gdb=bool(getattr(spec, "gdb", False)), boot_retries=retries,
        )

    def _run_job(self, job: MachineJob) -> None:
        pending = list(job.cells)
        boot = 0
        # One more boot per job when the kernel fails before the first scenario's first step:
        # while booting (dies, or never gets ready: the Machine boots again itself, its console
        # kept as console.boot1.log, MachineConfig.boot_retries) or right after (below). A
        # kernel that fails every time still fails.
        boot_retried = False
        retries: list[str] = []  # the failed boots, recorded in the next result

        def relative(path: str) -> str:
            return path.replace(f"{self.writer.dir}/", "")

        while pending and not self._cancel.is_set():
            boot += 1
            config = self._machine_config(job, boot, 0 if boot_retried else 1)
            vm = Machine(config, self.bus)
            vm.on_output_error = self._output_failed
            with self._lock:
                if self._cancel.is_set():
                    return
                self._machines.add(vm)
            try:
                try:
                    vm.start()
                except BootError as exc:
                    if self._cancel.is_set():
                        return  # stopped by an interrupt: a boot the user cut short is no result
                    # Every scenario this boot would have run is an error, with the console.
                    again = "".join(f"; earlier {relative(r)}" for r in exc.retries)
                    for cell in pending:
                        self._record(self._result(cell, ERROR,
                                                  f"boot failed: {exc.reason}{again}",
                                                  excerpt=exc.console_tail,
                                                  kind=exc.failure or "boot"))
                    return
                if vm.info.retries:
                    boot_retried = True
                    retries += [relative(r) for r in vm.info.retries]
                hierarchy = make_hierarchy(job.hierarchy, vm.ssh)
                first = True
                while pending and not self._cancel.is_set():
                    cell = pending.pop(0)
                    result, reboot, stepped = self._run_cell(vm, hierarchy, cell, job.name,
                                                             boot)
                    if self._cancel.is_set():
                        return  # interrupted: its machine was pulled away, nothing to record
                    if (first and not stepped and result.failure_kind in RETRIED_FAILURES
                            and not boot_retried):
                        # The kernel died before the first scenario's steps: as for a boot
                        # failure (6.12's int3 text-patching oops under TCG also strikes
                        # right after boot), one more boot; the console stays in machines/.
                        boot_retried = True
                        pending.insert(0, cell)
                        what = f"{result.machine}: {result.reason} before any step ran"
                        retries.append(
                            f"{what} (console: {relative(str(config.workdir / 'console.log'))})")
                        self.bus.emit("machine.retry", f"{job.name}: {what}; booting once "
                                      f"more; console in {config.workdir}", machine=job.name)
                        break
                    first = False
                    result.retries, retries = retries, []
                    self._record(result)
                    if reboot or not vm.alive():
                        break
            finally:
                vm.stop()
                with self._lock:
                    self._machines.discard(vm)

    # --- one scenario ---------------------------------------------------------------------

    def _result(self, cell: Cell, status: str, reason: str = "", excerpt: str = "",
                kind: str | None = None) -> ScenarioResult:
        return ScenarioResult(
            scenario=cell.scenario.name, kernel=cell.kernel.release,
            kernel_spec=cell.kernel.spec, hierarchy=cell.hierarchy, status=status,
            reason=reason, description=cell.scenario.description, console_excerpt=excerpt,
            failure_kind=kind, started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            limits=scenario_limits(cell.scenario, cell.hierarchy, cell.kernel.release),
        )

    def _run_cell(self, vm: Machine, h, cell: Cell, job_name: str,
                  boot: int) -> tuple[ScenarioResult, bool, bool]:
        """The result, whether the machine must be rebooted, whether any step started."""
        sc = cell.scenario
        result = self._result(cell, PASS)
        result.machine = f"{job_name}-boot{boot}"
        start = time.monotonic()
        first_event = len(vm.console.events)
        taint_before = _tainted(vm)
        self.bus.emit("scenario.start", f"running {sc.name} on {cell.kernel.release} "
                      f"{cell.hierarchy}", scenario=sc.name)
        run = ScenarioRun(self, vm, h, cell, result)
        reboot = False
        try:
            skip = run.check_requirements()
            if skip:
                result.status, result.reason = SKIP, skip
            else:
                run.setup()
                skip = run.start_gdb()
                if skip:
                    result.status, result.reason = SKIP, skip
                else:
                    run.steps()
                    run.finish_gdb()
                    run.observe()
                    result.status = FAIL if result.failed_checks() else PASS
        except OutputError:
            raise
        except ScenarioAbort as exc:
            result.status, result.reason, result.failure_kind = ERROR, str(exc), exc.kind
            result.console_excerpt = exc.excerpt
            reboot = exc.reboot
        except ChannelError as exc:
            result.status, result.reason = ERROR, f"lost the guest: {exc}"
            result.failure_kind = "ssh"
            # SSH breaks the moment QEMU dies: give its exit a moment to be seen, then it is
            # the reason (below), not the connection.
            if vm.exit_description(wait=2.0) is None:
                result.console_excerpt = _diagnose_ssh(vm)
            reboot = True
        except CgroupError as exc:
            result.status, result.reason, result.failure_kind = ERROR, str(exc), "cgroup"
        except Exception as exc:  # noqa: BLE001 - one scenario's harness bug must not end the run
            result.status, result.failure_kind = ERROR, "harness"
            result.reason = f"harness error: {type(exc).__name__}: {exc}"
            result.console_excerpt = traceback.format_exc()[-3000:]
            reboot = True
        finally:
            run.close_gdb()
            if vm.alive() and not reboot:
                try:
                    run.cleanup()
                except Exception as exc:  # noqa: BLE001 - the next scenario needs a clean slate
                    if result.status in (PASS, FAIL, SKIP):
                        result.status, result.reason = ERROR, f"cleanup failed: {exc}"
                    reboot = True
        exited = vm.exit_description()
        if exited and not self._cancel.is_set():
            # QEMU is gone (killed, crashed): that comes first; the symptom the harness saw
            # (SSH refused, a step without a status) after it. A kernel failure on the console
            # (below) still explains it better: a panic makes QEMU exit (-no-reboot).
            symptom = f"; then: {result.reason}" if result.status == ERROR else ""
            if result.status == FAIL:
                symptom = "; then: " + "; ".join(f"{c['description']}: observed {c['observed']}"
                                                 for c in result.failed_checks())
            result.status, result.failure_kind = ERROR, "machine"
            result.reason = f"{exited} during the scenario{symptom}"
            result.console_excerpt = vm.console_tail(40)
            reboot = True
        # Kernel failures seen on the console while the scenario ran make it an error.
        new = vm.console.events[first_event:]
        failures = [e for e in new if e.kind not in (ConsoleEventKind.MARKER,
                                                     ConsoleEventKind.OOM_KILL,
                                                     ConsoleEventKind.TAINT)]
        kind = classify(failures)
        if kind and result.failure_kind not in KERNEL_FAILURES:
            # The kernel's failure explains what the harness saw (a missing disk, a lost SSH
            # session, a hang): it is the reason, the symptom is kept after it.
            symptom = f" (then: {result.reason})" if result.status == ERROR else ""
            result.status, result.failure_kind = ERROR, kind
            result.reason = (f"kernel {kind}: {failures[0].payload or failures[0].line.strip()}"
                             + symptom)
            result.console_excerpt = vm.console.excerpt(failures[0])
            reboot = reboot or kind in ("panic", "lockup", "hung_task", "rcu_stall")
        if vm.alive() and not kind and result.status != ERROR:
            taint_after = _tainted(vm)
            if taint_before is not None and taint_after not in (None, taint_before):
                result.status, result.failure_kind = ERROR, "taint"
                result.reason = (f"kernel taint changed from {taint_flags(taint_before)} to "
                                 f"{taint_flags(taint_after)} during the scenario")
                result.console_excerpt = vm.console_tail(40)
        if not vm.alive():
            reboot = True
            if result.status != ERROR:
                result.status, result.failure_kind = ERROR, kind or "died"
                result.reason = result.reason or "the machine died during the scenario"
                result.console_excerpt = vm.console_tail(60)
        result.duration = time.monotonic() - start
        return result, reboot, run.stepped


# The knobs whose values are byte limits a report draws next to the sampled usage.
LIMIT_KNOBS = ("memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max",
               "memory.soft_limit_in_bytes")


def scenario_limits(sc: Scenario, hierarchy: str, release: str) -> dict[str, dict[str, int]]:
    """The byte limits the scenario's `cgroups` set on this hierarchy and kernel, per cgroup
    ("." the scenario's own): {"hog": {"memory.max": 33554432}}. `max` and values that are not
    sizes are left out (nothing to draw)."""
    out: dict[str, dict[str, int]] = {}
    for cg in sc.cgroups:
        if not when_matches(cg.when, hierarchy, release):
            continue
        for knob, value in cg.knobs.items():
            if knob not in LIMIT_KNOBS:
                continue
            try:
                out.setdefault(cg.path or ".", {})[knob] = parse_size(value)
            except ValueError:
                continue
    return {cgroup: limits for cgroup, limits in out.items() if limits}


# Console failure kinds (console.classify): a kernel failure explains a harness-level symptom.
KERNEL_FAILURES = frozenset({"panic", "oops", "bug", "warning", "lockup", "hung_task",
                             "rcu_stall"})

# /proc/sys/kernel/tainted bits, as Documentation/admin-guide/tainted-kernels.rst names them.
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTN"


def taint_flags(value: int) -> str:
    letters = "".join(c for i, c in enumerate(TAINT_LETTERS) if value >> i & 1)
    return f"{value} ({letters or 'none'})"


def _diagnose_ssh(vm: Machine) -> str:
    """What the serial console says when SSH went away: dropbear's log, the processes, the
    kernel's last words; the console tail when the serial shell does not answer either."""
    if vm.alive() and vm.serial is not None:
        try:
            r = vm.serial.run("echo '== dropbear.log'; tail -20 /var/log/dropbear.log; "
                              "echo '== ps'; ps -o pid,ppid,stat,comm,args; echo '== tcp'; cat /proc/net/tcp; "
                              "echo '== dmesg'; dmesg | tail -30", timeout=15)
            if not r.timed_out:
                return "SSH was lost; the serial console shows:\n" + r.stdout[-6000:]
        except ChannelError:
            pass
    return vm.console_tail(60)


def _tainted(vm: Machine) -> int | None:
    """The kernel's taint mask, or None when the guest cannot tell (kirk compares it around
    each test: a change nobody printed is still a kernel problem)."""
    try:
        r = vm.ssh.run("cat /proc/sys/kernel/tainted", timeout=10) if vm.ssh else None
    except ChannelError:
        return None
    return int(r.stdout) if r is not None and r.ok and r.stdout.strip().isdigit() else None


class ScenarioRun:
    """The state of one scenario on one machine: its cgroups, steps, observations."""

    def __init__(self, runner: Runner, vm: Machine, h, cell: Cell,
                 result: ScenarioResult) -> None:
        self.runner = runner
        self.vm = vm
        self.h = h
        self.cell = cell
        self.sc = cell.scenario
        self.result = result
        self.root = f"{SUBTREE}/{_slug(self.sc.name)}"
        self.context: dict[str, dict] = {}  # cgroup -> knob values written (memsw formula)
        self.background: dict[str, tuple[Future, str]] = {}
        self.outcomes: dict[str, dict] = {}
        self.controllers: set[str] = set(self.sc.requires.controllers)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="step")
        self.values = {"rdma": "rxe0"}
        self.gdb: GdbCapture | None = None
        self.arm_at: str | None = None  # the step whose start sets the breakpoints
        self.stepped = False  # a step started (a failure then belongs to the scenario)

    # helpers
    def path(self, cgroup: str | None) -> str:
        return self.root if cgroup in (None, "", ".") else f"{self.root}/{cgroup}"

    def applies(self, when) -> bool:
        return not when or when_matches(when, self.cell.hierarchy, self.cell.kernel.release)

    def subst(self, text: object) -> object:
        if not isinstance(text, str):
            return text

        def repl(m: re.Match) -> str:
            key = m.group(1)
            if key.startswith("cgroup:"):
                # v1 has a directory per hierarchy: the first controller the scenario requires
                first = next(iter(self.sc.requires.controllers), None)
                return self.h.cgroup_dir(self.path(key[7:]), first)
            if key not in self.values:
                raise ScenarioAbort("harness", f"{{{key}}} is not available on this machine")
            return self.values[key]

        return re.sub(r"\{(disk|rdma|cgroup:[^}]*)\}", repl, text)

    # phases
    def check_requirements(self) -> str | None:
        vm, hier = self.vm, self.cell.hierarchy
        for c in self.sc.requires.controllers:
            native = controller_name(c, hier)  # io<->blkio; None: core on v2 (freezer)
            if native is None:
                continue
            status = vm.info.controllers.get(native)
            if status is not None and not status.available:
                # the boot's own finding, with the kernel config behind it (CONFIG_MEMCG_V1...)
                return f"{c} controller unavailable on {hier}: {status.reason}"
            ok, reason = self.h.has_controller(native)
            if not ok:
                return reason
        for feature in self.sc.requires.features:
            ok, reason = self.h.feature(feature)
            if not ok:
                return reason
        if self.sc.machine.disk:
            r = self.vm.ssh.run("cat /sys/block/vda/dev", timeout=10)
            if not r.ok:
                raise ScenarioAbort("harness", "the scenario disk /dev/vda is missing")
            self.values["disk"] = r.stdout.strip()
        return None

    def setup(self) -> None:
        # Every controller the scenario's knobs, metrics and sampling need is enabled down the
        # subtree (v2 subtree_control), so nested cgroups have their files.
        for cg in self.sc.cgroups:
            for knob in cg.knobs:
                self.controllers |= set(self.h.knob_controllers(knob))
        for exp in self.sc.expect:
            if exp.kind == "metric" and not exp.target.startswith("sampled_"):
                self.controllers |= set(self.h.metric_controllers(exp.target))

        self.h.create(self.root, self.controllers)
        for cg in self.sc.cgroups:
            if not self.applies(cg.when):
                continue
            path = self.path(cg.path)
            self.h.create(path, self.controllers)
            ctx = self.context.setdefault(cg.path, {})
            for knob, value in cg.knobs.items():
                value = self.subst(value)
                for w in self.h.write_knob(path, knob, value, ctx):
                    if not w.ok:
                        raise ScenarioAbort(
                            "setup", f"cgroup {cg.path}: writing {w.value!r} to {w.file} "
                            f"({knob}) failed: {w.errno or w.message}")
                ctx[knob] = value
            for name, value in (cg.raw.get(self.cell.hierarchy) or {}).items():
                w = self.h.write_file(path, name, self.subst(value))
                if not w.ok:
                    raise ScenarioAbort("setup", f"cgroup {cg.path}: writing {value!r} to {name} "
                                        f"failed: {w.errno or w.message}")

    # gdb
    def start_gdb(self) -> str | None:
        """Attach gdb and set the scenario's breakpoints before the first step. Returns a skip
        reason when no breakpoint can be set and nothing else is expected."""
        if not self.sc.gdb:
            return None
        kernel = self.cell.kernel
        vmlinux = kernel.debug_vmlinux
        if vmlinux is None or self.vm.gdb_port is None:
            raise ScenarioAbort("harness", f"gdb scenario without debug symbols or gdbstub "
                                f"({kernel.release})")
        bps = []
        for bp in self.sc.gdb:
            if not self.applies(bp.when):
                skip = f"does not apply to {kernel.release} {self.cell.hierarchy}"
                bps.append((bp, None, skip))
            else:
                cgroup = self.h.cgroup_dir(self.path(bp.cgroup)) if bp.cgroup is not None \
                    else None
                bps.append((bp, cgroup, None))
        timeout = sum(float(getattr(s, "timeout", 0) or 0) for s in self.sc.steps) + 120
        log = self.runner.writer.dir / "machines" / self.result.machine / \
            f"gdb-{_slug(self.sc.name)}.log"
        self.gdb = GdbCapture(bps, vmlinux, self.vm.gdb_port, kernel.release,
                              self.runner.bus, log=log, timeout=timeout,
                              scripts=kernel.gdb_scripts)
        try:
            planned = self.gdb.start()
        except Exception as exc:
            raise ScenarioAbort("gdb", f"gdb capture could not start: {exc}") from exc
        if not self.gdb.settable and not self.sc.expect:
            return "; ".join(dict.fromkeys(p.skip_reason for p in planned if p.skip_reason))
        self.arm_at = next((bp.from_step for bp in self.sc.gdb if bp.from_step), None)
        if self.arm_at is None:
            self._arm_gdb()
        return None

    def _arm_gdb(self) -> None:
        if self.gdb is None:
            return
        try:
            self.gdb.arm()
        except Exception as exc:
            raise ScenarioAbort("gdb", f"gdb could not set the breakpoints: {exc}") from exc

    def finish_gdb(self) -> None:
        if self.gdb is None:
            return
        try:
            self.gdb.finish()
        except Exception as exc:
            raise ScenarioAbort("gdb", f"gdb capture failed: {exc}") from exc
        self.result.backtraces = self.gdb.backtraces()
        self.result.checks += [asdict(c) for c in self.gdb.checks()]

    def close_gdb(self) -> None:
        if self.gdb is not None:
            with contextlib.suppress(Exception):
                self.gdb.close()

    def steps(self) -> None:
        self.stepped = True
        for i, step in enumerate(self.sc.steps):
            if not self.applies(getattr(step, "when", None)):
                continue
            if isinstance(step, RunStep):
                if self.arm_at is not None and step.name == self.arm_at:
                    self._arm_gdb()
                self._run(i, step)
            elif isinstance(step, WriteStep):
                self._write(i, step, knob=step.write)
            elif isinstance(step, WriteFileStep):
                self._write(i, step, file=step.write_file.get(self.cell.hierarchy))
            elif isinstance(step, SleepStep):
                time.sleep(float(step.sleep))
            elif isinstance(step, WaitStep):
                self._wait(step.wait)
            elif isinstance(step, KillStep):
                _, path = self.background[step.kill]
                self.h.kill(path)
                self._wait(step.kill)
        for name in list(self.background):
            self._wait(name)

    def _run(self, index: int, step: RunStep) -> None:
        name = step.name or f"step{index}"
        path = self.path(step.cgroup)
        command = self.h.run_in(path, str(self.subst(step.run)), self.controllers)
        # Memory and swap are sampled for scenarios about memory (the sampler reads its files).
        sampler = (self.h.sampler(path)
                   if step.sample and "memory" in self.sc.requires.controllers else None)
        if sampler:
            self.vm.ssh.run(sampler.start_cmd, timeout=10)

        def go() -> dict:
            started = time.monotonic()
            r = self.vm.ssh.run(command, timeout=step.timeout)
            outcome = self._outcome(name, step, r, time.monotonic() - started)
            if sampler:
                self.vm.ssh.run(sampler.stop_cmd, timeout=10)
                text = self.vm.ssh.run(sampler.read_cmd, timeout=10).stdout
                samples = sampler.parse(text)
                self.result.samples[step.cgroup or "."] = [
                    [s.t, s.usage, s.swap] for s in samples]
            return outcome

        if step.background:
            self.background[name] = (self.pool.submit(go), path)
        else:
            self.outcomes[name] = go()

    def _outcome(self, name: str, step: RunStep, r: CommandResult, duration: float) -> dict:
        try:
            stdout, status, signal = self.h.parse_status(r.stdout)
        except CgroupError:  # no status line: timed out, or the guest went away mid-command
            stdout, status, signal = r.stdout, -1, None
        fields: dict[str, str] = {}
        for line in stdout.splitlines():
            for word in line.split():
                key, eq, value = word.partition("=")
                if eq:
                    fields[key] = value
        outcome = {"name": name, "command": step.run, "cgroup": step.cgroup or ".",
                   "exit_status": status, "signal": signal, "timed_out": r.timed_out,
                   "timeout": float(step.timeout),
                   "duration": round(duration, 3), "stdout": stdout[-4000:],
                   "stderr": r.stderr[-2000:], "fields": fields}
        self.result.steps.append(outcome)
        if r.timed_out:
            self._check_alive(f"step {name} timed out after {step.timeout}s")
        return outcome

    def _check_alive(self, what: str) -> None:
        try:
            ok = self.vm.ssh.run("true", timeout=10).ok
        except ChannelError:
            ok = False
        if not ok:
            raise ScenarioAbort("hang", f"{what} and the guest no longer answers",
                                self.vm.console_tail(40), reboot=True)

    def _wait(self, name: str) -> None:
        entry = self.background.pop(name, None)
        if entry is None:
            return
        fut, _ = entry
        self.outcomes[name] = fut.result()

    def _write(self, index: int, step, knob: str | None = None, file: str | None = None) -> None:
        if knob is None and file is None:
            return  # a raw file step with nothing to write on this hierarchy
        path = self.path(step.cgroup)
        value = self.subst(step.value)
        if knob:  # context: what this cgroup was given so far (memsw = memory.max + swap.max)
            writes = self.h.write_knob(path, knob, value, self.context.setdefault(
                step.cgroup or "", {}))
            what = knob
        else:
            writes = [self.h.write_file(path, file, value)]
            what = file
        last = writes[-1] if writes else None
        got = next((w.errno for w in writes if not w.ok), None)
        expected = step.expect_error
        desc = f"write {value!r} to {what} of {step.cgroup or '.'}"
        check = Check(description=desc, expected=f"error {expected}" if expected else "success",
                      observed=f"error {got}" if got else "success",
                      passed=(got == expected) if expected else got is None,
                      skipped_reason=None)
        self.result.checks.append(asdict(check))
        self.result.steps.append({"name": f"step{index}", "write": what, "value": str(value),
                                  "errno": got, "file": last.file if last else None})

    def observe(self) -> None:
        for exp in self.sc.expect:
            if not self.applies(exp.when):
                check = skip(exp, f"does not apply to {self.cell.kernel.release} "
                             f"{self.cell.hierarchy}")
            elif exp.kind == "step" and self._missing_field(exp):
                # A field the step never printed is a failure, not a skip: a typo in the
                # scenario or a workload that died early must not pass silently.
                check = Check(description=f"step {exp.target} {exp.field}",
                              expected=f"{exp.op} {exp.value}",
                              observed=f"nothing: the step printed no {exp.field}=",
                              passed=False, skipped_reason=None)
            else:
                observed, reason = self._observe(exp)
                check = evaluate(exp, observed, reason)
            outcome = self.outcomes.get(exp.target) if exp.kind == "step" else None
            if outcome and outcome.get("timed_out") and check.status == "fail":
                # -1 alone reads like an exit status: say the step never finished.
                check = replace(check, observed=f"{check.observed} (timed out after "
                                f"{outcome['timeout']:g} s)")
            self.result.checks.append(asdict(check))

    def _missing_field(self, exp) -> bool:
        outcome = self.outcomes.get(exp.target)
        return (outcome is not None
                and exp.field not in ("exit_status", "signal", "timed_out", "duration")
                and exp.field not in outcome["fields"])

    def _observe(self, exp) -> tuple[object, str | None]:
        if exp.kind == "step":
            outcome = self.outcomes.get(exp.target)
            if outcome is None:
                return None, f"step {exp.target} did not run"
            if exp.field in ("exit_status", "signal", "timed_out", "duration"):
                return outcome[exp.field], None
            if exp.field in outcome["fields"]:
                return outcome["fields"][exp.field], None
            return None, f"step {exp.target} printed no {exp.field}="
        path = self.path(exp.cgroup)
        if exp.kind == "metric":
            if exp.target in ("sampled_peak", "sampled_swap_peak"):
                samples = self.result.samples.get(exp.cgroup or ".")
                if not samples:
                    return None, "no samples were taken"
                col = 1 if exp.target == "sampled_peak" else 2
                return max(s[col] for s in samples), None
            reading = self.h.read_metric(path, exp.target, {"disk": self.values.get("disk")})
            return reading.value, reading.reason
        text = self.h.read_file(path, exp.target)
        if text is None:
            where = f"{self.cell.hierarchy} ({self.cell.kernel.release})"
            return None, f"{exp.target} does not exist on {where}"
        if exp.key:
            for line in text.splitlines():
                parts = line.split()
                if parts and parts[0] == exp.key:
                    return (parts[1] if len(parts) > 1 else ""), None
            return None, f"{exp.target} has no {exp.key}"
        return text.strip(), None

    def cleanup(self) -> None:
        for name, (fut, path) in list(self.background.items()):
            with contextlib.suppress(Exception):
                self.h.kill(path)
            with contextlib.suppress(Exception):
                fut.result(timeout=30)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.h.remove(self.root)


def default_jobs() -> int:
    """One machine per core (a TCG guest keeps a core busy), at most 4."""
    import os

    return max(1, min(4, os.cpu_count() or 2))
