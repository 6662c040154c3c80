"""The `kharness` command line: one cmd_* function per subcommand (parse, call the library,
print, exit status) and the argparse definitions (build_parser). Longer than ~600 lines because
the parser's help texts are a third of it; the commands hold no logic of their own beyond
turning library results and errors into output and exit statuses."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

from . import hostcmd, images, kernels
from .channels import ChannelError, CommandResult
from .console import classify
from .events import EventBus, TerminalPrinter
from .machine import BootError, Machine, MachineConfig, detect_accel, memory_mib
from .output import OutputError, atomic_write, free_bytes

EXIT_USAGE = 2
EXIT_BOOT = 3  # the guest did not come up
EXIT_KERNEL = 4  # the kernel panicked or the machine died while the command ran


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: unwinds like Ctrl-C, so every `with Machine` shuts its QEMU down
    and the run records what did not run; the exit status is 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_interrupts: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _interrupts.append(signum)
    if len(_interrupts) > 1:
        # A second interrupt while the first one unwinds: leave now. Results are already on
        # disk (fsynced per line) and QEMU dies with us (its parent-death signal).
        os.write(2, f"kharness: {signal.Signals(signum).name} again: exiting now\n".encode())
        os._exit(128 + signum)
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """kharness's own SIGINT and SIGTERM handlers, whatever was inherited: a background job
    of a script starts with SIGINT ignored, and must still stop on SIGINT as on SIGTERM."""
    _interrupts.clear()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread (an embedding caller)
            signal.signal(sig, _on_signal)


def _one_off_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options `backtrace` and `reproduce` share: where results go, machines, output."""
    p.add_argument("--results", help=f"results directory (default results/{command}-<time>)")
    p.add_argument("--jobs", type=int, help="machines in parallel (default: 2)")
    _accel_and_output(p)


def _accel_and_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")


def reproduce_recipes() -> tuple[str, ...]:
    from .reproduce import RECIPE_NAMES
    return RECIPE_NAMES


def _bus(args: argparse.Namespace) -> EventBus:
    bus = EventBus()
    bus.subscribe(TerminalPrinter(quiet=getattr(args, "quiet", False),
                                  verbose=getattr(args, "verbose", False)))
    return bus


# --- setup / kernel ---------------------------------------------------------------------------

def cmd_setup(args: argparse.Namespace) -> int:
    bus = _bus(args)
    missing = hostcmd.missing_host_packages()
    if args.debug:  # what the test suite needs besides (./kh test runs setup --debug)
        missing += hostcmd.missing_host_packages(hostcmd.TEST_PACKAGES)
    if missing:
        bus.emit("setup.apt", f"installing host packages: {' '.join(missing)}")
        hostcmd.apt_install(missing)
    else:
        bus.emit("setup.apt", "host packages present")
    specs = args.kernel or list(kernels.DEFAULT_KERNELS)
    for spec in specs:
        k = kernels.resolve(spec, bus, refresh=args.refresh)
        bus.emit("setup.kernel", f"{spec}: {k.release}")
        images.initrd_for(k, bus)
        if args.debug:
            kernels.fetch_debug(k, bus)
    bus.emit("setup.done", f"set up: {', '.join(specs)}; cache in {kernels.kernels_root().parent}")
    return 0


def cmd_kernel_fetch(args: argparse.Namespace) -> int:
    bus = _bus(args)
    for spec in args.spec:
        k = kernels.resolve(spec, bus, refresh=True)
        line = f"{spec}\t{k.release}\t{k.vmlinux}"
        if args.debug:  # a DebugSymbolsError is a KernelSpecError: one line, exit 2
            line += f"\t{kernels.fetch_debug(k, bus)}"
        print(line)
    return 0


def cmd_kernel_build(args: argparse.Namespace) -> int:
    from .kernels import build

    bus = _bus(args)
    result = build.build(args.source, args.config, bus, name=args.name,
                         allow_dropped=args.allow_dropped, jobs=args.jobs,
                         keep_objects=args.keep_objects, check_only=args.check)
    k = result.kernel
    if k is None:
        return 0
    print(f"{k.spec}\t{k.release}\t{k.vmlinux}"
          + (f"\t{k.debug_vmlinux}" if k.debug_vmlinux else ""))
    return 0


def cmd_kernel_prune(args: argparse.Namespace) -> int:
    from .kernels import build

    pruned = build.prune(objects=args.objects, sources=args.sources, dry_run=args.dry_run)
    if args.releases:
        from .kernels import debian

        for k in debian.unnamed():
            entry = k.vmlinux.parent
            pruned.append(build.Pruned(entry, kernels.disk_usage(entry),
                                       f"{k.release}: not the newest cached of its series "
                                       "and flavour, so no series name points at it (a pin "
                                       "fetches it again)"))
            if not args.dry_run:
                shutil.rmtree(entry, ignore_errors=True)
    for p in pruned:
        print(f"{'would remove' if args.dry_run else 'removed'}\t{p.bytes / 2**20:.0f}M\t"
              f"{p.path}\t{p.why}")
    total = sum(p.bytes for p in pruned)
    print(f"{'would free' if args.dry_run else 'freed'} {total / 2**20:.0f} MiB "
          f"({len(pruned)} item(s))", file=sys.stderr)
    return 0


def cmd_kernel_list(args: argparse.Namespace) -> int:
    if args.available is not None:
        return _kernel_list_available(args)
    cached = kernels.cached_kernels()
    if not cached:
        print("no kernels cached: run `kharness setup` or `kharness kernel fetch debian:6.1`",
              file=sys.stderr)
        return 0
    header = ["SPEC", "RELEASE", *kernels.FLAGS, "SIZE"]
    rows = []
    for k in cached:
        size = kernels.disk_usage(k.vmlinux.parent)
        spec = k.spec if len(k.spec) <= 40 else k.spec[:5] + "..." + k.spec[-32:]
        rows.append([spec, k.release, *k.flags().values(), f"{size / 2**20:.0f}M"])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    print("flags: y built in, m module, n not set, - no such option in this kernel "
          "(MEMCG_V1/CPUSETS_V1 before 6.11: v1 comes with MEMCG/CPUSETS)")
    return 0


def _kernel_list_available(args: argparse.Namespace) -> int:
    """`kernel list --available [SERIES]`: what Debian's archive offers, next to the cache."""
    from .kernels import debian

    series = args.available or None
    try:
        releases = debian.available(series, _bus(args))
    except kernels.KernelSpecError as exc:
        raise UsageError(str(exc)) from None
    if not releases:
        print(f"the archive offers no kernel{' of ' + series if series else ''} "
              "(apt-get update?)", file=sys.stderr)
        return 1
    cached = {k.release for k in kernels.cached_kernels()}
    rows = [["SPEC", "RELEASE", "FLAVOUR", "CACHED"]]
    for r in releases:
        rows.append([debian.spec_of(r), r, debian.split_release(r)[1],
                     "yes" if r in cached else ""])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


# --- machines -------------------------------------------------------------------------------

