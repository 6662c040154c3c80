"""`kharness selftest`: the kernel's cgroup selftests on real kernels, one result per subtest.

Each kernel gets one machine (in parallel, `jobs`) that gives the tests what they need: cgroup2
mounted with nsdelegate (not memory_recursiveprot: see CGROUP2_OPTIONS) and every controller
enabled, an ext4 filesystem on a virtio disk holding the binaries as the working directory
(the page-cache tests need a real filesystem, not tmpfs), zram swap, debugfs, 1 GiB, 2 CPUs.
Each binary runs on a terminal (its stdout line-buffered, stderr in order with it) under a
timeout; what it printed becomes one result per subtest, (selftest/<binary>/<subtest>, kernel,
v2), the same records as scenarios (results.jsonl, JUnit, report, compare, merge).

A binary that crashes, hangs past its timeout or takes the kernel down is an error result
(selftest/<binary>) with the console excerpt; its subtests that reported before stay, and the
set goes on (on a fresh machine when this one died).

Which tests: by default the selftests of the newest source among the run's kernels run on every
kernel (kselftest's own rule: new tests skip what an older kernel lacks), so a verdict that
differs between kernels is the kernels' difference, the test being the same binary; `--source`
names another source, `own_source` gives each kernel its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import images
from ..channels import ChannelError
from ..console import ConsoleEventKind, classify
from ..events import EventBus
from ..fleet import Fleet
from ..kernels import Kernel
from ..kernels.trees import Source, resolve_source
from ..machine import BootError, Machine, MachineConfig
from ..results import ERROR, FAIL, PASS, SKIP, Check, ResultsWriter, ScenarioResult, StepOutcome
from .build import SelftestBuild, build
from .parse import BinaryOutput, parse

GUEST_DIR = "/mnt/selftests"
MEMORY, CPUS, SWAP, DISK = "1G", 2, "512M", "256M"
# nsdelegate for test_core's lesser_ns_open. Not memory_recursiveprot, although systemd mounts
# it: with it a memory.low=0 child gets a share of its parent's protection and counts low
# events, and test_memcg_low of 6.1 and 6.12 (which read the option but do not use it yet)
# fail for that on both kernels: measured here, not ok with it, ok without (2 of 2 each); in
# the whole set on both kernels with and without it no other verdict changed (the racy
# test_cgfreezer_ptrace aside). The catalogue's scenarios mount without it too, so the
# referee compares like with like.
CGROUP2_OPTIONS = ("nsdelegate",)
# test_zswap needs zswap on (Debian's kernels build it in but leave it off by default); it
# compresses what goes to the zram swap device.
CMDLINE = ("zswap.enabled=1",)
DEFAULT_TIMEOUT = 300.0  # seconds per binary run
_NAME = re.compile(r"^test_[A-Za-z0-9_]+$")
_SERIES = re.compile(r"^(\d+\.\d+)")


class SelftestError(ValueError):
    """Bad input (an unknown test, a kernel without a source): one line, before any boot."""


@dataclass(frozen=True)
class Selection:
    """`--test test_memcontrol` or `--test test_memcontrol:test_memcg_min`."""

    binary: str
    subtest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Selection:
        binary, _, subtest = text.partition(":")
        if not _NAME.match(binary) or (subtest and not re.fullmatch(r"\w+", subtest)):
            raise SelftestError(f"--test {text!r}: expected BINARY[:SUBTEST], e.g. "
                                "test_memcontrol or test_memcontrol:test_memcg_min")
        return cls(binary, subtest or None)


@dataclass
class KernelPlan:
    kernel: Kernel
    tests: SelftestBuild
    binaries: list[str]  # to run, in order
    subtests: dict[str, set[str]] = field(default_factory=dict)  # binary -> only these


def series_source(kernel: Kernel) -> str:
    """The source spec a kernel's own selftests come from."""
    build = kernel.origin.get("build") if isinstance(kernel.origin, dict) else None
    if isinstance(build, dict) and build.get("source"):
        return str(build["source"])
    if kernel.spec.startswith("debian:"):
        m = _SERIES.match(kernel.release)
        if m:
            return f"debian:{m.group(1)}"
    raise SelftestError(f"{kernel.spec}: no source tree for its selftests is known; name one "
                        "with --source debian:6.12 or --source path:/a/linux/tree")


def _version_key(source: Source) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", source.version)[:3])


