"""`kharness run` and `kharness validate` end to end: real QEMU, real kernels.

Like test_integration.py these fail (not skip) when the set-up is missing, unless
KHARNESS_SKIP_INTEGRATION=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "scenarios" / "runner"
KHARNESS = [sys.executable, "-m", "harness.cli"]


def kharness(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KHARNESS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, cwd=REPO)


def lines(results: Path) -> list[dict]:
    return [json.loads(x) for x in (results / "results.jsonl").read_text().splitlines()]


def test_oom_scenario_passes_and_v1_on_612_skips_naming_the_config(tmp_path):
    out = tmp_path / "r"
    proc = kharness("run", str(HERE / "oom.yaml"), "--kernel", "debian:6.1", "--kernel",
                    "debian:6.12", "--results", str(out), "--junit", str(tmp_path / "j.xml"))
    assert proc.returncode == 0, proc.stderr
    got = {(r["kernel"][:4], r["hierarchy"]): r for r in lines(out)}
    assert len(got) == 4
    assert got[("6.1.", "v1")]["status"] == "pass"
    assert got[("6.1.", "v2")]["status"] == "pass"
    assert got[("6.12", "v2")]["status"] == "pass"
    skip = got[("6.12", "v1")]
    assert skip["status"] == "skip"
    assert "CONFIG_MEMCG_V1 is not set in 6.12" in skip["reason"]
    run = json.loads((out / "run.json").read_text())
    assert run["accel"] and run["qemu"].startswith("QEMU emulator")
    assert all(k["config_sha256"] for k in run["kernels"])
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert len(root.findall(".//testcase")) == 4
    assert "CONFIG_MEMCG_V1" in root.find(".//skipped").get("message")


def test_a_wrong_expectation_fails_with_expected_vs_observed(tmp_path):
    text = (HERE / "oom.yaml").read_text().replace("value: SIGKILL", "value: SIGTERM")
    wrong = tmp_path / "scenarios" / "oom-wrong.yaml"
    wrong.parent.mkdir()
    wrong.write_text(text)
    out = tmp_path / "r"
    proc = kharness("run", str(wrong.parent), "--kernel", "debian:6.1", "--hierarchy", "v2",
                    "--results", str(out), "--junit", str(tmp_path / "j.xml"))
    assert proc.returncode == 1, proc.stderr
    (result,) = lines(out)
    assert result["status"] == "fail"
    assert result["kernel"].startswith("6.1.0-") and result["hierarchy"] == "v2"
    (bad,) = [c for c in result["checks"] if not c["passed"]]
    assert "SIGTERM" in bad["expected"] and "SIGKILL" in bad["observed"]
    failure = ET.parse(tmp_path / "j.xml").getroot().find(".//failure")
    message = failure.get("message")
    assert "SIGTERM" in message and "SIGKILL" in message
    assert result["kernel"] in message and "v2" in message


def test_validate_lists_every_problem_and_boots_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "description: three mistakes\n"
        "cgroups:\n  g:\n    memory.maxx: 32M\n"
        "steps:\n  - name: s\n    run: nosuchhog 64\n    cgroup: g\n"
        "expect:\n  - step: s\n    field: exit_status\n    op: '=<'\n    value: 0\n"
    )
    started = time.monotonic()
    for command in ("validate", "run"):
        proc = kharness(command, str(bad), timeout=60)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr
        assert "memory.maxx" in err and "nosuchhog" in err and "=<" in err, err
        assert str(bad) in err
    assert time.monotonic() - started < 30  # nothing booted


def test_a_panicking_step_is_an_error_and_the_run_goes_on(tmp_path):
    out = tmp_path / "r"
    scenarios = tmp_path / "s"
    scenarios.mkdir()
    for name in ("panic.yaml", "zz-after.yaml"):
        shutil.copy(HERE / name, scenarios / name)
    proc = kharness("run", str(scenarios), "--kernel", "debian:6.12", "--hierarchy", "v2",
                    "--jobs", "1", "--results", str(out))
    assert proc.returncode == 2, proc.stderr  # an error in the run
    got = {r["scenario"]: r for r in lines(out)}
    assert got["panic"]["status"] == "error"
    assert got["panic"]["failure_kind"] == "panic"
    assert "sysrq triggered crash" in got["panic"]["console_excerpt"]
    assert got["zz-after"]["status"] == "pass"  # on a fresh machine after the panic


def test_sigint_stops_every_machine_and_keeps_finished_results(tmp_path):
    from test_integration import qemu_pids

    out = tmp_path / "r"
    proc = subprocess.Popen(
        [*KHARNESS, "run", "scenarios/", "--kernel", "debian:6.1", "--hierarchy", "v2",
         "--jobs", "2", "--results", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        cwd=REPO)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        finished = 0
        for line in proc.stderr:  # wait until a few scenarios have run on a machine
            finished += " PASS " in line or " FAIL " in line
            if finished >= 3 or time.monotonic() > deadline:
                break
        mine = qemu_pids(parent=proc.pid)
        assert mine, "no machine running mid-run"
        proc.send_signal(2)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    deadline = time.monotonic() + 10
    while mine & qemu_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (mine & qemu_pids()), "qemu left running after SIGINT"
    kept = [r for r in lines(out) if r["status"] in ("pass", "fail")]
    assert len(kept) >= 3  # what finished before the interrupt is kept


def test_the_catalogue_passes_or_skips_on_both_kernels_and_hierarchies(tmp_path):
    """The acceptance run of the scenario issue: every scenario passes or skips with a reason."""
    out = tmp_path / "r"
    proc = kharness("run", "scenarios/", "--kernel", "debian:6.1", "--kernel", "debian:6.12",
                    "--hierarchy", "v1", "--hierarchy", "v2", "--results", str(out),
                    "--junit", str(tmp_path / "junit.xml"), timeout=1800)
    results = lines(out)
    bad = [f"{r['scenario']} {r['kernel']} {r['hierarchy']}: {r['status']} {r['reason']} "
           f"{[c for c in r['checks'] if not c['passed'] and not c['skipped_reason']]}"
           for r in results if r["status"] not in ("pass", "skip")]
    assert not bad, "\n".join(bad)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(r["reason"] for r in results if r["status"] == "skip")
    v1_memory_612 = [r for r in results if r["kernel"].startswith("6.12")
                     and r["hierarchy"] == "v1" and r["scenario"].startswith("memory/")]
    assert v1_memory_612 and all(r["status"] == "skip" for r in v1_memory_612)
    assert any("CONFIG_MEMCG_V1" in r["reason"] for r in v1_memory_612)
    names = {r["scenario"] for r in results}
    assert len(names) >= 24
