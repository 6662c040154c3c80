"""gdb capture end to end: `kharness backtrace` and the backtrace scenarios on real Debian
kernels (debug symbols fetched into the cache on first use: ~1 GB download per kernel)."""

from __future__ import annotations

import json
import os

import pytest
from test_run_integration import kharness, lines

from harness.channels.gdb import gdb_pids

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

def traces(stdout: str) -> dict[str, str]:
    """`== FUNCTION on RELEASE ...` header -> the gdb text under it."""
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("== "):
            current = line
            out[current] = []
        elif line.startswith("call chain differences"):
            current = None
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def test_backtrace_try_charge_memcg_on_61_is_the_page_fault_charge_in_memhog(tmp_path):
    before = gdb_pids()
    p = kharness("backtrace", "try_charge_memcg", "--kernel", "debian:6.1", "--set",
                 "memory.max=32M", "--workload", "memhog 64", "--json", str(tmp_path / "bt.json"),
                 "--script", str(tmp_path / "again.sh"), "--results", str(tmp_path / "r"), "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    (head, text), = traces(p.stdout).items()
    assert head.startswith("== try_charge_memcg on 6.1.") and " in memhog[" in head
    first = text.splitlines()[0]
    assert first.startswith("#0  try_charge_memcg (") and "at mm/memcontrol.c:" in first
    assert "do_anonymous_page" in text and "handle_mm_fault" in text
    doc = json.loads((tmp_path / "bt.json").read_text())
    frames = doc["kernels"][0]["backtraces"][0]["frames"]
    assert frames[0]["function"] == "try_charge_memcg" and frames[0]["file"] == "mm/memcontrol.c"
    assert {"function", "args", "file", "line", "inlined"} <= set(frames[0])
    script = (tmp_path / "again.sh").read_text()
    assert "backtrace try_charge_memcg --kernel debian:6.1" in script
    assert (tmp_path / "r" / "scenario" / "backtrace.yaml").is_file()
    assert not (gdb_pids() - before), "gdb left running"


def test_backtrace_on_two_kernels_prints_both_and_the_differences():
    p = kharness("backtrace", "try_charge_memcg", "--kernel", "debian:6.1", "--kernel",
                 "debian:6.12", "--set", "memory.max=32M", "--workload", "memhog 64", "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    heads = list(traces(p.stdout))
    assert [h.split()[3][:4] for h in heads] == ["6.1.", "6.12"]
    diff = p.stdout[p.stdout.index("call chain differences"):]
    # measured: 6.12's fault path adds folio_prealloc/alloc_anon_folio/do_pte_missing and
    # inlines charge_memcg
    assert "+ folio_prealloc" in diff and "+ do_pte_missing" in diff
    assert "~ charge_memcg" in diff


def test_backtrace_oom_on_612_comes_from_try_charge_memcg():
    p = kharness("backtrace", "mem_cgroup_out_of_memory", "--kernel", "debian:6.12",
                 "--set", "memory.max=32M", "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    (_head, text), = traces(p.stdout).items()
    assert text.startswith("#0  mem_cgroup_out_of_memory (")
    assert "try_charge_memcg" in text and "handle_mm_fault" in text


def test_backtrace_of_a_function_the_kernel_lacks_says_so_and_exits_1():
    p = kharness("backtrace", "mem_cgroup_move_task", "--kernel", "debian:6.12", "-q")
    assert p.returncode == 1
    assert "mem_cgroup_move_task does not exist in 6.12" in p.stdout


def test_the_backtrace_scenarios_pass_on_both_kernels_absent_functions_skip(tmp_path):
    out = tmp_path / "r"
    kharness("run", "scenarios/backtraces/", "--results", str(out), timeout=1800)
    results = lines(out)
    bad = [f"{r['scenario']} {r['kernel']} {r['hierarchy']}: {r['status']} {r['reason']} "
           f"{[c for c in r['checks'] if not c['passed'] and not c['skipped_reason']]}"
           for r in results if r["status"] not in ("pass", "skip")]
    assert not bad, "\n".join(bad)
    by = {(r["scenario"], r["kernel"][:4], r["hierarchy"]): r for r in results}
    # every scenario captured on 6.1 and 6.12 (v2)
    for name in ("charge-fault", "reclaim", "oom", "swapout", "swapin", "kmem-mkdir",
                 "uncharge", "move-task"):
        for k in ("6.1.", "6.12"):
            r = by[(f"backtraces/{name}", k, "v2")]
            assert r["status"] == "pass" and r["backtraces"], (name, k, r["reason"])
    # absent functions skip with the reason
    skipped = {c["skipped_reason"] for c in by[("backtraces/uncharge", "6.12", "v2")]["checks"]
               if c["skipped_reason"]}
    assert any("memcg_check_events does not exist in 6.12" in s for s in skipped), skipped
    v1_612 = by[("backtraces/move-task", "6.12", "v1")]
    assert v1_612["status"] == "skip" and "CONFIG_MEMCG_V1" in v1_612["reason"]
    moved = by[("backtraces/move-task", "6.1.", "v1")]
    assert moved["backtraces"][0]["frames"][0]["function"] == "mem_cgroup_move_task"


def test_a_wrong_frame_expectation_fails_and_shows_the_trace(tmp_path):
    out = tmp_path / "r"
    p = kharness("run", "tests/scenarios/runner/gdb-wrong-frame.yaml", "--kernel", "debian:6.1",
                 "--hierarchy", "v2",
                 "--results", str(out), "--junit", str(tmp_path / "j.xml"))
    assert p.returncode == 1, p.stdout + p.stderr
    (r,) = lines(out)
    assert r["status"] == "fail"
    failed = [c for c in r["checks"] if not c["passed"] and not c["skipped_reason"]]
    assert len(failed) == 1 and "mem_cgroup_swapin_charge_folio" in failed[0]["observed"]
    # the captured trace is in the failure, as gdb prints it
    assert "#0  try_charge_memcg (" in failed[0]["observed"]
    assert "do_anonymous_page" in failed[0]["observed"]
    assert "#0  try_charge_memcg (" in (tmp_path / "j.xml").read_text()