def plan(kernels: Sequence[Kernel], selections: Sequence[Selection], bus: EventBus,
         source: str | None = None, own_source: bool = False) -> list[KernelPlan]:
    """Resolve and build every kernel's selftests, and check the selections against them:
    everything that can be wrong is said before a machine boots."""
    sources: dict[str, Source] = {}

    def get(spec: str) -> Source:
        if spec not in sources:
            sources[spec] = resolve_source(spec, bus)
        return sources[spec]

    if source:
        chosen = {k.release: get(source) for k in kernels}
    else:
        own = {k.release: get(series_source(k)) for k in kernels}
        if own_source:
            chosen = own
        else:
            newest = max(own.values(), key=_version_key)
            chosen = dict.fromkeys(own, newest)
    built: dict[str, SelftestBuild] = {}
    plans = []
    for k in kernels:
        src = chosen[k.release]
        if src.spec not in built:
            built[src.spec] = build(src, bus)
        tests = built[src.spec]
        binaries = list(tests.binaries)
        subtests: dict[str, set[str]] = {}
        if selections:
            wanted = []
            for sel in selections:
                if sel.binary not in tests.binaries and sel.binary not in tests.failed:
                    raise SelftestError(
                        f"--test {sel.binary}: {src.spec} has no such cgroup selftest; it has "
                        f"{', '.join(sorted(tests.binaries))}")
                if sel.binary not in wanted:
                    wanted.append(sel.binary)
                if sel.subtest:
                    subtests.setdefault(sel.binary, set()).add(sel.subtest)
            binaries = wanted
        plans.append(KernelPlan(k, tests, binaries, subtests))
    return plans


_EXIT_MARK = "KHARNESS-EXIT="


def _exit_status(text: str) -> tuple[str, int]:
    """The program's output without the shell's status line, and that status (-1: none, the
    shell never got there). The shell's own `Killed` notice goes too."""
    lines = text.replace("\r\n", "\n").split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(_EXIT_MARK) and lines[i][len(_EXIT_MARK):].strip().isdigit():
            status = int(lines[i][len(_EXIT_MARK):])
            kept = lines[:i]
            if kept and kept[-1].strip() in ("Killed", "Segmentation fault", "Aborted"):
                kept = kept[:-1]
            return "\n".join(kept) + "\n", status
    return text, -1


def cell_name(binary: str, subtest: str | None = None) -> str:
    return f"selftest/{binary}" + (f"/{subtest}" if subtest else "")


