"""`kharness reproduce` end to end on Debian's 6.1 and 6.12: pasted traces (the reference
traces of a 6.2-era kernel, and an OOM report from a kharness console) reproduced for real,
the frames each kernel cannot match named, the scenario kept passing `kharness run`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from test_run_integration import REPO, kharness, lines

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

TRACES = Path(__file__).parent / "traces"
BOTH = ("--kernel", "debian:6.1", "--kernel", "debian:6.12")


def reproduce(tmp_path: Path, trace: Path, *extra: str):
    out = tmp_path / "r"
    p = kharness("reproduce", str(trace), *BOTH, "--results", str(out), "-q", *extra)
    doc = json.loads((out / "reproduce.json").read_text()) if (out / "reproduce.json").exists() \
        else None
    return p, doc, out


def by_kernel(doc: dict) -> dict[str, dict]:
    return {k["kernel"][:4]: k for k in doc["kernels"]}


def frames(kernel: dict, status: str) -> dict[str, str]:
    return {f["pasted"]: f["why"] for f in kernel["frames"] if f["status"] == status}


def test_the_kmem_charge_trace_reproduces_on_both_and_the_kept_scenario_runs(tmp_path):
    p, doc, out = reproduce(tmp_path, TRACES / "ref-2-kmem-mkdir.txt",
                            "--script", str(tmp_path / "again.sh"))
    assert p.returncode == 0, p.stdout + p.stderr
    k = by_kernel(doc)
    assert k["6.1."]["score"] == 1.0 and k["6.12"]["score"] == 1.0
    assert k["6.1."]["breakpoint"] == k["6.12"]["breakpoint"] == "try_charge_memcg"
    # 6.12 charges slab objects after the allocation: the pre-alloc hook frames cannot match
    gone = frames(k["6.12"], "absent")
    assert "removed in 6.9" in gone["memcg_slab_pre_alloc_hook"]
    assert "not on this path" in gone["slab_pre_alloc_hook"]
    renamed = {f["pasted"]: f["reproduced"] for f in k["6.12"]["frames"]
               if f["status"] == "renamed"}
    assert renamed["kmem_cache_alloc_lru"] == "kmem_cache_alloc_lru_noprof"
    assert "= try_charge_memcg" in p.stdout and "x memcg_slab_pre_alloc_hook" in p.stdout
    kept = out / "scenario" / "reproduce.yaml"
    assert kharness("validate", str(kept)).returncode == 0
    again = kharness("run", str(kept), *BOTH, "--hierarchy", "v2", "--results",
                     str(tmp_path / "again"), "-q")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {r["status"] for r in lines(tmp_path / "again")} == {"pass"}
    script = (tmp_path / "again.sh").read_text()
    assert "KH_SCENARIO" in script and "--kernel debian:6.12." in script  # pinned
    assert script.rstrip().endswith("--hierarchy v2 \"$@\"")


def test_the_swap_out_trace_reproduces_on_both_with_the_classic_lru(tmp_path):
    p, doc, _ = reproduce(tmp_path, TRACES / "ref-9-swapout.txt")
    assert p.returncode == 0, p.stdout + p.stderr
    k = by_kernel(doc)
    assert k["6.1."]["breakpoint"] == k["6.12"]["breakpoint"] == "mem_cgroup_swapout"
    assert all(x["score"] == 1.0 for x in k.values())
    assert any("multi-gen LRU is turned off" in n for n in doc["workload"]["notes"])
    # charge_memcg is inlined in 6.12: matched, marked as such
    assert "charge_memcg" in frames(k["6.12"], "inlined")


def test_the_swap_in_trace_reproduces_through_the_swap_cache_on_a_disk(tmp_path):
    p, doc, _ = reproduce(tmp_path, TRACES / "ref-7-swapin.txt")
    assert p.returncode == 0, p.stdout + p.stderr
    assert all(x["score"] == 1.0 for x in doc["kernels"])
    assert any("swap on a partition of the virtio disk" in n for n in doc["workload"]["notes"])


def test_the_oom_trace_reproduces_in_the_page_cache_fault_path(tmp_path):
    p, doc, _ = reproduce(tmp_path, TRACES / "ref-6-oom.txt")
    assert p.returncode == 0, p.stdout + p.stderr
    assert doc["workload"]["recipe"] == "file-fault"
    k = by_kernel(doc)
    assert k["6.1."]["breakpoint"] == k["6.12"]["breakpoint"] == "mem_cgroup_out_of_memory"
    assert all(x["score"] == 1.0 for x in k.values())


def test_the_numa_migration_trace_reproduces_on_a_two_node_guest(tmp_path):
    p, doc, _ = reproduce(tmp_path, TRACES / "ref-3-migrate.txt")
    assert p.returncode == 0, p.stdout + p.stderr
    k = by_kernel(doc)
    assert all(x["score"] == 1.0 for x in k.values())
    assert any("two NUMA nodes" in n for n in doc["workload"]["notes"])
    renamed = {f["pasted"]: f["reproduced"] for f in k["6.12"]["frames"]
               if f["status"] == "renamed"}
    assert renamed["migrate_misplaced_page"] == "migrate_misplaced_folio"


def test_an_oom_report_from_a_kharness_console_reproduces_with_its_limit(tmp_path):
    run = kharness("run", str(REPO / "scenarios/memory/oom-kill.yaml"), "--kernel", "debian:6.1",
                   "--hierarchy", "v2", "--results", str(tmp_path / "oom"), "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    console = next((tmp_path / "oom" / "machines").glob("*/console.log")).read_text()
    start = console.index("invoked oom-killer")
    start = console.rindex("\n", 0, start) + 1
    end = console.index("Killed process", start)
    report = console[start:console.index("\n", end)]
    assert re.search(r"memory: usage \d+kB, limit \d+kB", report), report
    pasted = tmp_path / "console-oom.txt"
    pasted.write_text(report + "\n")
    limit_kb = int(re.search(r"memory: usage \d+kB, limit (\d+)kB", report).group(1))
    p, doc, out = reproduce(tmp_path, pasted)
    assert p.returncode == 0, p.stdout + p.stderr
    assert doc["trace"]["format"] == "oom"
    assert doc["workload"]["memory_max"] == limit_kb * 1024
    kept = (out / "scenario" / "reproduce.yaml").read_text()
    assert f"memory.max: {limit_kb // 1024}M" in kept
    k = by_kernel(doc)
    assert [f["pasted"] for f in k["6.1."]["frames"] if f["status"] == "inside"][:2] == [
        "dump_stack_lvl", "dump_header"]


def test_no_trace_and_a_trace_of_unknown_functions_exit_2(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("We saw the machine slow down after lunch; memory.max was 1G.\n")
    p = kharness("reproduce", str(notes), *BOTH)
    assert p.returncode == 2
    for name in ("gdb", "dmesg", "OOM", "ftrace", "perf"):
        assert name in p.stderr
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("#0  kh_no_such_charge (x=1) at mm/nowhere.c:1\n"
                       "#1  0xffffffff81000000 in kh_no_such_caller () at mm/nowhere.c:2\n")
    p = kharness("reproduce", str(unknown), *BOTH)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "kh_no_such_charge" in p.stderr and "nothing to break at" in p.stderr
