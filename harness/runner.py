"""The matrix: kernel x hierarchy x scenario: planning (which cells share a boot, which are
skipped before any), sharding, the machine jobs in parallel and their retries. One scenario on
one machine is harness/scenario_run.py.

Scenarios that need the same machine (kernel, hierarchy, memory, swap, disk, rdma) share one
boot; each gets a fresh cgroup subtree that is removed afterwards. A panic, a hang or a scenario
asking for a fresh boot gets the next scenario a new machine. Machines run in parallel
(`jobs`). Every finished scenario is written at once (ResultsWriter), so a crash keeps them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field

from . import images, kernels
from .cgroups.hierarchy import Hierarchy, make_hierarchy
from .cgroups.knobs import KNOBS
from .events import EventBus
from .fleet import Fleet
from .kernels import Kernel
from .machine import RETRIED_FAILURES, BootError, Machine, MachineConfig
from .results import ERROR, FAIL, PASS, SKIP, ResultsWriter, ScenarioResult, Status
from .scenario import RunStep, Scenario, SleepStep, kernel_matches, when_matches
from .scenario_run import Cell, ScenarioRun
from .units import parse_size


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


class Runner(Fleet):
    def __init__(self, scenarios: list[Scenario], kernels: list[Kernel], hierarchies: list[str],
                 writer: ResultsWriter, bus: EventBus, jobs: int = 2, accel: str = "auto",
                 boot_timeout: float = 90.0) -> None:
        super().__init__(writer, jobs)
        self.scenarios = scenarios
        self.kernels = kernels
        self.hierarchies = hierarchies
        self.bus = bus
        self.accel = accel
        self.boot_timeout = boot_timeout
        self.total = 0
        self.planned: list[str] = []  # every cell's key (ScenarioResult.key), in plan order

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
        self._run_parallel(self._run_job, jobs, "machine")
        return self.writer.results

    def not_run(self) -> list[str]:
        """The planned cells that have no result (an interrupted or stopped run)."""
        done = {r.key for r in self.writer.results}
        return [key for key in self.planned if key not in done]

    def _record(self, result: ScenarioResult) -> None:
        done = self.write(result)
        extra = f": {result.reason}" if result.status in (SKIP, ERROR) and result.reason else ""
        if result.status == FAIL:
            extra = ": " + "; ".join(
                f"{c.description}: expected {c.expected}, observed {c.observed}"
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
            numa=spec.numa,
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
            if not self._track(vm):
                return
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
                self._untrack(vm)

    # --- one scenario ---------------------------------------------------------------------

    def _run_cell(self, vm: Machine, h: Hierarchy, cell: Cell, job_name: str,
                  boot: int) -> tuple[ScenarioResult, bool, bool]:
        """The result, whether the machine must be rebooted, whether any step started."""
        result = self._result(cell, PASS)
        result.machine = f"{job_name}-boot{boot}"
        run = ScenarioRun(vm, h, cell, result, self.bus,
                          self.writer.dir / "machines" / result.machine, self._cancel)
        reboot = run.execute()
        return result, reboot, run.stepped

    def _result(self, cell: Cell, status: Status, reason: str = "", excerpt: str = "",
                kind: str | None = None) -> ScenarioResult:
        return ScenarioResult(
            scenario=cell.scenario.name, kernel=cell.kernel.release,
            kernel_spec=cell.kernel.spec, hierarchy=cell.hierarchy, status=status,
            reason=reason, description=cell.scenario.description, console_excerpt=excerpt,
            failure_kind=kind, started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            limits=scenario_limits(cell.scenario, cell.hierarchy, cell.kernel.release),
        )


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


def default_jobs() -> int:
    """One machine per core (a TCG guest keeps a core busy), at most 4."""
    import os

    return max(1, min(4, os.cpu_count() or 2))
