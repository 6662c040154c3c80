"""The runner's decisions at its seams, without QEMU: what happens when a boot fails.
(tests/test_run_integration.py runs real machines.)"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from harness import runner as runner_mod
from harness.events import EventBus
from harness.kernels import Kernel
from harness.machine import BootError, BootInfo
from harness.output import OutputError
from harness.results import ResultsWriter
from harness.scenario import load_or_raise

ROOT = Path(__file__).resolve().parent.parent


class PanickingMachine:
    """A Machine whose kernel always dies while booting (its own boot retries included: the
    Machine boots again itself, tests/test_machine.py)."""

    configs: ClassVar[list] = []

    def __init__(self, config, bus) -> None:
        self.config = config
        type(self).configs.append(config)

    def start(self) -> None:
        exc = BootError("kernel panic during boot", ["qemu-system-x86_64"], None,
                        "Kernel panic - not syncing: Fatal exception", failure="panic")
        exc.retries = [(f"boot 1: kernel panic during boot: Oops: int3 at sched_clock_cpu+0x9 "
                        f"(console: {self.config.workdir}/console.boot1.log)")]
        raise exc

    def stop(self) -> None:
        pass


def test_a_boot_that_panics_again_makes_its_scenarios_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "Machine", PanickingMachine)
    monkeypatch.setattr(runner_mod.images, "initrd_for", lambda kernel, bus: tmp_path / "initrd")
    kernel = Kernel(spec="debian:6.1", release="6.1.0-57-amd64", vmlinux=tmp_path / "vmlinux",
                    config=None, modules_dir=None)
    scenarios = load_or_raise([ROOT / "scenarios/memory/oom-kill.yaml"])
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(lambda ev: seen.append(ev.kind))
    writer = ResultsWriter(tmp_path / "r")
    runner_mod.Runner(scenarios, [kernel], ["v2"], writer, bus, jobs=1).run()
    # One Machine, allowed one more boot; the runner does not boot again on top of it.
    assert [c.boot_retries for c in PanickingMachine.configs] == [1]
    results = [json.loads(line) for line in (tmp_path / "r/results.jsonl").read_text().splitlines()]
    assert [(r["status"], r["failure_kind"]) for r in results] == [("error", "panic")]
    reason = results[0]["reason"]
    assert reason.startswith("boot failed: kernel panic during boot; earlier boot 1: ")
    assert "(console: machines/" in reason and "/console.boot1.log)" in reason


class QuietMachine:
    """A Machine that boots; what runs on it is faked by the test."""

    configs: ClassVar[list] = []
    boot_retries: ClassVar[list[str]] = []  # what its own boot retries were, for every boot

    def __init__(self, config, bus) -> None:
        self.config = config
        self.ssh = None
        self.info = BootInfo(retries=list(self.boot_retries))
        type(self).configs.append(config)

    def start(self) -> None:
        pass

    def alive(self) -> bool:
        return True

    def stop(self) -> None:
        pass


def _fake_cells(monkeypatch, tmp_path, outcomes):
    """Runner._run_cell replaced: each call takes the next (failure_kind, stepped)."""
    calls = []

    def run_cell(self, vm, h, cell, job_name, boot):
        kind, stepped = outcomes[len(calls)]
        calls.append(boot)
        result = self._result(cell, "error" if kind else "pass",
                              f"kernel {kind}: Oops: int3" if kind else "", kind=kind)
        result.machine = f"{job_name}-boot{boot}"
        return result, bool(kind), stepped

    monkeypatch.setattr(runner_mod, "Machine", QuietMachine)
    monkeypatch.setattr(runner_mod, "make_hierarchy", lambda hierarchy, ssh: None)
    monkeypatch.setattr(runner_mod.images, "initrd_for", lambda kernel, bus: tmp_path / "initrd")
    monkeypatch.setattr(runner_mod.Runner, "_run_cell", run_cell)
    return calls


def _run_oom_kill(tmp_path):
    kernel = Kernel(spec="debian:6.12", release="6.12.117+deb12-amd64",
                    vmlinux=tmp_path / "vmlinux", config=None, modules_dir=None)
    scenarios = load_or_raise([ROOT / "scenarios/memory/oom-kill.yaml"])
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(lambda ev: seen.append(ev.kind))
    runner_mod.Runner(scenarios, [kernel], ["v2"], ResultsWriter(tmp_path / "r"), bus,
                      jobs=1).run()
    results = [json.loads(line) for line in (tmp_path / "r/results.jsonl").read_text().splitlines()]
    return results, seen


def test_a_kernel_that_dies_before_the_first_step_gets_one_more_boot(tmp_path, monkeypatch):
    calls = _fake_cells(monkeypatch, tmp_path, [("panic", False), (None, True)])
    results, seen = _run_oom_kill(tmp_path)
    assert calls == [1, 2] and seen.count("machine.retry") == 1
    (r,) = results
    assert r["status"] == "pass" and r["machine"].endswith("-boot2")
    assert len(r["retries"]) == 1 and "Oops: int3 before any step ran" in r["retries"][0]
    assert r["retries"][0].endswith("(console: machines/" + r["machine"].replace("boot2", "boot1")
                                    + "/console.log)")


def test_a_kernel_that_dies_during_the_steps_is_the_scenarios_error(tmp_path, monkeypatch):
    calls = _fake_cells(monkeypatch, tmp_path, [("oops", True)])
    results, seen = _run_oom_kill(tmp_path)
    assert calls == [1] and "machine.retry" not in seen
    assert [(r["status"], r["failure_kind"]) for r in results] == [("error", "oops")]


def test_only_one_retry(tmp_path, monkeypatch):
    calls = _fake_cells(monkeypatch, tmp_path, [("panic", False), ("panic", False)])
    results, seen = _run_oom_kill(tmp_path)
    assert calls == [1, 2] and seen.count("machine.retry") == 1
    assert [(r["status"], r["failure_kind"]) for r in results] == [("error", "panic")]
    assert len(results[0]["retries"]) == 1


def test_a_boot_the_machine_retried_counts_as_the_jobs_one_retry(tmp_path, monkeypatch):
    """The Machine booted twice (the first boot died): that was the job's retry, recorded in
    the first result; a kernel that then dies before the first step is not booted again."""
    monkeypatch.setattr(QuietMachine, "configs", [])
    monkeypatch.setattr(QuietMachine, "boot_retries", [
        ("boot 1: kernel panic during boot: Oops: int3 (console: "
         f"{tmp_path}/r/machines/x-boot1/console.boot1.log)")])
    calls = _fake_cells(monkeypatch, tmp_path, [("panic", False)])
    results, _ = _run_oom_kill(tmp_path)
    assert calls == [1] and [c.boot_retries for c in QuietMachine.configs] == [1]
    (r,) = results
    assert r["status"] == "error" and r["retries"] == [
        ("boot 1: kernel panic during boot: Oops: int3 (console: machines/x-boot1/"
         "console.boot1.log)")]


def test_after_a_retry_the_next_machine_boots_once(tmp_path, monkeypatch):
    monkeypatch.setattr(QuietMachine, "configs", [])
    monkeypatch.setattr(QuietMachine, "boot_retries", [])
    _fake_cells(monkeypatch, tmp_path, [("panic", False), (None, True)])
    _run_oom_kill(tmp_path)
    assert [c.boot_retries for c in QuietMachine.configs] == [1, 0]


# --- interrupts and failed writes (issue 17) -----------------------------------------------

class InterruptedBootMachine(QuietMachine):
    """Its boot is cut short the way Ctrl-C does it: the signal reaches the main thread, the
    runner stops every machine, and the boot then fails with QEMU gone."""

    def __init__(self, config, bus) -> None:
        super().__init__(config, bus)
        self.stopped = threading.Event()

    def start(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        assert self.stopped.wait(10)
        raise BootError("QEMU exited (killed by signal 15) before the guest was ready",
                        ["qemu-system-x86_64"], -15, "")

    def stop(self, soft_timeout: float = 5.0) -> None:
        self.stopped.set()


def test_a_boot_the_user_interrupted_is_no_result(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "Machine", InterruptedBootMachine)
    monkeypatch.setattr(runner_mod.images, "initrd_for", lambda kernel, bus: tmp_path / "initrd")
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    kernel = Kernel(spec="debian:6.1", release="6.1.0-57-amd64", vmlinux=tmp_path / "vmlinux",
                    config=None, modules_dir=None)
    scenarios = load_or_raise([ROOT / "scenarios/memory/oom-kill.yaml",
                               ROOT / "scenarios/memory/memsw-below-limit.yaml"])
    writer = ResultsWriter(tmp_path / "r")
    run = runner_mod.Runner(scenarios, [kernel], ["v2"], writer, EventBus(), jobs=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            run.run()
    finally:
        signal.signal(signal.SIGINT, old)
    # The v1-only scenario's skip needed no machine and is a result; the interrupted boot's
    # scenario is not (it used to be "ERROR boot failed: QEMU exited before the guest...").
    statuses = [json.loads(line)["status"] for line in writer.jsonl.read_text().splitlines()]
    assert statuses == ["skip"]
    assert run.not_run() == ["memory/oom-kill [6.1.0-57-amd64 v2]"]


def test_a_result_that_cannot_be_written_stops_the_run(tmp_path, monkeypatch):
    _fake_cells(monkeypatch, tmp_path, [(None, True), (None, True)])
    kernel = Kernel(spec="debian:6.1", release="6.1.0-57-amd64", vmlinux=tmp_path / "vmlinux",
                    config=None, modules_dir=None)
    scenarios = load_or_raise([ROOT / "scenarios/memory/oom-kill.yaml"])
    writer = ResultsWriter(tmp_path / "r")
    writer.jsonl.symlink_to("/dev/full")
    run = runner_mod.Runner(scenarios, [kernel], ["v1", "v2"], writer, EventBus(), jobs=1)
    with pytest.raises(OutputError) as info:
        run.run()
    assert info.value.code == "ENOSPC" and run.fatal is info.value
    assert writer.results == [] and len(run.not_run()) == 2