def _machine_config(args: argparse.Namespace, bus: EventBus) -> MachineConfig:
    if not shutil.which("qemu-system-x86_64"):
        raise UsageError("qemu-system-x86_64 not found: run `kharness setup` "
                         "(or apt-get install qemu-system-x86)")
    try:
        memory_mib(args.memory)
        if args.swap:
            memory_mib(args.swap)
    except ValueError:
        raise UsageError(f"bad size {args.memory!r}/{args.swap!r}: use e.g. 512M, 1G") from None
    kernel = kernels.resolve(args.kernel, bus)
    initrd = images.initrd_for(kernel, bus)
    return MachineConfig(
        kernel=kernel, initrd=initrd, memory=args.memory, cpus=args.cpus,
        hierarchy=args.hierarchy, swap=args.swap, rdma=args.rdma, disk=args.disk,
        accel=args.accel, boot_timeout=args.boot_timeout,
    )


def _report_boot(vm: Machine, bus: EventBus) -> None:
    for name, status in sorted(vm.info.controllers.items()):
        if not status.available:
            bus.emit("machine.warning", f"{vm.config.hierarchy} {name} controller unavailable on "
                     f"{vm.config.kernel.release}: {status.reason}")
    for problem in vm.info.problems:
        bus.emit("machine.warning", f"guest setup problem on {vm.config.kernel.release}: "
                 f"{problem}")
    for retry in vm.info.retries:
        bus.emit("machine.warning", f"{vm.config.kernel.release} was booted again: {retry}")
    failure = vm.console.failures
    if failure:
        bus.emit("machine.warning", f"kernel reported {len(failure)} problem(s): "
                 f"{failure[0].line.strip()}")


def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        raise UsageError("no command: kharness exec --kernel SPEC -- CMD ARGS...")
    bus = _bus(args)
    config = _machine_config(args, bus)
    command = args.command[0] if len(args.command) == 1 else shlex.join(args.command)
    with Machine(config, bus) as vm:
        _report_boot(vm, bus)
        assert vm.ssh is not None
        stdin = None if sys.stdin.isatty() or not args.stdin else sys.stdin.buffer.read()
        bus.emit("exec.run", f"running: {command}")
        try:
            result = vm.ssh.run(command, timeout=args.timeout, stdin=stdin)
        except ChannelError as exc:  # connection lost: give a dying QEMU a moment to exit
            exited = vm.exit_description(wait=5.0)
            why = f"{exited}; then: {exc}" if exited else str(exc)
            result = CommandResult(command, -1, "", f"kharness: {why}\n", 0.0)
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        sys.stderr.flush()
        if result.timed_out:
            bus.emit("exec.error", f"command timed out after {args.timeout}s")
            return 124
        failures = vm.console.failures
        kind = classify(failures)
        if kind == "panic" or not vm.alive():
            excerpt = vm.console.excerpt(failures[0], after=25) if failures else vm.console_tail()
            what = "the kernel panicked" if kind == "panic" else \
                (vm.exit_description() or "the machine died")
            bus.emit("exec.error", f"{what} while the command ran; console log: "
                     f"{vm.console_log}")
            print(excerpt, file=sys.stderr)
            return EXIT_KERNEL
        if failures:
            bus.emit("exec.warning", f"the kernel reported {kind}: {failures[0].payload} "
                     f"(console log: {vm.console_log})")
    return result.exit_status if result.exit_status >= 0 else 255


def cmd_shell(args: argparse.Namespace) -> int:
    bus = _bus(args)
    config = _machine_config(args, bus)
    with Machine(config, bus) as vm:
        _report_boot(vm, bus)
        assert vm.ssh is not None
        return vm.ssh.interactive()


# --- scenarios ------------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    """Every problem on stderr, one a line, and their count; exit status 2 if any."""
    from . import scenario

    scenarios, problems = scenario.load([Path(p) for p in args.paths])
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found",
              file=sys.stderr)
        return 2
    print(f"{len(scenarios)} scenario{'s' if len(scenarios) != 1 else ''} OK")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import fnmatch

    from . import scenario
    from .output import append_empty
    from .results import ResultsWriter, environment
    from .runner import Runner, Shard, default_jobs, shard_scenarios

    try:
        shard = Shard.parse(args.shard) if args.shard else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    scenarios, problems = scenario.load([Path(p) for p in args.paths])
    if problems:
        for problem in problems:
            print(f"kharness: {problem}", file=sys.stderr)
        print(f"kharness: {len(problems)} problem(s): nothing was run", file=sys.stderr)
        return EXIT_USAGE
    if args.k:
        scenarios = [s for s in scenarios
                     if args.k in s.name or fnmatch.fnmatch(s.name, args.k)]
    if not scenarios:
        raise UsageError(f"no scenarios under {' '.join(args.paths)}"
                         + (f" match -k {args.k!r}" if args.k else ""))
    bus = _bus(args)
    hierarchies = args.hierarchy or ["v1", "v2"]
    selected = scenarios
    if shard:  # the same slice on every machine: see shard_scenarios
        selected = shard_scenarios(scenarios, hierarchies, shard)
        bus.emit("run.shard", f"shard {shard}: {len(selected)} of {len(scenarios)} scenarios")
    specs = args.kernel or list(kernels.DEFAULT_KERNELS)
    kernel_list = [kernels.resolve(spec, bus) for spec in specs]
    referee_plans = _referee_plans(args, selected, kernel_list, hierarchies, bus)
    results_dir = Path(args.results or f"results/{time.strftime('%Y%m%d-%H%M%S')}")
    writer = ResultsWriter(results_dir)
    accel = _run_accel(args.accel, kernel_list[0], bus)
    runner = Runner(selected, kernel_list, hierarchies, writer, bus,
                    jobs=args.jobs or default_jobs(), accel=accel)
    _check_free_space(runner, results_dir, bus)
    info = environment(kernel_list, accel)
    info.update(argv=sys.argv, scenarios=[s.name for s in selected], hierarchies=hierarchies)
    if args.referee:
        from .referee import ROLE, RefereedRun
        from .selftest.run import SelftestRunner

        selftests = SelftestRunner(referee_plans, writer, bus, accel=accel, role=ROLE,
                                   jobs=args.jobs or len(referee_plans),
                                   boot_timeout=runner.boot_timeout) if referee_plans else None
        info["referee"] = [_selftest_info(p) for p in referee_plans]
        runner = RefereedRun(runner, selftests, selected, bus)
    if shard:  # `kharness merge` checks the shards' scenarios add up to all_scenarios
        info["shard"] = {"index": shard.index, "count": shard.count,
                         "all_scenarios": sorted(s.name for s in scenarios)}
        append_empty(writer.jsonl)  # an empty shard (more shards than scenarios) merges too
    writer.write_run_info(info)
    return _run_to_exit(runner, writer, info, args.junit, bus, "runs")


