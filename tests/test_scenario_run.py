"""One scenario on one machine (harness/scenario_run.py) without QEMU: a fake machine and a fake
cgroup hierarchy at its seams; what comes out is the typed result. (tests/test_run_integration.py
runs real machines.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from harness.cgroups.hierarchy import CgroupError, Reading, Sampler, WriteResult, parse_samples
from harness.channels import CommandResult
from harness.events import EventBus
from harness.kernels import Kernel
from harness.machine import BootInfo
from harness.results import FAIL, PASS, Sample, ScenarioResult, StepOutcome, WriteOutcome
from harness.scenario import load_or_raise
from harness.scenario_run import SUBTREE, Cell, ScenarioRun

SCENARIO = """\
description: typed outcomes
requires:
  controllers: [memory]
cgroups:
  hog:
    memory.max: 32M
steps:
  - write: memory.max
    value: 16M
    cgroup: hog
  - write: memory.max
    value: "-1"
    cgroup: hog
    expect_error: EINVAL
  - name: hog
    run: memhog 64
    cgroup: hog
    timeout: 5
expect:
  - step: hog
    field: signal
    op: "=="
    value: SIGKILL
  - step: hog
    field: reached_mib
    op: "<"
    value: 40
  - metric: oom_kill
    cgroup: hog
    op: ">="
    value: 1
  - metric: sampled_peak
    cgroup: hog
    op: approx
    value: 32M
    tolerance: 5%
"""


class FakeSSH:
    def __init__(self, timed_out: bool = False) -> None:
        self.timed_out = timed_out
        self.commands: list[str] = []

    def run(self, cmd: str, timeout: float | None = 60.0, **_: object) -> CommandResult:
        self.commands.append(cmd)
        stdout, timed_out = "", False
        if cmd == "cat /proc/sys/kernel/tainted":
            stdout = "0\n"
        elif cmd == "READ-SAMPLES":
            stdout = "3.7 0 0\n3.8 20971520 0\n3.9 33554432 0\n"
        elif cmd.startswith("IN-CGROUP "):
            stdout, timed_out = "reached_mib=32\n", self.timed_out
        return CommandResult(cmd, -1 if timed_out else 0, stdout, "", 0.1, timed_out)


class FakeHierarchy:
    """The Hierarchy calls a ScenarioRun makes, answered without a guest."""

    def __init__(self, status_lost: bool = False) -> None:
        self.status_lost = status_lost  # the command's status line never came (a timeout)
        self.created: list[str] = []
        self.removed: list[str] = []

    def has_controller(self, name: str) -> tuple[bool, str]:
        return True, ""

    def knob_controllers(self, knob: str) -> set[str]:
        return {"memory"}

    def metric_controllers(self, metric: str) -> set[str]:
        return {"memory"}

    def create(self, path: str, controllers: object = ()) -> None:
        self.created.append(path)

    def cgroup_dir(self, path: str, controller: str | None = None) -> str:
        return f"/sys/fs/cgroup/{path}"

    def write_knob(self, path: str, knob: str, value: object,
                   context: object = None) -> list[WriteResult]:
        file = f"/sys/fs/cgroup/{path}/{knob}"
        if str(value) == "-1":
            return [WriteResult(file, "-1", False, "EINVAL", "Invalid argument")]
        return [WriteResult(file, str(value), True)]

    def run_in(self, path: str, command: str, controllers: object = ()) -> str:
        return f"IN-CGROUP {path}: {command}"

    def parse_status(self, stdout: str) -> tuple[str, int, str | None]:
        if self.status_lost:
            raise CgroupError("no KH-STATUS= line")
        return stdout, 137, "SIGKILL"

    def sampler(self, path: str) -> Sampler:
        return Sampler("START-SAMPLING", "STOP-SAMPLING", parse_samples, "READ-SAMPLES")

    def read_metric(self, path: str, metric: str, context: object = None) -> Reading:
        return Reading(1) if metric == "oom_kill" else Reading(None, f"no {metric} here")

    def kill(self, path: str) -> None:
        pass

    def remove(self, path: str) -> None:
        self.removed.append(path)


def _machine(ssh: FakeSSH) -> SimpleNamespace:
    return SimpleNamespace(ssh=ssh, info=BootInfo(), console=SimpleNamespace(events=[]),
                           gdb_port=None, alive=lambda: True,
                           exit_description=lambda wait=0.0: None, console_tail=lambda n: "")


def _run(tmp_path: Path, ssh: FakeSSH) -> tuple[ScenarioResult, ScenarioRun, list[str], bool]:
    """The scenario run through execute(); (result, run, event kinds, reboot)."""
    path = tmp_path / "typed.yaml"
    path.write_text(SCENARIO)
    (sc,) = load_or_raise([path])
    kernel = Kernel(spec="debian:6.1", release="6.1.0-57-amd64", vmlinux=tmp_path / "vmlinux",
                    config=None, modules_dir=None)
    result = ScenarioResult(sc.name, kernel.release, kernel.spec, "v2", PASS)
    bus = EventBus()
    events: list[str] = []
    bus.subscribe(lambda ev: events.append(ev.kind))
    run = ScenarioRun(_machine(ssh), FakeHierarchy(status_lost=ssh.timed_out),
                      Cell(sc, kernel, "v2"), result, bus,
                      tmp_path / "machines" / "m01-boot1")
    reboot = run.execute()
    return result, run, events, reboot


def test_a_scenario_fills_in_a_typed_result(tmp_path):
    ssh = FakeSSH()
    result, run, events, reboot = _run(tmp_path, ssh)
    assert result.status == PASS and not reboot and run.stepped
    assert events == ["scenario.start"]
    write, refused, hog = result.steps
    assert write == WriteOutcome("step0", "memory.max", "16M", None,
                                 f"/sys/fs/cgroup/{run.root}/hog/memory.max")
    assert isinstance(refused, WriteOutcome) and refused.errno == "EINVAL"
    assert isinstance(hog, StepOutcome) and run.outcomes["hog"] is hog
    assert (hog.name, hog.command, hog.cgroup, hog.exit_status, hog.signal) == (
        "hog", "memhog 64", "hog", 137, "SIGKILL")
    assert hog.fields == {"reached_mib": "32"} and hog.timeout == 5.0 and not hog.timed_out
    assert result.samples == {"hog": [Sample(3.7, 0, 0), Sample(3.8, 20971520, 0),
                                      Sample(3.9, 33554432, 0)]}
    assert [c.description for c in result.checks] == [
        "write '16M' to memory.max of hog", "write '-1' to memory.max of hog",
        "step hog signal == SIGKILL", "step hog reached_mib < 40",
        "metric oom_kill of hog >= 1", "metric sampled_peak of hog approx 32M ±5%"]
    assert all(c.passed for c in result.checks)
    assert result.checks[-1].observed == "33554432 (32M)"
    assert run.root.startswith(f"{SUBTREE}/") and run.h.removed == [run.root]
    assert "START-SAMPLING" in ssh.commands and "STOP-SAMPLING" in ssh.commands


def test_a_step_that_timed_out_says_so_in_its_failed_checks(tmp_path):
    result, run, _, reboot = _run(tmp_path, FakeSSH(timed_out=True))
    hog = run.outcomes["hog"]
    assert hog.timed_out and hog.exit_status == -1 and hog.signal is None
    assert result.status == FAIL and not reboot  # the guest still answered
    (signal,) = [c for c in result.failed_checks() if c.description.startswith("step hog sig")]
    assert signal.observed == "none (timed out after 5 s)"
