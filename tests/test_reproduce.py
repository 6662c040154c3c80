"""kharness reproduce without a machine: resolving pasted functions in a kernel, the plan
(breakpoint, callers, workload), the scenario it makes, and the frame-by-frame comparison.
The real-kernel runs are in tests/test_reproduce_integration.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import reproduce, scenario, traces
from harness.frames import Backtrace, Frame, parse_gdb_backtrace
from harness.kernels.functions import ABSENT, INLINED, SYMBOL, FunctionInfo
from harness.units import format_size

TRACES = Path(__file__).parent / "traces"


def load(name: str) -> traces.PastedTrace:
    path = TRACES / name
    return traces.parse_trace(path.read_text(), name=str(path))


def infos_for(trace: traces.PastedTrace, absent=(), inlined=(), extra=(),
              files=None) -> dict[str, FunctionInfo]:
    """Every looked-up name out of line, except the `absent` and `inlined` ones."""
    out = {}
    for name in reproduce.lookup_names(trace) | set(extra):
        state = ABSENT if name in absent else INLINED if name in inlined else SYMBOL
        out[name] = FunctionInfo(name, state, (files or {}).get(name))
    return out


# --- resolving ------------------------------------------------------------------------------

def test_resolve_present_inlined_renamed_and_absent():
    infos = {"try_charge_memcg": FunctionInfo("try_charge_memcg", SYMBOL),
             "charge_memcg": FunctionInfo("charge_memcg", INLINED),
             "mem_cgroup_uncharge_list": FunctionInfo("mem_cgroup_uncharge_list", ABSENT),
             "mem_cgroup_uncharge_folios": FunctionInfo("mem_cgroup_uncharge_folios", SYMBOL),
             "memcg_check_events": FunctionInfo("memcg_check_events", ABSENT),
             "memcg1_check_events": FunctionInfo("memcg1_check_events", ABSENT),
             "call_write_iter": FunctionInfo("call_write_iter", ABSENT),
             "nowhere": FunctionInfo("nowhere", ABSENT)}
    k = "6.12.118+deb12-amd64"
    r = reproduce.resolve("try_charge_memcg", infos, {}, k)
    assert (r.name, r.state, r.why, r.renamed) == ("try_charge_memcg", SYMBOL, None, False)
    r = reproduce.resolve("charge_memcg", infos, {}, k)
    assert r.name == "charge_memcg" and r.state == INLINED and "inlined" in r.why
    r = reproduce.resolve("mem_cgroup_uncharge_list", infos, {}, k)
    assert r.renamed and r.name == "mem_cgroup_uncharge_folios"
    assert "renamed in 6.8" in r.why
    r = reproduce.resolve("memcg_check_events", infos, {"CONFIG_MEMCG": "y"}, k)
    assert r.name is None and "CONFIG_MEMCG_V1" in r.why and "not set" in r.why
    assert "memcg1_check_events" in r.why
    r = reproduce.resolve("call_write_iter", infos, {}, k)
    assert r.name is None and "removed after 6.1" in r.why
    r = reproduce.resolve("nowhere", infos, {}, k)
    assert r.name is None and "not in its symbols" in r.why


def test_a_newer_name_resolves_to_the_old_one_on_an_older_kernel():
    infos = {"mem_cgroup_uncharge_folios": FunctionInfo("mem_cgroup_uncharge_folios", ABSENT),
             "mem_cgroup_uncharge_list": FunctionInfo("mem_cgroup_uncharge_list", SYMBOL)}
    r = reproduce.resolve("mem_cgroup_uncharge_folios", infos, {}, "6.1.0-57-amd64")
    assert r.renamed and r.name == "mem_cgroup_uncharge_list"


# --- the workload from the entry path --------------------------------------------------------

@pytest.mark.parametrize("name, recipe, swap, pressure, oom", [
    ("ref-1-move-task.txt", "move", False, False, False),
    ("ref-2-kmem-mkdir.txt", "mkdir", False, False, False),
    ("ref-3-migrate.txt", "migrate", False, False, False),
    ("ref-4-low-protection.txt", "anon", False, True, False),
    ("ref-5-check-events.txt", "anon", True, True, False),
    ("ref-6-oom.txt", "file-fault", False, True, True),
    ("ref-7-swapin.txt", "swapin", True, False, False),
    ("ref-8-swap-charge.txt", "file-fault", True, True, False),
    ("ref-9-swapout.txt", "anon", True, True, False),
])
def test_the_workload_follows_the_entry_path(name, recipe, swap, pressure, oom):
    w = reproduce.plan_workload(load(name))
    assert (w.recipe.name, w.swap, w.pressure, w.oom) == (recipe, swap, pressure, oom)
    if swap:
        assert w.machine["swap"] != "none" or "disk" in w.machine
    else:
        assert w.machine["swap"] == "none"
    assert w.hierarchy == "v2"


def test_a_swap_in_through_the_swap_cache_swaps_to_the_disk_with_cluster_readahead():
    w = reproduce.plan_workload(load("ref-7-swapin.txt"))
    assert w.machine["swap"] == "none" and "disk" in w.machine
    assert w.steps[0]["name"] == "swapon" and "vma_ra_enabled" in w.steps[0]["run"]
    assert any("zram" in n for n in w.notes)


def test_a_classic_lru_reclaim_turns_the_multi_gen_lru_off():
    w = reproduce.plan_workload(load("ref-9-swapout.txt"))
    assert w.steps[0]["name"] == "classic_lru" and "lru_gen/enabled" in w.steps[0]["run"]
    assert not any(s.get("name") == "classic_lru"
                   for s in reproduce.plan_workload(load("ref-4-low-protection.txt")).steps)


def test_a_frame_the_call_no_longer_passes_is_named_not_missing():
    t = load("ref-2-kmem-mkdir.txt")
    infos = infos_for(t)
    r = reproduce.resolve("slab_pre_alloc_hook", infos, {}, "6.12")
    assert r.name is None and "not on this path" in r.why and "post_alloc" in r.why
    del infos["__memcg_slab_post_alloc_hook"]
    assert reproduce.resolve("slab_pre_alloc_hook", infos, {}, "6.1").name == "slab_pre_alloc_hook"


def test_the_file_fault_oom_maps_a_file_mlocked_without_readahead():
    w = reproduce.plan_workload(load("ref-6-oom.txt"))
    run = next(s["run"] for s in w.steps if s.get("name") == "workload")
    assert run.startswith("memhog -m /mnt/kh-repro/f -R -L ")
    assert "disk" in w.machine and any("mlocked" in n for n in w.notes)


def test_an_oom_report_gives_the_limit_and_a_v1_report_the_hierarchy():
    v2 = reproduce.plan_workload(load("oom-v2.txt"))
    report = load("oom-v2.txt").oom
    assert v2.limit == report.memory_limit
    assert v2.cgroups[reproduce.CGROUP]["memory.max"] == format_size(report.memory_limit)
    assert v2.hierarchy == "v2" and any("the limit the OOM report gives" in n for n in v2.notes)
    v1 = reproduce.plan_workload(load("oom-v1.txt"))
    assert v1.hierarchy == "v1" and v1.recipe.name == "swapin"  # an OOM in a swap-in
    assert v1.cgroups[reproduce.CGROUP]["memory.swap.max"] == "32M"  # memsw 96M - memory 64M
    assert reproduce.plan_workload(load("oom-v1.txt"), hierarchy="v2").hierarchy == "v2"


def test_a_huge_reported_limit_is_scaled_down_and_said_so():
    text = (TRACES / "oom-v2.txt").read_text()
    report = load("oom-v2.txt").oom
    kb = report.memory_limit // 1024
    huge = text.replace(f"limit {kb}kB", "limit 8388608kB")
    w = reproduce.plan_workload(traces.parse_trace(huge))
    assert w.limit == reproduce.MAX_LIMIT and any("scaled down" in n for n in w.notes)


# --- the breakpoint and the callers -----------------------------------------------------------

def test_the_breakpoint_is_the_innermost_memcg_function_the_kernel_has():
    t = load("ref-5-check-events.txt")
    w = reproduce.plan_workload(t)
    on61 = infos_for(t, absent={"memcg1_check_events", "mem_cgroup_uncharge_folios",
                                "__mem_cgroup_uncharge_folios"})
    p = reproduce.plan_kernel(t, "6.1.0-57-amd64", on61, {}, [on61], w.recipe)
    assert p.breakpoint == "memcg_check_events" and p.note is None
    assert p.callers == ("uncharge_batch", "shrink_folio_list", "do_anonymous_page")
    assert p.inside == []
    on612 = infos_for(t, absent={"memcg_check_events", "memcg1_check_events",
                                 "mem_cgroup_uncharge_list", "__mem_cgroup_uncharge_list"})
    p = reproduce.plan_kernel(t, "6.12.118+deb12-amd64", on612, {"CONFIG_MEMCG": "y"},
                              [on61, on612], w.recipe)
    assert p.breakpoint == "uncharge_batch"
    assert "nearest frame" in p.note and "CONFIG_MEMCG_V1" in p.note
    assert [r.pasted for r in p.inside] == ["memcg_check_events"]
    assert p.expected[:2] == ["uncharge_batch", "__mem_cgroup_uncharge_folios"]


def test_an_inlined_innermost_function_moves_the_breakpoint_outwards():
    t = load("ref-4-low-protection.txt")
    infos = infos_for(t, inlined={"mem_cgroup_calculate_protection", "shrink_node_memcgs"})
    p = reproduce.plan_kernel(t, "k", infos, {}, [infos], reproduce.plan_workload(t).recipe)
    assert p.breakpoint == "shrink_node" and "inlined" in p.note
    assert p.callers[0] == "shrink_zones"


def test_frames_inside_the_breakpoint_are_not_expected():
    text = ("Call Trace:\n <TASK>\n dump_stack_lvl+0x44/0x5c\n dump_header+0x4a/0x211\n"
            " oom_kill_process.cold+0xb/0x10\n out_of_memory+0x1ed/0x2e0\n"
            " mem_cgroup_out_of_memory+0x131/0x150\n try_charge_memcg+0x6bb/0x790\n"
            " __mem_cgroup_charge+0x46/0xc0\n do_anonymous_page+0x7c/0x3b0\n"
            " asm_exc_page_fault+0x22/0x30\n </TASK>\n")
    t = traces.parse_trace(text)
    infos = infos_for(t)
    p = reproduce.plan_kernel(t, "k", infos, {}, [infos], reproduce.plan_workload(t).recipe)
    assert p.breakpoint == "mem_cgroup_out_of_memory"
    assert [r.pasted for r in p.inside] == ["dump_stack_lvl", "dump_header", "oom_kill_process",
                                            "out_of_memory"]
    assert "asm_exc_page_fault" in p.expected


def test_two_old_functions_that_became_one_count_once():
    t = load("ref-3-migrate.txt")
    infos = infos_for(t, absent={"unmap_and_move", "__unmap_and_move"},
                      extra={"migrate_folio_move"})
    infos["migrate_folio_move"] = FunctionInfo("migrate_folio_move", SYMBOL)
    p = reproduce.plan_kernel(t, "k", infos, {}, [infos], reproduce.plan_workload(t).recipe)
    names = [r.name for r in p.chain if r.name]
    assert names.count("migrate_folio_move") == 1
    folded = next(r for r in p.chain if r.pasted == "unmap_and_move")
    assert folded.name is None and "both migrate_folio_move" in folded.why


# --- the scenario it writes -------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(p.name for p in TRACES.glob("*.txt")
                                        if p.name != "warning.txt"))
def test_every_generated_scenario_validates(name, tmp_path):
    t = load(name)
    w = reproduce.plan_workload(t)
    a = infos_for(t, absent={"memcg_check_events"})
    b = infos_for(t)
    plans = [reproduce.plan_kernel(t, "6.1.0-57-amd64", b, {}, [a, b], w.recipe),
             reproduce.plan_kernel(t, "6.12.118+deb12-amd64", a, {}, [a, b], w.recipe)]
    doc = reproduce.scenario_doc(t, w, plans, name)
    path = reproduce.write_scenario(doc, tmp_path / "reproduce.yaml", ["test"])
    scenarios, problems = scenario.load([path])
    assert problems == [] and len(scenarios) == 1
    gdb = scenarios[0].gdb
    assert gdb and all(bp.frames for bp in gdb)
    if len(gdb) > 1:  # the kernels' plans differ: one breakpoint per series
        assert {bp.when.kernel for bp in gdb} == {"==6.1", "==6.12"}


def test_the_script_embeds_the_scenario_and_runs_it(tmp_path):
    t = load("ref-4-low-protection.txt")
    w = reproduce.plan_workload(t)
    infos = infos_for(t)
    plans = [reproduce.plan_kernel(t, "k", infos, {}, [infos], w.recipe)]
    doc = reproduce.scenario_doc(t, w, plans, "x.txt")
    text = reproduce.script_text(doc, ["debian:6.1", "debian:6.12"])
    assert text.startswith("#!/bin/sh\n")
    assert ('run "$dir/reproduce.yaml" --kernel debian:6.1 --kernel debian:6.12 --hierarchy v2'
            in text)
    body = text.split("<<'KH_SCENARIO'\n", 1)[1].split("KH_SCENARIO\n", 1)[0]
    path = tmp_path / "s.yaml"
    path.write_text(body)
    assert scenario.load([path])[1] == []


# --- comparing --------------------------------------------------------------------------------

GOT = """\
#0  try_charge_memcg (memcg=0x1, gfp_mask=3264, nr_pages=1) at mm/memcontrol.c:2250
#1  0xffffffff8134b93d in charge_memcg (folio=0x2, memcg=0x1, gfp=3264) at mm/memcontrol.c:4560
#2  __mem_cgroup_charge (folio=0x2, mm=0x3, gfp=3264) at mm/memcontrol.c:4583
#3  0xffffffff812dcc56 in alloc_anon_folio (vmf=0x4) at mm/memory.c:4400
#4  do_anonymous_page (vmf=0x4) at mm/memory.c:4500
#5  0xffffffff812dd600 in handle_mm_fault (vma=0x5, address=1, flags=1, regs=0x6) at mm/memory.c:5900
#6  0xffffffff810f3ca3 in do_user_addr_fault (regs=0x6, error_code=6, address=1) at arch/x86/mm/fault.c:1400
#7  0xffffffff82000b62 in asm_exc_page_fault () at ./arch/x86/include/asm/idtentry.h:570
"""
PASTED = """\
[  1.0] Call Trace:
[  1.0]  <TASK>
[  1.0]  try_charge_memcg+0x741/0x810
[  1.0]  charge_memcg+0x2d/0xa0
[  1.0]  __mem_cgroup_charge+0x24/0x80
[  1.0]  do_anonymous_page+0x1/0x2
[  1.0]  ? kvm_sched_clock_read+0x14/0x40
[  1.0]  __handle_mm_fault+0x5e4/0x1200
[  1.0]  handle_mm_fault+0xc0/0x2b0
[  1.0]  do_user_addr_fault+0x1c3/0x660
[  1.0]  mem_cgroup_uncharge_list+0x1/0x2
[  1.0]  exc_page_fault+0x62/0x150
[  1.0]  asm_exc_page_fault+0x22/0x30
[  1.0]  </TASK>
"""


def test_the_comparison_frame_by_frame():
    t = traces.parse_trace(PASTED)
    infos = infos_for(t, absent={"exc_page_fault"}, inlined={"__handle_mm_fault"},
                      extra={"mem_cgroup_uncharge_folios"})
    infos["mem_cgroup_uncharge_list"] = FunctionInfo("mem_cgroup_uncharge_list", ABSENT)
    p = reproduce.plan_kernel(t, "k", infos, {}, [infos], reproduce.plan_workload(t).recipe)
    got = parse_gdb_backtrace(GOT)
    c = reproduce.compare(p, t, got, 0)
    rows = [(f.status, f.pasted, f.reproduced) for f in c.frames]
    assert rows == [
        ("matched", "try_charge_memcg", "try_charge_memcg"),
        ("inlined", "charge_memcg", "charge_memcg"),
        ("matched", "__mem_cgroup_charge", "__mem_cgroup_charge"),
        ("extra", None, "alloc_anon_folio"),
        ("matched", "do_anonymous_page", "do_anonymous_page"),
        ("missing", "__handle_mm_fault", None),
        ("matched", "handle_mm_fault", "handle_mm_fault"),
        ("matched", "do_user_addr_fault", "do_user_addr_fault"),
        ("missing", "mem_cgroup_uncharge_list", None),
        ("absent", "exc_page_fault", None),
        ("matched", "asm_exc_page_fault", "asm_exc_page_fault"),
    ]
    assert (c.found, c.present) == (7, 9) and not c.reproduced
    text = reproduce.format_comparison(c, p)
    assert "score 7/9 = 0.78" in text and "x exc_page_fault" in text
    assert "+ " in text and "alloc_anon_folio" in text


def test_a_full_match_is_reproduced_and_the_best_hit_is_compared():
    t = traces.parse_trace(PASTED.replace("[  1.0]  mem_cgroup_uncharge_list+0x1/0x2\n", ""))
    infos = infos_for(t, absent={"exc_page_fault"}, inlined={"__handle_mm_fault"})
    p = reproduce.plan_kernel(t, "k", infos, {}, [infos], reproduce.plan_workload(t).recipe)
    got = parse_gdb_backtrace(GOT.replace(
        "#5  0xffffffff812dd600 in handle_mm_fault",
        "#5  0xffffffff812dd601 in __handle_mm_fault (vma=0x5) at mm/memory.c:5800\n"
        "#5  0xffffffff812dd600 in handle_mm_fault").replace("#6 ", "#7 ").replace(
        "#7  0xffffffff82000b62", "#8  0xffffffff82000b62").replace("#5  0xffffffff812dd600",
                                                                   "#6  0xffffffff812dd600"))
    assert reproduce.compare(p, t, got).reproduced
    assert reproduce.compare(p, t, None).score == 0.0
    none = reproduce.compare(p, t, None)
    assert not none.reproduced and all(f.status in ("missing", "absent") for f in none.frames)


def test_final_frames_keep_what_reproduced():
    t = traces.parse_trace(PASTED)
    infos = infos_for(t)
    p = reproduce.plan_kernel(t, "k", infos, {}, [infos], reproduce.plan_workload(t).recipe)
    c = reproduce.compare(p, t, parse_gdb_backtrace(GOT))
    kept = reproduce.final_frames([c], [p])["k"]
    assert kept[0] == "try_charge_memcg" and "__handle_mm_fault" not in kept
    empty = reproduce.compare(p, t, None)
    assert reproduce.final_frames([empty], [p])["k"] == p.expected


def test_pasted_chain_drops_unreliable_frames_and_stops_at_the_entry():
    bt = Backtrace((Frame(0, "a.cold"), Frame(1, "b", unreliable=True), Frame(2, "??"),
                    Frame(3, "asm_exc_page_fault"), Frame(4, "bogus")), "dmesg")
    assert reproduce.pasted_chain(bt) == ["a", "asm_exc_page_fault"]


def test_a_numa_fault_migration_gets_two_nodes_and_the_fault_in_the_filter():
    t = load("ref-3-migrate.txt")
    w = reproduce.plan_workload(t)
    assert w.machine["numa"] == 2 and w.from_step == "move"
    assert any("taskset -p 2" in s.get("run", "") for s in w.steps)
    infos = infos_for(t)
    p = reproduce.plan_kernel(t, "k", infos, {}, [infos], w.recipe)
    assert p.breakpoint == "mem_cgroup_migrate" and p.callers[-1] == "do_huge_pmd_numa_page"
    compaction = traces.parse_trace(
        "Call Trace:\n mem_cgroup_migrate+0x1/0x2\n migrate_pages+0x1/0x2\n"
        " compact_zone+0x1/0x2\n")
    w = reproduce.plan_workload(compaction)
    assert "numa" not in w.machine and any("compact_memory" in s.get("run", "")
                                           for s in w.steps)


@pytest.mark.parametrize("frames, recipe", [
    (["uncharge_batch", "__mem_cgroup_uncharge_folios", "exit_mmap", "__mmput", "do_exit"],
     "exit"),
    (["try_charge_memcg", "__mem_cgroup_charge", "copy_process", "kernel_clone"], "fork"),
    (["try_charge_memcg", "__mem_cgroup_charge", "__filemap_add_folio", "filemap_add_folio",
      "page_cache_sync_ra", "filemap_read", "vfs_read", "ksys_read"], "file-read"),
    (["try_charge_memcg", "__mem_cgroup_charge", "__filemap_add_folio",
      "__filemap_get_folio", "ext4_da_write_begin", "generic_perform_write",
      "ext4_buffered_write_iter"], "file-write"),
])
def test_the_other_recipes_make_valid_scenarios(frames, recipe, tmp_path):
    text = "Call Trace:\n" + "".join(f" {f}+0x1/0x2\n" for f in frames)
    t = traces.parse_trace(text)
    w = reproduce.plan_workload(t)
    assert w.recipe.name == recipe
    infos = infos_for(t)
    plans = [reproduce.plan_kernel(t, "6.1.0-57-amd64", infos, {}, [infos], w.recipe)]
    path = reproduce.write_scenario(reproduce.scenario_doc(t, w, plans, "x"),
                                    tmp_path / "r.yaml")
    scenarios, problems = scenario.load([path])
    assert problems == [], problems
    assert scenarios[0].gdb[0].location == plans[0].breakpoint