def _referee_plans(args: argparse.Namespace, scenarios: list, kernel_list: list,
                   hierarchies: list[str], bus: EventBus) -> list:
    """`run --referee`: the selftest cases the scenarios name, built and checked for every
    kernel before anything boots ([] without --referee or refs)."""
    if not args.referee:
        return []
    from .referee import selections
    from .selftest.build import SelftestBuildError
    from .selftest.run import SelftestError, plan

    if "v2" not in hierarchies:
        raise UsageError("--referee: the kernel's cgroup selftests test v2 only; run with "
                         "--hierarchy v2 (or both)")
    wanted = selections(scenarios)
    if not wanted:
        bus.emit("run.warning", "--referee: none of these scenarios names a selftest case "
                 "(refs:), so there is nothing to referee")
        return []
    try:
        return plan(kernel_list, wanted, bus)
    except (SelftestError, SelftestBuildError) as exc:
        raise UsageError(f"--referee: {exc}") from None


def _selftest_info(p) -> dict:
    """What run.json says of one kernel's selftests."""
    return {"kernel": p.kernel.release, "source": p.tests.source, "version": p.tests.version,
            "identity": p.tests.identity, "binaries": p.binaries}


# Output a run needs, estimated for the free-space warning: a boot's console log (a Debian
# boot at loglevel 5 prints ~3 KiB; each OOM report ~5 KiB more) and a result's JSON line and
# JUnit case (~3 KiB, more with samples and backtraces).
BOOT_OUTPUT_BYTES = 64 << 10
RESULT_OUTPUT_BYTES = 16 << 10


def _check_free_space(runner, results_dir: Path, bus: EventBus) -> None:
    jobs, pre = runner.plan()
    need = len(jobs) * BOOT_OUTPUT_BYTES + (len(pre) + sum(len(j.cells) for j in jobs)) * \
        RESULT_OUTPUT_BYTES * 2  # results.jsonl and junit.xml
    free = free_bytes(results_dir)
    if free is not None and free < need:
        bus.emit("run.warning", f"only {free >> 10} KiB free for {results_dir}: this run's "
                 f"{len(jobs)} boot(s) may need up to {need >> 10} KiB for consoles and "
                 "results; the run stops at the first write that fails", free=free, need=need)


def _run_accel(accel: str, kernel, bus: EventBus) -> str:
    """The accelerator of a whole run: decided once (the KVM probe boots `kernel`) and
    recorded in run.json."""
    if accel != "auto":
        return accel
    return detect_accel(MachineConfig(kernel=kernel, initrd=images.initrd_for(kernel, bus)), bus)


def _run_to_exit(runner, writer, info: dict, junit: str | None, bus: EventBus,
                 what: str) -> int:
    """Run a scenario or selftest runner to its exit status: 0 all passed or skipped, 1 a
    failure, 2 an error or a write that failed (one line; what was written stays)."""
    from .results import ERROR, FAIL

    start = time.monotonic()
    try:
        with _finishing(runner, writer, info, [Path(junit)] if junit else [], bus):
            results = runner.run()
    except OutputError as exc:
        print(f"kharness: {exc}; the run stopped: {len(writer.results)} result(s) kept in "
              f"{writer.jsonl}, {len(runner.not_run())} not run", file=sys.stderr)
        return EXIT_USAGE
    counts = runner.counts
    bus.emit("run.done", f"{len(results)} {what} in {time.monotonic() - start:.0f}s: "
             + ", ".join(f"{n} {k}" for k, n in counts.items()) + f"; results in {writer.dir}")
    if counts[ERROR]:
        return EXIT_USAGE
    return 1 if counts[FAIL] else 0


@contextlib.contextmanager
def _finishing(runner, writer, info: dict, junit_copies: list[Path], bus: EventBus):
    """Run the body, then write junit.xml and run.json's ending whatever happened: finished,
    interrupted (the signal, and the cells that did not run: they have no result), or stopped
    by a failed write. Both files are replaced whole, so a full disk leaves the old ones; a
    second failure to write is a warning under the first."""
    start = time.monotonic()
    ending: dict = {"status": "finished"}
    try:
        yield
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        ending = {"status": "interrupted", "signal": signal.Signals(signum).name}
        raise
    except OutputError as exc:
        ending = {"status": "stopped", "error": str(exc)}
        raise
    finally:
        ending.update(seconds=round(time.monotonic() - start, 1),
                      finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      counts=dict(runner.counts))
        not_run = runner.not_run()
        if not_run:
            ending["not_run"] = not_run
            bus.emit("run.warning", f"{len(not_run)} planned run(s) have no result "
                     f"({ending['status']}); run.json lists them")
        info["ending"] = ending
        for write in (lambda: writer.write_junit(*junit_copies),
                      lambda: writer.write_run_info(info)):
            try:
                write()
            except OutputError as exc:
                kind = "debug.output" if ending["status"] == "stopped" else "run.warning"
                bus.emit(kind, f"{exc}: kept the previous version")