class SelftestRunner(Fleet):
    """Runs the plans: one machine per kernel, `jobs` at a time. Interrupts, full disks and
    dead machines are handled as the scenario runner does (a cut-short binary is no result)."""

    def __init__(self, plans: list[KernelPlan], writer: ResultsWriter, bus: EventBus, *,
                 jobs: int = 2, repeat: int = 1, timeout: float = DEFAULT_TIMEOUT,
                 accel: str = "tcg", boot_timeout: float = 90.0, role: str = "") -> None:
        super().__init__(writer, jobs)
        self.role = role  # ScenarioResult.role of every result ("referee": run --referee)
        self.plans = plans
        self.bus = bus
        self.repeat = max(1, repeat)
        self.timeout = timeout
        self.accel = accel
        self.boot_timeout = boot_timeout
        self._done_binaries: set[tuple[str, str]] = set()

    # --- what the command line's _finishing reads ------------------------------------------

    def not_run(self) -> list[str]:
        return [f"{cell_name(b)} [{p.kernel.release} v2]" for p in self.plans for b in p.binaries
                if (p.kernel.release, b) not in self._done_binaries]

    # --- running ---------------------------------------------------------------------------

    def run(self) -> list[ScenarioResult]:
        total = sum(len(p.binaries) for p in self.plans)
        self.bus.emit("selftest.plan", f"{total} selftest program(s) x {self.repeat} on "
                      f"{len(self.plans)} kernel(s), {min(self.jobs, len(self.plans))} in "
                      "parallel", total=total)
        self._run_parallel(self._run_kernel, self.plans, "selftest")
        return self.writer.results

    def _record(self, result: ScenarioResult) -> None:
        self.write(result)
        extra = f": {result.reason}" if result.status in (SKIP, ERROR, FAIL) and result.reason \
            else ""
        self.bus.emit(f"selftest.{result.status}",
                      f"{result.status.upper():5} {result.key}{extra}", result=result.key)

    def _config(self, p: KernelPlan, boot: int) -> MachineConfig:
        return MachineConfig(
            kernel=p.kernel, initrd=images.initrd_for(p.kernel, self.bus), memory=MEMORY,
            cpus=CPUS, hierarchy="v2", swap=SWAP, disk=DISK, disk_files=p.tests.directory,
            module_groups=("ext4",), cgroup2_options=CGROUP2_OPTIONS, cmdline=CMDLINE,
            accel=self.accel,
            boot_timeout=self.boot_timeout,
            workdir=self.writer.dir / "machines" / f"selftest-{p.kernel.release}-boot{boot}")

    def _result(self, p: KernelPlan, name: str, status, reason: str = "", **kw) -> ScenarioResult:
        src = p.tests
        return ScenarioResult(
            scenario=name, kernel=p.kernel.release, kernel_spec=p.kernel.spec, hierarchy="v2",
            status=status, reason=reason,
            description=(f"the kernel's own cgroup selftest, built from {src.source} "
                         f"{src.version} (the same binary on every kernel of the run unless "
                         "--own-source: a verdict that differs between kernels is theirs)"),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), role=self.role, **kw)

    def _run_kernel(self, p: KernelPlan) -> None:
        pending = list(p.binaries)
        for binary in [b for b in pending if b in p.tests.failed]:
            self._record(self._result(p, cell_name(binary), ERROR, p.tests.failed[binary],
                                      failure_kind="build"))
            self._done_binaries.add((p.kernel.release, binary))
            pending.remove(binary)
        boot = 0
        while pending and not self._cancel.is_set():
            boot += 1
            vm = Machine(self._config(p, boot), self.bus)
            if not self._track(vm):
                return
            machine = f"selftest-{p.kernel.release}-boot{boot}"
            try:
                try:
                    vm.start()
                    assert vm.ssh is not None
                    r = vm.ssh.run(f"mkdir -p {GUEST_DIR} && mount -t ext4 /dev/vda {GUEST_DIR}",
                                   timeout=30)
                    if not r.ok:
                        raise BootError(f"mounting the selftests' disk failed: "
                                        f"{r.stderr.strip() or r.stdout.strip()}", [], None,
                                        vm.console_tail())
                except BootError as exc:
                    if self._cancel.is_set():
                        return
                    for binary in pending:
                        self._record(self._result(p, cell_name(binary), ERROR,
                                                  f"boot failed: {exc.reason}",
                                                  console_excerpt=exc.console_tail,
                                                  failure_kind=exc.failure or "boot",
                                                  machine=machine))
                        self._done_binaries.add((p.kernel.release, binary))
                    return
                while pending and not self._cancel.is_set():
                    binary = pending[0]
                    alive = self._run_binary(vm, p, binary, machine)
                    if self._cancel.is_set():
                        return
                    pending.pop(0)
                    self._done_binaries.add((p.kernel.release, binary))
                    if not alive:
                        break
            finally:
                vm.stop()
                self._untrack(vm)

    def _run_binary(self, vm: Machine, p: KernelPlan, binary: str, machine: str) -> bool:
        """Run one binary `repeat` times and record its results; False when the machine must
        be booted again (it died, or no longer answers)."""
        runs: list[BinaryOutput] = []
        outcomes: list[StepOutcome] = []
        self.bus.emit("selftest.start", f"running {binary} on {p.kernel.release}"
                      + (f" ({self.repeat} times)" if self.repeat > 1 else ""))
        for i in range(self.repeat):
            first_event = len(vm.console.events)
            start = time.monotonic()
            # The shell reports the status: SSH gives none for a program a signal ended
            # (dropbear sends exit-signal), and 128 + N is what tells a crash from a failure.
            command = (f"cd {GUEST_DIR} && timeout -s KILL {self.timeout:g} ./{binary}; "
                       f"echo {_EXIT_MARK}$?")
            try:
                r = vm.ssh.run(command, timeout=self.timeout + 30, pty=True)  # type: ignore[union-attr]
                error = None
            except ChannelError as exc:
                r, error = None, f"lost the guest: {exc}"
            duration = time.monotonic() - start
            text, status = _exit_status(r.stdout if r is not None else "")
            out = parse(text)
            # `timeout -s KILL` ends a hung binary with SIGKILL (exit 137) at the timeout
            timed_out = r is not None and (r.timed_out or (status == 137 and
                                                           duration >= self.timeout - 1))
            outcomes.append(StepOutcome(
                name=f"{binary}#{i + 1}" if self.repeat > 1 else binary, command=f"./{binary}",
                cgroup=".", exit_status=status, signal=None, timed_out=timed_out,
                timeout=self.timeout, duration=round(duration, 3), stdout=text[-4000:],
                stderr=""))
            failures = [e for e in vm.console.events[first_event:]
                        if e.kind not in (ConsoleEventKind.MARKER, ConsoleEventKind.OOM_KILL,
                                          ConsoleEventKind.TAINT)]
            kind = classify(failures)
            exited = vm.exit_description(wait=2.0 if error else 0.0)
            problem = None
            if kind:
                problem = (kind, (f"kernel {kind} while {binary} ran: "
                           f"{failures[0].payload or failures[0].line.strip()}"),
                           vm.console.excerpt(failures[0]))
            elif exited:
                problem = ("machine", f"{exited} while {binary} ran"
                           + (f"; then: {error}" if error else ""), vm.console_tail(40))
            elif error:
                problem = ("ssh", error, vm.console_tail(40))
            elif outcomes[-1].timed_out:
                problem = ("hang", (f"{binary} did not finish within {self.timeout:g} s "
                           "(killed)"), vm.console_tail(40))
            elif status > 128:
                problem = ("crash", f"{binary} crashed: killed by signal {status - 128}"
                           + (f" after subtest {out.subtests[-1].number}" if out.subtests else
                              " before any subtest reported"), "\n".join(text.splitlines()[-20:]))
            runs.append(out)
            if problem is not None:
                kind_name, reason, excerpt = problem
                self._record_subtests(p, binary, runs, outcomes, machine)
                if out.missing():
                    reason += f"; {out.missing()} planned subtest(s) did not report"
                self._record(self._result(p, cell_name(binary), ERROR, reason,
                                          console_excerpt=excerpt, failure_kind=kind_name,
                                          steps=list(outcomes), machine=machine,
                                          duration=duration))
                if kind_name in ("machine", "ssh") or kind == "panic" or not vm.alive():
                    return False
                try:  # a killed hang or a crash leaves the guest usable when it still answers
                    return vm.ssh.run("true", timeout=10).ok  # type: ignore[union-attr]
                except ChannelError:
                    return False
        self._record_subtests(p, binary, runs, outcomes, machine)
        return True

    def _record_subtests(self, p: KernelPlan, binary: str, runs: list[BinaryOutput],
                         outcomes: list[StepOutcome], machine: str) -> None:
        only = p.subtests.get(binary)
        whole_skip = next((o.skipped for o in runs if o.skipped), None)
        if whole_skip and not any(o.subtests for o in runs):
            self._record(self._result(p, cell_name(binary), SKIP, whole_skip,
                                      steps=list(outcomes), machine=machine))
            return
        names: list[str] = []
        for o in runs:
            for s in o.subtests:
                if s.name not in names:
                    names.append(s.name)
        for name in names:
            if only and name not in only:
                continue
            seen = [s for o in runs for s in o.subtests if s.name == name]
            statuses = [s.status for s in seen]
            checks = [Check(description=f"{binary}: {name}" + (f" (run {i + 1})"
                                                               if len(seen) > 1 else ""),
                            expected="ok", observed={"pass": "ok", "fail": "not ok",
                                                     "skip": "ok # SKIP"}[s.status],
                            passed=s.status == "pass",
                            skipped_reason=(s.reason or "skipped") if s.status == "skip" else None)
                      for i, s in enumerate(seen)]
            last = seen[-1]
            if set(statuses) == {"skip"}:
                status, reason = SKIP, last.reason or "the test skipped (it gave no reason)"
            elif "fail" in statuses and "pass" in statuses:
                ok = statuses.count("pass")
                status = FAIL
                reason = (f"flaky: ok in {ok} of {len(statuses)} runs, not ok in "
                          f"{len(statuses) - ok}")
            elif "fail" in statuses:
                status = FAIL
                said = next((s.reason for s in reversed(seen) if s.status == "fail" and s.reason),
                            "")
                reason = (f"not ok: {said}" if said else "not ok") + \
                    (f" ({statuses.count('fail')} of {len(statuses)} runs)"
                     if len(statuses) > 1 else "")
            else:
                status, reason = PASS, ""
            if len(seen) < len(runs) and status != SKIP:
                reason = (reason + "; " if reason else "") + \
                    f"reported in {len(seen)} of {len(runs)} runs"
            self._record(self._result(p, cell_name(binary, name), status, reason, checks=checks,
                                      machine=machine))
        for wanted in sorted((only or set()) - set(names)):
            self._record(self._result(
                p, cell_name(binary, wanted), ERROR,
                f"{binary} printed no result for {wanted} (its subtests: {', '.join(names)})",
                failure_kind="selftest", steps=list(outcomes), machine=machine))
