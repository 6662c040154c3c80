"""One scenario on one machine (`ScenarioRun`): its cgroups set up below the kharness subtree,
its gdb breakpoints, its steps run and their outcomes kept, its expectations observed and
checked, the subtree removed; then what the machine says happened meanwhile (QEMU gone, a
kernel failure on the console, the taint changed), which makes the result an error.

The runner (harness/runner.py) decides which scenarios share a boot and what to do after a
failed one; a ScenarioRun gets what it needs from it explicitly: the machine, its cgroup
hierarchy, the cell, the result to fill in, the event bus and the boot's directory.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .capture import GdbCapture
from .cgroups.hierarchy import CgroupError, Hierarchy
from .cgroups.knobs import RDMA_DEVICE, SAMPLED_METRICS, controller_name
from .channels import ChannelError, CommandResult
from .checks import Check, evaluate, skip
from .console import ConsoleEventKind, classify
from .events import EventBus
from .kernels import Kernel
from .machine import Machine
from .output import OutputError
from .results import ERROR, FAIL, PASS, SKIP, Sample, ScenarioResult, StepOutcome, WriteOutcome
from .scenario import (
    KillStep,
    RunStep,
    Scenario,
    SleepStep,
    WaitStep,
    WriteFileStep,
    WriteStep,
    when_matches,
)

SUBTREE = "kharness"  # every scenario's cgroups live below /sys/fs/cgroup[/<ctrl>]/kharness/


@dataclass(frozen=True)
class Cell:
    """A cell of the matrix: one scenario on one kernel and hierarchy."""

    scenario: Scenario
    kernel: Kernel
    hierarchy: str


class ScenarioAbort(Exception):
    """The scenario cannot go on (a kernel failure, a hang); carries the error for the result."""

    def __init__(self, kind: str, message: str, excerpt: str = "", reboot: bool = False):
        super().__init__(message)
        self.kind = kind
        self.excerpt = excerpt
        self.reboot = reboot


def slug(name: str) -> str:
    """A scenario's name as a cgroup or file name: memory/oom-kill -> memory_oom-kill."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "scenario"


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
    """The state of one scenario on one machine: its cgroups, steps, observations, gdb.

    `hierarchy` speaks to the machine's cgroups, `bus` takes the progress events, gdb's log
    goes into `machine_dir` (the boot's directory under the results), and `cancel` is set when
    the run is being stopped (QEMU then goes away by the runner's hand: not a result)."""

    def __init__(self, vm: Machine, hierarchy: Hierarchy, cell: Cell, result: ScenarioResult,
                 bus: EventBus, machine_dir: Path, cancel: threading.Event | None = None) -> None:
        self.vm = vm
        self.h = hierarchy
        self.bus = bus
        self.machine_dir = machine_dir
        self.cancel = cancel or threading.Event()
        self.cell = cell
        self.sc = cell.scenario
        self.result = result
        self.root = f"{SUBTREE}/{slug(self.sc.name)}"
        self.context: dict[str, dict] = {}  # cgroup -> knob values written (memsw formula)
        self.background: dict[str, tuple[Future, str]] = {}
        self.outcomes: dict[str, StepOutcome] = {}
        self.controllers: set[str] = set(self.sc.requires.controllers)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="step")
        self.values = {"rdma": RDMA_DEVICE}
        self.gdb: GdbCapture | None = None
        self.arm_at: str | None = None  # the step whose start sets the breakpoints
        self.stepped = False  # a step started (a failure then belongs to the scenario)

    def execute(self) -> bool:
        """Run the scenario into `result` (its status, reason, checks, steps...): requirements,
        cgroups, gdb, steps, observations, cleanup; then what the machine says happened
        meanwhile (QEMU gone, a kernel failure on the console, the taint changed). Returns
        whether the machine must be rebooted before the next scenario."""
        vm, cell, sc, result = self.vm, self.cell, self.sc, self.result
        start = time.monotonic()
        first_event = len(vm.console.events)
        taint_before = _tainted(vm)
        self.bus.emit("scenario.start", f"running {sc.name} on {cell.kernel.release} "
                      f"{cell.hierarchy}", scenario=sc.name)
        reboot = False
        try:
            skipped = self.check_requirements()
            if skipped:
                result.status, result.reason = SKIP, skipped
            else:
                self.setup()
                skipped = self.start_gdb()
                if skipped:
                    result.status, result.reason = SKIP, skipped
                else:
                    self.steps()
                    self.finish_gdb()
                    self.observe()
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
            self.close_gdb()
            if vm.alive() and not reboot:
                try:
                    self.cleanup()
                except Exception as exc:  # noqa: BLE001 - the next scenario needs a clean slate
                    if result.status in (PASS, FAIL, SKIP):
                        result.status, result.reason = ERROR, f"cleanup failed: {exc}"
                    reboot = True
        exited = vm.exit_description()
        if exited and not self.cancel.is_set():
            # QEMU is gone (killed, crashed): that comes first; the symptom the harness saw
            # (SSH refused, a step without a status) after it. A kernel failure on the console
            # (below) still explains it better: a panic makes QEMU exit (-no-reboot).
            symptom = f"; then: {result.reason}" if result.status == ERROR else ""
            if result.status == FAIL:
                symptom = "; then: " + "; ".join(f"{c.description}: observed {c.observed}"
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
        return reboot


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
        log = self.machine_dir / f"gdb-{slug(self.sc.name)}.log"
        self.gdb = GdbCapture(bps, vmlinux, self.vm.gdb_port, kernel.release,
                              self.bus, log=log, timeout=timeout,
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
        self.result.checks += self.gdb.checks()

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

        def go() -> StepOutcome:
            started = time.monotonic()
            r = self.vm.ssh.run(command, timeout=step.timeout)
            outcome = self._outcome(name, step, r, time.monotonic() - started)
            if sampler:
                self.vm.ssh.run(sampler.stop_cmd, timeout=10)
                text = self.vm.ssh.run(sampler.read_cmd, timeout=10).stdout
                samples = sampler.parse(text)
                self.result.samples[step.cgroup or "."] = [
                    Sample(s.t, s.usage, s.swap) for s in samples]
            return outcome

        if step.background:
            self.background[name] = (self.pool.submit(go), path)
        else:
            self.outcomes[name] = go()

    def _outcome(self, name: str, step: RunStep, r: CommandResult,
                 duration: float) -> StepOutcome:
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
        outcome = StepOutcome(name=name, command=step.run, cgroup=step.cgroup or ".",
                              exit_status=status, signal=signal, timed_out=r.timed_out,
                              timeout=float(step.timeout), duration=round(duration, 3),
                              stdout=stdout[-4000:], stderr=r.stderr[-2000:], fields=fields)
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
        self.result.checks.append(check)
        self.result.steps.append(WriteOutcome(name=f"step{index}", write=what, value=str(value),
                                              errno=got, file=last.file if last else None))

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
            if outcome and outcome.timed_out and check.status == FAIL:
                # -1 alone reads like an exit status: say the step never finished.
                check = replace(check, observed=f"{check.observed} (timed out after "
                                f"{outcome.timeout:g} s)")
            self.result.checks.append(check)

    def _missing_field(self, exp) -> bool:
        outcome = self.outcomes.get(exp.target)
        return (outcome is not None
                and exp.field not in ("exit_status", "signal", "timed_out", "duration")
                and exp.field not in outcome.fields)

    def _observe(self, exp) -> tuple[object, str | None]:
        if exp.kind == "step":
            outcome = self.outcomes.get(exp.target)
            if outcome is None:
                return None, f"step {exp.target} did not run"
            if exp.field in ("exit_status", "signal", "timed_out", "duration"):
                return getattr(outcome, exp.field), None
            if exp.field in outcome.fields:
                return outcome.fields[exp.field], None
            return None, f"step {exp.target} printed no {exp.field}="
        path = self.path(exp.cgroup)
        if exp.kind == "metric":
            if exp.target in SAMPLED_METRICS:
                samples = self.result.samples.get(exp.cgroup or ".")
                if not samples:
                    return None, "no samples were taken"
                column = [s.usage if exp.target == "sampled_peak" else s.swap for s in samples]
                values = [v for v in column if v is not None]
                if not values:  # a hierarchy without the counter (v1 without memsw)
                    return None, f"the samples have no {exp.target.removeprefix('sampled_')}"
                return max(values), None
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

