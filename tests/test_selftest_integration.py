"""`kharness selftest` for real (issue 10): the kernel's own cgroup selftests, built from
Debian's linux-source-6.12, on Debian's 6.1 and 6.12 in QEMU; and a stand-in source tree
(tests/selftest-tree) whose programs crash, hang and panic the guest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

ROOT = Path(__file__).resolve().parent.parent
KHARNESS = [sys.executable, "-m", "harness.cli"]


def kharness(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KHARNESS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, cwd=ROOT)


def results(run_dir: Path) -> dict[tuple[str, str], dict]:
    """(cell, kernel series) -> result."""
    out = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        out[(r["scenario"], "6.12" if r["kernel"].startswith("6.12") else "6.1")] = r
    return out


def test_a_crash_a_hang_and_a_panic_are_errors_and_the_set_goes_on(tmp_path):
    out = tmp_path / "r"
    proc = kharness("selftest", "--kernel", "debian:6.1", "--source",
                    f"path:{ROOT}/tests/selftest-tree", "--timeout", "5", "--results", str(out))
    assert proc.returncode == 2, proc.stderr  # errors
    got = {name: r for (name, _), r in results(out).items()}
    crash = got["selftest/test_crash"]
    assert (crash["status"], crash["failure_kind"]) == ("error", "crash")
    assert crash["reason"] == "test_crash crashed: killed by signal 11 after subtest 1"
    hang = got["selftest/test_hang"]
    assert (hang["status"], hang["failure_kind"]) == ("error", "hang")
    assert hang["reason"].startswith("test_hang did not finish within 5 s")
    panic = got["selftest/test_panic"]
    assert (panic["status"], panic["failure_kind"]) == ("error", "panic")
    assert "Kernel panic - not syncing: sysrq triggered crash" in panic["console_excerpt"]
    # What reported before each failure stays; the program after the panic ran on a new boot.
    for name in ("test_crash/test_before_the_crash", "test_hang/test_before_the_hang",
                 "test_panic/test_before_the_panic", "test_zz_after/test_still_running"):
        assert got[f"selftest/{name}"]["status"] == "pass", name
    skip = got["selftest/test_zz_after/test_skips_with_a_reason"]
    assert (skip["status"], skip["reason"]) == ("skip", "the reason it gives")
    assert got["selftest/test_zz_after/test_still_running"]["machine"].endswith("-boot2")
    assert got["selftest/test_hang/test_before_the_hang"]["machine"].endswith("-boot1")


# The differences between Debian's 6.1 and 6.12 that the kernel's own tests show (measured by
# hand first, ../shared/reference/kernel-facts.md): (cell, 6.1, 6.12).
KNOWN = [
    ("selftest/test_pids/test_pids_events", "fail", "pass"),
    ("selftest/test_memcontrol/test_memcg_min", "fail", "pass"),
    ("selftest/test_memcontrol/test_memcg_current_peak", "skip", "pass"),
    ("selftest/test_memcontrol/test_memcg_swap_max_peak", "skip", "pass"),
    ("selftest/test_kmem/test_percpu_basic", "pass", "fail"),
    ("selftest/test_cpuset/test_cpuset_perms_object_allow", "fail", "pass"),
    ("selftest/test_cpuset/test_cpuset_perms_subtree", "fail", "pass"),
]


def test_the_selftests_on_61_and_612_show_the_kernels_differences(tmp_path):
    out = tmp_path / "both"
    proc = kharness("selftest", "--kernel", "debian:6.1", "--kernel", "debian:6.12",
                    "--results", str(out), "--junit", str(tmp_path / "junit.xml"))
    assert proc.returncode == 1, proc.stderr  # real not-ok subtests, no errors
    got = results(out)
    for cell, on61, on612 in KNOWN:
        assert got[(cell, "6.1")]["status"] == on61, (cell, got[(cell, "6.1")])
        assert got[(cell, "6.12")]["status"] == on612, (cell, got[(cell, "6.12")])
    # The same binaries ran on both kernels (the newest source's): said in each result.
    assert "built from debian:6.12 6.12." in got[(KNOWN[0][0], "6.1")]["description"]
    assert all(r["status"] != "error" for r in got.values())
    assert (tmp_path / "junit.xml").read_text().count("<testcase") == len(got)
    # compare: one run on 6.1, one on 6.12 -> the verdicts that changed
    for series in ("6.1", "6.12"):
        (tmp_path / series).mkdir()
        lines = [line for line in (out / "results.jsonl").read_text().splitlines()
                 if json.loads(line)["kernel"].startswith(series + ".")]
        (tmp_path / series / "results.jsonl").write_text("\n".join(lines) + "\n")
    cmp = kharness("compare", str(tmp_path / "6.1"), str(tmp_path / "6.12"), timeout=60)
    assert cmp.returncode == 1, cmp.stdout + cmp.stderr  # 6.12 regressed on percpu_basic
    text = cmp.stdout
    assert "selftest/test_kmem/test_percpu_basic" in text.split("REGRESSIONS", 1)[1]
    fixes = text.split("FIXES", 1)[1]
    for cell in ("test_pids/test_pids_events", "test_memcontrol/test_memcg_min",
                 "test_cpuset/test_cpuset_perms_subtree"):
        assert f"selftest/{cell}" in fixes, cell
    # report: the selftest rows, the differing ones marked
    rep = kharness("report", str(out), "--format", "md", "--out", "-", timeout=60)
    assert rep.returncode == 0, rep.stderr
    assert "selftest/test_pids/test_pids_events" in rep.stdout


def test_repeat_runs_a_subtest_n_times(tmp_path):
    """test_freezer's ptrace subtest is racy under TCG (about 1 in 4 fails): --repeat shows
    k of N, never hides it."""
    out = tmp_path / "r"
    proc = kharness("selftest", "--kernel", "debian:6.12",
                    "--test", "test_freezer:test_cgfreezer_ptrace", "--repeat", "4",
                    "--results", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    (r,) = results(out).values()
    assert r["scenario"] == "selftest/test_freezer/test_cgfreezer_ptrace"
    assert len(r["checks"]) == 4  # one per run
    passed = sum(c["passed"] for c in r["checks"])
    if 0 < passed < 4:
        assert r["status"] == "fail" and r["reason"].startswith(f"flaky: ok in {passed} of 4")
    else:
        assert r["status"] == ("pass" if passed == 4 else "fail")
