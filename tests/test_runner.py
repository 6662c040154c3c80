"""The runner's decisions at its seams, without QEMU: what happens when a boot fails.
(tests/test_run_integration.py runs real machines.)"""

from __future__ import annotations

import json
from pathlib import Path

from harness import runner as runner_mod
from harness.events import EventBus
from harness.kernels import Kernel
from harness.machine import BootError
from harness.results import ResultsWriter
from harness.scenario import load_or_raise

ROOT = Path(__file__).resolve().parent.parent


class PanickingMachine:
    """A Machine whose kernel always dies while booting."""

    boots = 0

    def __init__(self, config, bus) -> None:
        self.config = config

    def start(self) -> None:
        type(self).boots += 1
        raise BootError("kernel panic during boot", ["qemu-system-x86_64"], None,
                        "Kernel panic - not syncing: Fatal exception", failure="panic")

    def stop(self) -> None:
        pass


def test_a_boot_that_panics_is_retried_once_then_its_scenarios_are_errors(tmp_path, monkeypatch):
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
    assert PanickingMachine.boots == 2
    assert seen.count("machine.retry") == 1
    results = [json.loads(line) for line in (tmp_path / "r/results.jsonl").read_text().splitlines()]
    assert [(r["status"], r["failure_kind"]) for r in results] == [("error", "panic")]
    assert "kernel panic during boot" in results[0]["reason"]