def cmd_backtrace(args: argparse.Namespace) -> int:

    from . import backtrace, scenario
    from .results import ResultsWriter, environment
    from .runner import Runner

    req = backtrace.Request(
        function=args.function, kernels=args.kernel or list(kernels.DEFAULT_KERNELS),
        hierarchy=args.hierarchy, knobs=tuple(args.set or backtrace.DEFAULT_KNOBS),
        swap=args.swap, workload=args.workload, count=args.count, comm=args.comm,
        callers=tuple(args.caller) if args.caller else None,
        capture=tuple(args.capture or ()), commands=tuple(args.gdb_command or ()),
        timeout=args.timeout)
    try:
        backtrace.knob_values(req.knobs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.script:
        backtrace.write_script(req, Path(args.script))
        print(f"kharness: wrote {args.script}", file=sys.stderr)
    results_dir = Path(args.results or f"results/backtrace-{time.strftime('%Y%m%d-%H%M%S')}")
    path = backtrace.write_scenario(req, results_dir / "scenario")
    scenarios, problems = scenario.load([path])
    if problems:  # a bad --set, --workload...: said before anything boots
        for problem in problems:
            print(f"kharness: {problem}", file=sys.stderr)
        return EXIT_USAGE
    bus = _bus(args)
    kernel_list = [kernels.resolve(spec, bus) for spec in req.kernels]
    writer = ResultsWriter(results_dir)
    accel = _run_accel(args.accel, kernel_list[0], bus)
    info = {**environment(kernel_list, accel), "argv": sys.argv}
    writer.write_run_info(info)
    runner = Runner(scenarios, kernel_list, [req.hierarchy], writer, bus,
                    jobs=min(len(kernel_list), args.jobs or 2), accel=accel)
    with _finishing(runner, writer, info, [], bus):
        results = runner.run()
    order = {k.release: i for i, k in enumerate(kernel_list)}
    results = sorted(results, key=lambda r: order.get(r.kernel, 99))
    text, doc, ok = backtrace.report(results, req)
    print(text, end="")
    if args.json:
        backtrace.write_json(doc, Path(args.json))
    bus.emit("backtrace.done", f"results in {results_dir} (scenario: {path})")
    return 0 if ok else 1


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Parse the trace, look its functions up in each kernel, plan, run, compare."""
    from concurrent.futures import ThreadPoolExecutor

    from . import reproduce, scenario, traces
    from .kernels.functions import FunctionLookupError, lookup
    from .results import ResultsWriter, environment
    from .runner import Runner

    path = Path(args.trace)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    try:
        trace = traces.parse_trace(text, name=str(path))
    except traces.TraceFormatError as exc:
        raise UsageError(str(exc)) from None
    chain = reproduce.pasted_chain(trace.backtrace)
    if not chain:
        raise UsageError(f"{path}: the {trace.format} trace has no reliable frame with a "
                         "function name (only `?` or raw addresses)")
    bus = _bus(args)
    specs = args.kernel or list(kernels.DEFAULT_KERNELS)
    kernel_list = [kernels.resolve(spec, bus) for spec in specs]
    names = sorted(reproduce.lookup_names(trace))
    bus.emit("reproduce.lookup", f"looking up the {len(chain)} pasted functions in "
             f"{len(kernel_list)} kernel(s)' debug info")

    def functions_of(kernel):
        try:
            vmlinux = kernels.fetch_debug(kernel, bus)
            return lookup(vmlinux, names)
        except (kernels.KernelSpecError, FunctionLookupError) as exc:
            raise UsageError(f"kernel {kernel.spec}: cannot look up functions: {exc}") from None

    with ThreadPoolExecutor(max_workers=len(kernel_list)) as pool:
        infos = list(pool.map(functions_of, kernel_list))
    try:
        workload = reproduce.plan_workload(trace, args.hierarchy, args.workload)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    plans = [reproduce.plan_kernel(trace, k.release, info, k.config_values(), infos,
                                   workload.recipe)
             for k, info in zip(kernel_list, infos, strict=True)]
    if not any(p.breakpoint for p in plans):
        kinds = "; ".join(f"{r.why}" for r in plans[0].chain[:3] if r.why)
        raise UsageError(f"{path}: none of the trace's functions ({', '.join(chain[:6])}"
                         f"{', ...' if len(chain) > 6 else ''}) exists out of line in "
                         f"{', '.join(k.release for k in kernel_list)}: nothing to break at"
                         + (f" ({kinds})" if kinds else ""))
    for k, p in zip(kernel_list, plans, strict=True):
        bus.emit("reproduce.plan", f"{k.release}: breakpoint {p.breakpoint or 'none'}"
                 + (f", callers {', '.join(p.callers)}" if p.callers else "")
                 + (f" ({p.note})" if p.note else ""))
    results_dir = Path(args.results or f"results/reproduce-{time.strftime('%Y%m%d-%H%M%S')}")
    scenario_path = results_dir / "scenario" / "reproduce.yaml"
    doc = reproduce.scenario_doc(trace, workload, plans, path.name)
    reproduce.write_scenario(doc, scenario_path, [f"from {path} ({trace.format} trace)"])
    scenarios, problems = scenario.load([scenario_path])
    if problems:  # a harness defect: the plan made a scenario the loader refuses
        for problem in problems:
            print(f"kharness: {problem}", file=sys.stderr)
        return EXIT_USAGE
    writer = ResultsWriter(results_dir)
    accel = _run_accel(args.accel, kernel_list[0], bus)
    info = {**environment(kernel_list, accel), "argv": sys.argv,
            "reproduce": {"trace": str(path), "format": trace.format}}
    writer.write_run_info(info)
    runner = Runner(scenarios, [k for k, p in zip(kernel_list, plans, strict=True)
                                if p.breakpoint], [workload.hierarchy], writer, bus,
                    jobs=min(len(kernel_list), args.jobs or 2), accel=accel)
    with _finishing(runner, writer, info, [], bus):
        results = runner.run()
    by_release = {r.kernel: r for r in results}
    comparisons = [reproduce.best_comparison(p, trace, by_release.get(p.release))
                   for p in plans]
    print(reproduce.report(trace, workload, plans, comparisons, results), end="")
    kept = reproduce.scenario_doc(trace, workload, plans, path.name,
                                  frames=reproduce.final_frames(comparisons, plans))
    header = [f"from {path} ({trace.format} trace); frames: what reproduced on each kernel"]
    header += [f"{c.release}: score {c.found}/{c.present}" for c in comparisons]
    reproduce.write_scenario(kept, scenario_path, header)
    doc_json = reproduce.document(trace, workload, plans, comparisons, scenario_path)
    (results_dir / "reproduce.json").write_text(json.dumps(doc_json, indent=2) + "\n")
    if args.script:
        script = Path(args.script)
        script.write_text(reproduce.script_text(kept, [k.spec for k in kernel_list]))
        script.chmod(0o755)
        print(f"kharness: wrote {script}", file=sys.stderr)
    bus.emit("reproduce.done", f"results in {results_dir} (scenario: {scenario_path})")
    return 0 if all(c.reproduced for c in comparisons) else 1


def cmd_bisect(args: argparse.Namespace) -> int:
    """The packaged release where a scenario's (or one check's) verdict changed."""
    from . import bisect, scenario
    from .kernels import debian
    from .units import parse_tolerance

    if args.repeat < 1:
        raise UsageError("--repeat must be >= 1")
    path_text, _, check = args.target.partition(":")
    scenarios, problems = scenario.load([Path(path_text)])
    if problems:
        for problem in problems:
            print(f"kharness: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if len(scenarios) != 1:
        raise UsageError(f"{path_text}: bisect takes one scenario file, not {len(scenarios)} "
                         "scenarios")
    the = scenarios[0]
    threshold = None
    if args.metric:
        if check:
            raise UsageError("give SCENARIO:CHECK or --metric, not both")
        try:
            threshold = bisect.Threshold(*parse_tolerance(args.threshold))
        except ValueError as exc:
            raise UsageError(f"--threshold: {exc}") from None
    elif args.threshold != "10%":
        raise UsageError("--threshold goes with --metric")
    target = bisect.Target(the.name, args.metric or check or None)
    if args.hierarchy not in the.hierarchies:
        raise UsageError(f"{the.name} does not run on {args.hierarchy} (its hierarchies: "
                         f"{', '.join(the.hierarchies)})")
    bus = _bus(args)
    if args.source:
        if args.metric:
            raise UsageError("--metric bisects packaged releases only (not --source yet)")
        return _bisect_source(args, the, target, Path(path_text).resolve(), bus)
    ends = []
    for which, spec_text in (("good", args.good), ("bad", args.bad)):
        spec = kernels.parse_spec(spec_text)
        if spec.kind != "debian":
            raise UsageError(f"--good/--bad {spec_text}: bisect goes over Debian's packaged "
                             "releases (debian:6.1.0-47, debian:6.12.118+deb12)")
        found = debian.SOURCE.candidates(spec, bus)
        if not found:
            raise UsageError(f"{spec_text}: the archive has no such release "
                             "(`kharness kernel list --available`)")
        # candidates are newest first; a series is its oldest release as the good end and
        # its newest as the bad end: the widest range it names
        series_only = re.fullmatch(r"\d+\.\d+", debian.wanted(spec).version)
        ends.append(found[-1] if series_only and which == "good" else found[0])
    releases = bisect.between(ends[0], ends[1], debian.available(None, bus))
    root = Path(args.results) if args.results else bisect.default_dir(
        target, ends[0], ends[1], args.hierarchy, args.repeat)
    bus.emit("bisect.plan", f"{len(releases)} releases from {ends[0]} (good) to {ends[1]} "
             f"(bad): at most {len(releases).bit_length() + 1} steps of {args.repeat} run(s); "
             f"results in {root}")
    accel_kernel: list = []

    def run_once(release: str, directory: Path, k: int) -> None:
        kernel = kernels.resolve(debian.spec_of(release), bus)
        if not accel_kernel:
            accel_kernel.append(_run_accel(args.accel, kernel, bus))
        _bisect_run(args, the, kernel, accel_kernel[0], directory,
                    {"target": args.target, "release": release, "repeat": k}, bus)

    stepper = bisect.Stepper(target, root, args.repeat, run_once, bus, metric=args.metric)
    bisection = bisect.Bisection(target, releases, stepper, bus, threshold=threshold)
    started = time.monotonic()
    try:
        answer = bisection.run()
        if answer.get("first_bad"):
            found = bisect.changes(kernels.resolve(debian.spec_of(answer["last_good"]), bus),
                                   kernels.resolve(debian.spec_of(answer["first_bad"]), bus))
            if found:
                bisection.answer["changes"] = found
    finally:
        out = bisect.write(root, bisection, started)
    print(f"bisect {args.target}{' --metric ' + args.metric if args.metric else ''} on "
          f"{args.hierarchy}: {len(releases)} releases, "
          f"{sum(len(s.verdicts) for s in bisection.steps.values())} boot(s)")
    order = {r: i for i, r in enumerate(releases)}
    for s in sorted(bisection.steps.values(), key=lambda s: order[s.release]):
        shown = (s.verdicts if threshold is None else
                 [f"{v:g}" if v is not None else None for v in s.values])
        print(f"  {s.release:28} {s.status or '?':10} {'/'.join(v or '-' for v in shown)}"
              + (f"  ({s.why})" if s.why else ""))
    print(answer["summary"])
    if answer.get("changes"):
        print(bisect.format_changes(answer["changes"]))
    print(f"kharness: {out}", file=sys.stderr)
    return 0 if answer.get("first_bad") or answer.get("no_change") else 1


def _bisect_run(args: argparse.Namespace, the, kernel, accel: str, directory: Path,
                about: dict, bus: EventBus) -> None:
    """One bisection run: the scenario on one kernel into `directory`, as `kharness run` does
    (run.json with its ending, results.jsonl, junit.xml)."""
    from .results import ResultsWriter, environment
    from .runner import Runner

    writer = ResultsWriter(directory)
    info = {**environment([kernel], accel), "argv": sys.argv, "bisect": about}
    writer.write_run_info(info)
    runner = Runner([the], [kernel], [args.hierarchy], writer, bus, jobs=1, accel=accel)
    with _finishing(runner, writer, info, [], bus):
        runner.run()


def _bisect_source(args: argparse.Namespace, the, target, scenario_path: Path,
                   bus: EventBus) -> int:
    """`bisect --source path:REPO`: `git bisect run` of a script that builds each commit with
    `kernel build` and runs the scenario (`--git-step`, below)."""
    from . import bisect
    from .kernels import build

    if not args.source.startswith("path:"):
        raise UsageError(f"--source {args.source}: give path:/a/linux/git/tree")
    if not args.config:
        raise UsageError("--source needs the fragments to build with: --config FRAGMENT...")
    repo = Path(args.source[5:]).resolve()
    configs = [str(Path(c).resolve()) for c in args.config]
    root = (Path(args.results) if args.results else Path("results") / (
        f"bisect-{the.name.replace('/', '_')}-{args.good}-{args.bad}-src")).resolve()
    if args.git_step:  # one commit, run by git bisect run: its exit status is the verdict
        rev = bisect.git(repo, "rev-parse", "HEAD")[:12]
        try:
            kernel = build.build(args.source, configs, bus, name=f"bisect-{rev}").kernel
        except kernels.KernelSpecError as exc:
            print(f"kharness: {rev}: the build failed: {exc}", file=sys.stderr)
            return bisect.GIT_SKIP

        def run_once(_release: str, directory: Path, k: int) -> None:
            _bisect_run(args, the, kernel, _run_accel(args.accel, kernel, bus), directory,
                        {"target": args.target, "commit": rev, "repeat": k}, bus)

        step = bisect.Stepper(target, root, args.repeat, run_once, bus)(rev)
        status = bisect.step_exit(step.verdicts, args.good_verdict)
        with (root / "git-steps.jsonl").open("a") as f:
            f.write(json.dumps({**step.to_dict(), "commit": rev, "exit": status}) + "\n")
        return status
    try:
        good, bad = bisect.check_tree(repo, args.good, args.bad)
    except bisect.BisectError as exc:
        raise UsageError(str(exc)) from None
    step_args = [str(scenario_path) + (":" + target.check if target.check else ""),
                 "--git-step", "--source", f"path:{repo}", "--hierarchy", args.hierarchy,
                 "--repeat", str(args.repeat), "--results", str(root), "--good", good,
                 "--bad", bad, "--good-verdict", args.good_verdict, "--accel", args.accel,
                 *[a for c in configs for a in ("--config", c)]]
    script = bisect.git_script(root, step_args, Path(__file__).resolve().parent.parent,
                               sys.executable)
    answer = bisect.git_bisect(repo, good, bad, script, root / "git-bisect.log", bus)
    steps = []
    if (root / "git-steps.jsonl").exists():
        steps = [json.loads(x) for x in (root / "git-steps.jsonl").read_text().splitlines()]
    atomic_write(root / "bisect.json", json.dumps(
        {"source": str(repo), "good": good, "bad": bad, "target": args.target,
         "script": str(script), "steps": steps, **answer}, indent=2) + "\n")
    print(answer["summary"])
    print(f"kharness: {root / 'bisect.json'} (git's log: {root / 'git-bisect.log'})",
          file=sys.stderr)
    return 0 if answer.get("first_bad") else 1


def cmd_selftest(args: argparse.Namespace) -> int:
    from .results import ResultsWriter, environment
    from .selftest.build import SelftestBuildError
    from .selftest.run import Selection, SelftestError, SelftestRunner, plan

    if args.repeat < 1 or args.timeout <= 0:
        raise UsageError("--repeat must be >= 1 and --timeout > 0")
    try:
        selections = [Selection.parse(t) for t in args.test or []]
    except SelftestError as exc:
        raise UsageError(str(exc)) from None
    bus = _bus(args)
    specs = args.kernel or list(kernels.DEFAULT_KERNELS)
    kernel_list = [kernels.resolve(spec, bus) for spec in specs]
    try:  # sources resolved, tests built and selections checked before anything boots
        plans = plan(kernel_list, selections, bus, source=args.source,
                     own_source=args.own_source)
    except (SelftestError, SelftestBuildError) as exc:
        raise UsageError(str(exc)) from None
    results_dir = Path(args.results or f"results/selftest-{time.strftime('%Y%m%d-%H%M%S')}")
    writer = ResultsWriter(results_dir)
    accel = _run_accel(args.accel, kernel_list[0], bus)
    runner = SelftestRunner(plans, writer, bus, jobs=args.jobs or len(plans),
                            repeat=args.repeat, timeout=args.timeout, accel=accel,
                            boot_timeout=args.boot_timeout)
    info = environment(kernel_list, accel)
    info.update(argv=sys.argv, hierarchies=["v2"], selftests=[_selftest_info(p) for p in plans])
    writer.write_run_info(info)
    return _run_to_exit(runner, writer, info, args.junit, bus, "selftest results")


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare
    from .rundir import RunDirError, read_run
    from .units import parse_size

    pairs = []
    for text in args.pair or []:
        a, eq, b = text.partition("=")
        if not eq or not a or not b:
            raise UsageError(f"--pair {text!r}: expected A_KERNEL=B_KERNEL (a release or spec "
                             "of each run, e.g. debian:6.1=debian:6.12)")
        pairs.append((a, b))
    if args.threshold < 0:
        raise UsageError(f"--threshold {args.threshold:g}: must be >= 0 (percent)")
    floors = {}
    for text in args.floor or []:
        unit, eq, value = text.partition("=")
        try:
            if not eq or unit not in compare.FLOORS:
                raise ValueError
            floors[unit] = (float(parse_size(value)) if unit.startswith("bytes")
                            else float(value))
            if floors[unit] < 0:
                raise ValueError
        except ValueError:
            raise UsageError(f"--floor {text!r}: expected UNIT=VALUE >= 0, UNIT one of "
                             f"{', '.join(compare.FLOORS)} (e.g. bytes=4M, count=0)") from None
    try:
        cmp = compare.compare(read_run(args.run_a), read_run(args.run_b), args.threshold,
                              floors, pairs, sampled=args.sampled)
    except RunDirError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(compare.render_text(cmp))
    if args.json:
        compare.write_json(cmp, Path(args.json))
    return 1 if cmp.regressed else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from . import merge
    from .rundir import RunDirError

    try:
        done = merge.merge([Path(p) for p in args.runs], Path(args.out), sys.argv,
                           with_report=not args.no_report)
    except RunDirError as exc:
        raise UsageError(str(exc)) from None
    for warning in done.warnings:
        print(f"kharness: warning: {warning}", file=sys.stderr)
    for src, old, new in done.renamed:
        print(f"kharness: {src}/machines/{old} is machines/{new}", file=sys.stderr)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(done.counts.items()))
    print(f"merged {len(done.inputs)} run(s) into {done.out}: {done.results} results"
          + (f" ({counts})" if counts else "") + (f"; report: {done.report}" if done.report
                                                  else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    if args.tolerance < 0:
        raise UsageError(f"--tolerance {args.tolerance:g}: must be >= 0 (percent)")
    run_dir = Path(args.run_dir)
    try:
        model = report.build(run_dir, tolerance=args.tolerance)
    except report.ReportError as exc:
        raise UsageError(str(exc)) from None
    if args.out == "-":
        sys.stdout.write(report.render(model, args.format, Path.cwd()))
        return 0
    out = Path(args.out) if args.out else report.default_output(run_dir, args.format)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(model, args.format, out.parent))
    differing = [row for row in model.rows if row.axes]
    print(f"kharness: wrote {out}: {len(model.rows)} scenarios x {len(model.columns)} "
          f"columns, {len(differing)} differ"
          + (f" ({', '.join(row.scenario for row in differing)})" if differing else ""),
          file=sys.stderr)
    return 0


# --- parser ---------------------------------------------------------------------------------

def _add_machine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", required=True, help="kernel spec: debian:6.1, debian:6.12, "
                   "debian:6.1.0-56, path:/x/bzImage[,modules=DIR]")
    p.add_argument("--hierarchy", choices=["v1", "v2", "none"], default="v2",
                   help="cgroup hierarchy mounted at boot (default v2)")
    p.add_argument("--memory", default="512M", help="guest memory (default 512M)")
    p.add_argument("--swap", help="zram swap size, e.g. 256M (default: no swap)")
    p.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    p.add_argument("--rdma", action="store_true", help="create a soft-RoCE device rxe0 on eth0")
    p.add_argument("--disk", help="attach a raw virtio disk of this size (/dev/vda)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto",
                   help="accelerator (default auto: KVM only if a probe boots under it)")
    p.add_argument("--boot-timeout", type=float, default=90.0, help="seconds (default 90)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="also console markers, timings")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from . import backtrace

    parser = _Parser(prog="kharness", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    p = sub.add_parser("setup", help="install host packages, fetch the default kernels, "
                       "build the guest image (idempotent)")
    p.add_argument("--kernel", action="append", help="kernel spec (default: debian:6.1 and "
                   "debian:6.12); repeat for several")
    p.add_argument("--refresh", action="store_true",
                   help="look for newer Debian kernels even when one is cached")
    p.add_argument("--debug", action="store_true",
                   help="also the kernels' debug symbols for gdb (`kharness backtrace`, gdb "
                   "scenarios; ~1 GB download each, else fetched on first need) and the "
                   "packages only the tests need (chromium, for the report screenshot)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("kernel", help="fetch, build or list kernels")
    ksub = p.add_subparsers(dest="kcmd", required=True, parser_class=_Parser)
    kp = ksub.add_parser("fetch", help="fetch the newest kernel of a spec into the cache")
    kp.add_argument("spec", nargs="+")
    kp.add_argument("--debug", action="store_true",
                    help="also the vmlinux with debug info, for gdb (Debian: the -dbg package, "
                    "~1 GB download, ~0.6 GB kept; path: kernels: the file itself)")
    kp.add_argument("-q", "--quiet", action="store_true")
    kp.set_defaults(func=cmd_kernel_fetch)
    kp = ksub.add_parser(
        "build", help="build a kernel from kconfig fragments (cached; use it as build:NAME)",
        description="Configure SOURCE from allnoconfig plus the fragments (merged in order, as "
        "merge_config.sh does), check that every option asked for is set, build it, and keep "
        "it in the cache as build:NAME. The same build again is a cache hit.")
    kp.add_argument("--source", required=True,
                    help="debian:6.1, debian:6.12 (Debian's linux-source) or path:/a/linux/tree "
                    "(built out of tree: the tree stays clean)")
    kp.add_argument("--config", action="append", required=True, metavar="FRAGMENT",
                    help="a kconfig fragment, repeatable, later ones win (e.g. "
                    "kconfig/base.config kconfig/cgroups.config)")
    kp.add_argument("--name", help="the build's name for build:NAME specs (default: series and "
                    "fragment names)")
    kp.add_argument("--allow-dropped", action="store_true",
                    help="build even if options asked for are off (a dependency is missing)")
    kp.add_argument("--check", action="store_true",
                    help="configure and verify only (seconds): are the options asked for all "
                    "there? nothing is compiled or stored")
    kp.add_argument("--jobs", type=int, help="make -j (default: all cores)")
    kp.add_argument("--keep-objects", action="store_true",
                    help="keep the object directory of a Debian source build (path: sources "
                    "keep theirs for incremental rebuilds)")
    kp.add_argument("-q", "--quiet", action="store_true")
    kp.set_defaults(func=cmd_kernel_build)
    kp = ksub.add_parser(
        "prune", help="remove what the kernel cache keeps that nothing uses",
        description="Debian kernels no series name points at (older than the newest cached "
        "of their series: what a bisection fetched), build entries no name points at, object "
        "directories of interrupted "
        "Debian-source builds; --objects also path: trees' object directories, --sources the "
        "unpacked Debian sources. A running build's directories are left alone.")
    kp.add_argument("--objects", action="store_true",
                    help="also the object directories of path: trees (incremental rebuilds)")
    kp.add_argument("--sources", action="store_true", help="also the unpacked Debian sources")
    kp.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    kp.add_argument("--keep-releases", dest="releases", action="store_false",
                    help="keep Debian kernels older than the newest cached of their series "
                    "(what a bisection fetched: pruned by default, fetched again when pinned)")
    kp.set_defaults(func=cmd_kernel_prune)
    kp = ksub.add_parser("list", help="cached kernels with the config flags that matter; "
                         "--available: what Debian's archive offers")
    kp.add_argument("--available", nargs="?", const="", metavar="SERIES",
                    help="list the archive's releases and flavours (apt's lists, nothing is "
                    "downloaded), of one series (6.1, 6.12) if given, marking the cached ones")
    kp.add_argument("-q", "--quiet", action="store_true")
    kp.add_argument("-v", "--verbose", action="store_true")
    kp.set_defaults(func=cmd_kernel_list)

    p = sub.add_parser("exec", help="boot a kernel, run one command over SSH, shut down; "
                       "exits with the command's status")
    _add_machine_options(p)
    p.add_argument("--timeout", type=float, default=600.0,
                   help="command timeout in seconds (default 600); exit 124 when hit")
    p.add_argument("--stdin", action="store_true", help="pass this process' stdin to the command")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("validate", help="check scenarios without booting; exit 2 on problems")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run scenarios on kernels x hierarchies")
    p.add_argument("paths", nargs="+", help="scenario files or directories")
    p.add_argument("--kernel", action="append", help="kernel spec, repeatable "
                   "(default: debian:6.1 and debian:6.12)")
    p.add_argument("--hierarchy", action="append", choices=["v1", "v2"],
                   help="repeatable (default: both)")
    p.add_argument("--jobs", type=int, help="machines in parallel (default: one per core, max 4)")
    p.add_argument("--results", help="results directory (default results/<timestamp>)")
    p.add_argument("--junit", help="also write the JUnit XML here")
    p.add_argument("-k", help="only scenarios whose name contains this or matches this glob")
    p.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices of the "
                   "matrix (whole scenarios, the same slice on every machine); join the "
                   "shards' results with `kharness merge`")
    p.add_argument("--referee", action="store_true",
                   help="also run the kernel selftest cases the scenarios name (refs:) on "
                   "each kernel and judge each scenario's v2 verdict by them: a scenario "
                   "that passes where the kernel's own test says the behaviour is broken, or "
                   "the reverse, is a disagreement (a referee/ result that fails)")
    _accel_and_output(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("selftest", help="build the kernel's own cgroup selftests and run them "
                       "on kernels: one result per subtest, as scenarios have",
                       description="Build tools/testing/selftests/cgroup from a kernel source "
                       "(statically, without -O2), boot each kernel with what the tests need "
                       "(cgroup2 with nsdelegate, an ext4 working directory, zram swap, "
                       "debugfs) and run them. Exit 1 when a subtest is not ok, 2 on errors.")
    p.add_argument("--kernel", action="append", help="kernel spec, repeatable (default: "
                   "debian:6.1 and debian:6.12)")
    p.add_argument("--test", action="append", metavar="BINARY[:SUBTEST]",
                   help="only this program (test_memcontrol) or subtest "
                   "(test_memcontrol:test_memcg_min), repeatable (default: all)")
    p.add_argument("--source", help="the source tree the tests come from: debian:6.12, "
                   "path:/a/linux/tree (default: the newest source among the kernels')")
    p.add_argument("--own-source", action="store_true",
                   help="each kernel runs the selftests of its own source")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run every program N times; a subtest with both verdicts is flaky")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds per program run (default 300)")
    p.add_argument("--results", help="results directory (default results/selftest-<time>)")
    p.add_argument("--junit", help="also write the JUnit XML here")
    p.add_argument("--jobs", type=int, help="machines in parallel (default: one per kernel)")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    p.add_argument("--boot-timeout", type=float, default=90.0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("compare", help="what changed between two runs: regressions, fixes, "
                       "skips, cells in one run only, figures that moved; exit 1 on a regression",
                       description="Compare RUN_B against RUN_A cell by cell (scenario x kernel "
                       "x hierarchy; across different kernels by scenario x hierarchy). Exit "
                       "status 1 when a cell passed (or was skipped) in A and fails or errors "
                       "in B, 0 otherwise, 2 for bad input.")
    p.add_argument("run_a", metavar="RUN_A", help="results directory: the baseline")
    p.add_argument("run_b", metavar="RUN_B", help="results directory: the candidate")
    p.add_argument("--json", metavar="FILE", help="also write the comparison as JSON here")
    p.add_argument("--threshold", type=float, default=20.0, metavar="PCT",
                   help="report a figure that moved by more than PCT%% of A's value (default 20)")
    p.add_argument("--floor", action="append", metavar="UNIT=VALUE",
                   help="never report a figure of UNIT that moved by VALUE or less, repeatable "
                   "(defaults: count=1 number=1 bytes=1M bytes/s=64K seconds=0.5 percent=5)")
    p.add_argument("--sampled", action="store_true",
                   help="also compare the sampled usage/swap peaks (left out by default: "
                   "sampling noise)")
    p.add_argument("--pair", action="append", metavar="A_KERNEL=B_KERNEL",
                   help="compare these kernels' cells (a release or spec of each run), "
                   "repeatable; default: same release, else same spec, else the only kernel "
                   "left in each run")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("merge", help="join runs (the shards of `run --shard`) into one "
                       "results directory")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="results directories")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="the merged results directory (new, or empty)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write OUT/report.html (`kharness report OUT` writes it later)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("backtrace", help="boot, run a workload in a cgroup, print the "
                       "backtraces at FUNCTION as gdb does, and how they differ between kernels")
    p.add_argument("function", help="kernel function (or FILE:LINE), e.g. try_charge_memcg")
    p.add_argument("--kernel", action="append", help="kernel spec, repeatable "
                   "(default: debian:6.1 and debian:6.12)")
    p.add_argument("--hierarchy", choices=["v1", "v2"], default="v2", help="default v2")
    p.add_argument("--set", action="append", metavar="KNOB=VALUE",
                   help="a knob of the workload's cgroup, repeatable (default memory.max=32M); "
                   "knob names as in docs/scenarios.md, e.g. memory.swap.max=0")
    p.add_argument("--swap", help="zram swap size, e.g. 256M (default: none)")
    p.add_argument("--workload", default=backtrace.DEFAULT_WORKLOAD,
                   help=f"command run in the cgroup (default {backtrace.DEFAULT_WORKLOAD!r}: "
                   "overruns the default limit)")
    p.add_argument("--count", type=int, default=1, help="backtraces per kernel (default 1)")
    p.add_argument("--comm", help="only hits in tasks of this name (default: the workload's "
                   "program; '' for any task)")
    p.add_argument("--caller", action="append", metavar="FUNC",
                   help="only hits with FUNC on the call chain, repeatable; try_charge_memcg "
                   "defaults to the page fault's charge (__mem_cgroup_charge, "
                   "do_anonymous_page); 'none' for any path")
    p.add_argument("--gdb-command", action="append", metavar="CMD",
                   help="a gdb command run at each hit, its output printed (repeatable; e.g. "
                   "lx-dmesg on a kernel built with kconfig/debug.config)")
    p.add_argument("--capture", action="append", metavar="EXPR",
                   help="an expression printed with each hit, e.g. nr_pages, repeatable")
    p.add_argument("--timeout", type=float, default=120.0, help="workload timeout (default 120)")
    p.add_argument("--json", help="write the backtraces and differences as JSON here")
    p.add_argument("--script", help="write a shell script that reproduces this with kharness")
    _one_off_options(p, "backtrace")
    p.set_defaults(func=cmd_backtrace)

    p = sub.add_parser("bisect", help="the packaged Debian release where a scenario's verdict "
                       "(or one check's) changed", description="Run the scenario on both ends "
                       "(--good, --bad), then on the midpoints of the archive's releases "
                       "between them, until the last good and the first bad release are "
                       "neighbours. Exit 0 with an answer (or no change), 1 when a step is "
                       "flaky or an end gives no verdict.")
    p.add_argument("target", metavar="SCENARIO[:CHECK]", help="a scenario file, optionally a "
                   "check of it: its 1-based number or a piece of its description")
    p.add_argument("--good", required=True, help="the release that behaves as before, e.g. "
                   "debian:6.1.0-47 (a series, debian:6.1, is its oldest release); with "
                   "--source a revision")
    p.add_argument("--bad", required=True, help="the release that does not, e.g. "
                   "debian:6.12.118+deb12 (a series is its newest); with --source a revision")
    p.add_argument("--hierarchy", choices=["v1", "v2"], default="v2", help="default v2")
    p.add_argument("--repeat", type=int, default=1, help="runs per step; different verdicts "
                   "make the step flaky (default 1)")
    p.add_argument("--metric", metavar="FIGURE", help="bisect a figure instead of the verdict: "
                   "a figure as `report` names it, or hog.swap_peak, hog.usage_peak, "
                   "hog.METRIC, STEP.FIELD")
    p.add_argument("--threshold", default="10%", help="with --metric: a value further than "
                   "this from the good end's is bad: a percentage or an amount (default 10%%)")
    p.add_argument("--results", help="directory (default results/bisect-<arguments>: a rerun "
                   "with the same arguments reuses the finished steps)")
    p.add_argument("--source", metavar="path:TREE", help="bisect the commits of a git kernel "
                   "tree between --good and --bad (revisions) with `git bisect run`, each "
                   "built with `kernel build` (its cache, incremental objects)")
    p.add_argument("--config", action="append", metavar="FRAGMENT",
                   help="with --source: the kconfig fragments to build with, repeatable")
    p.add_argument("--good-verdict", choices=["pass", "fail"], default="pass",
                   help="with --source: the scenario's verdict on the good revision (not run: "
                   "building it costs a kernel build); default pass")
    p.add_argument("--git-step", action="store_true", help=argparse.SUPPRESS)
    _accel_and_output(p)
    p.set_defaults(func=cmd_bisect)

    p = sub.add_parser("reproduce", help="reproduce a pasted trace (gdb bt, dmesg Call Trace, "
                       "OOM report, ftrace, perf script) on each kernel and compare the chains",
                       description="Parse TRACE_FILE, choose the breakpoint (the innermost "
                       "memcg function each kernel has), the caller filter and the workload "
                       "from the trace, run the reproduction on each kernel and print the "
                       "pasted chain next to each reproduced one. Exit 0 when the chain "
                       "reproduced on every kernel, 1 otherwise, 2 when the file holds no "
                       "trace or no frame of it exists in the kernels.")
    p.add_argument("trace", metavar="TRACE_FILE", help="the pasted trace")
    p.add_argument("--kernel", action="append", help="kernel spec, repeatable "
                   f"(default: {', '.join(kernels.DEFAULT_KERNELS)})")
    p.add_argument("--hierarchy", choices=["v1", "v2"],
                   help="default: the OOM report's (memory+swap lines: v1), else v2")
    p.add_argument("--workload", choices=list(reproduce_recipes()),
                   help="the workload recipe (default: chosen from the trace's entry path)")
    p.add_argument("--script", help="write a shell script that reruns the reproduction")
    _one_off_options(p, "reproduce")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="one run as a matrix (scenarios x kernel x hierarchy) "
                       "with what differs between v1 and v2 and between kernels",
                       description="Render RUN_DIR's results.jsonl and run.json: a matrix of "
                       "outcomes and observed figures, the scenarios that differ between "
                       "hierarchies or kernels with the values behind it, usage plots with the "
                       "limits, the environment (config flags, build, accelerator, QEMU).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `kharness run` results directory")
    p.add_argument("--format", choices=["html", "md", "json"], default="html",
                   help="html (one self-contained file, default), md or json")
    p.add_argument("--out", help="output file (default RUN_DIR/report.<format>, so the console "
                   "log links work; - for stdout)")
    p.add_argument("--tolerance", type=float, default=10.0, metavar="PERCENT",
                   help="figures further apart than this differ (default 10)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("shell", help="boot a kernel and open an interactive shell over SSH")
    _add_machine_options(p)
    p.set_defaults(func=cmd_shell)
    return parser


def main(argv: list[str] | None = None) -> int:
    install_signal_handlers()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "command", None) and args.command[0] == "--":
            args.command = args.command[1:]
        return args.func(args)
    except UsageError as exc:
        print(f"kharness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except kernels.KernelSpecError as exc:
        print(f"kharness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BootError as exc:
        print(f"kharness: {exc}", file=sys.stderr)
        return EXIT_BOOT
    except OutputError as exc:  # a full disk: one line, what was written is intact
        print(f"kharness: {exc}; stopped", file=sys.stderr)
        return EXIT_USAGE
    except (hostcmd.HostCommandError, images.ImageError) as exc:
        print(f"kharness: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"kharness: interrupted ({signal.Signals(signum).name}); machines stopped",
              file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())

