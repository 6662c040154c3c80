"""The kernel's cgroup selftests by name: what a scenario's `refs:` may point at.

Read off tools/testing/selftests/cgroup of Linux 6.12 (Debian's linux-source-6.12 6.12.118):
each binary's `T(...)` table, in the order it runs them. Scenarios are checked against it
before anything boots, so a misspelt reference is a validation problem, not a missing result
after the run. A newer kernel's new subtests are added here (the one table).
"""

from __future__ import annotations

import re

from ..scenario_schema import did_you_mean

SOURCE = "Linux 6.12 (linux-source-6.12 6.12.118)"

CASES: dict[str, tuple[str, ...]] = {
    "test_core": (
        "test_cgcore_internal_process_constraint", "test_cgcore_top_down_constraint_enable",
        "test_cgcore_top_down_constraint_disable",
        "test_cgcore_no_internal_process_constraint_on_threads",
        "test_cgcore_parent_becomes_threaded", "test_cgcore_invalid_domain",
        "test_cgcore_populated", "test_cgcore_proc_migration", "test_cgcore_thread_migration",
        "test_cgcore_destroy", "test_cgcore_lesser_euid_open", "test_cgcore_lesser_ns_open"),
    "test_cpu": (
        "test_cpucg_subtree_control", "test_cpucg_stats", "test_cpucg_weight_overprovisioned",
        "test_cpucg_weight_underprovisioned", "test_cpucg_nested_weight_overprovisioned",
        "test_cpucg_nested_weight_underprovisioned", "test_cpucg_max", "test_cpucg_max_nested"),
    "test_cpuset": (
        "test_cpuset_perms_object_allow", "test_cpuset_perms_object_deny",
        "test_cpuset_perms_subtree"),
    "test_freezer": (
        "test_cgfreezer_simple", "test_cgfreezer_tree", "test_cgfreezer_forkbomb",
        "test_cgfreezer_mkdir", "test_cgfreezer_rmdir", "test_cgfreezer_migrate",
        "test_cgfreezer_ptrace", "test_cgfreezer_stopped", "test_cgfreezer_ptraced",
        "test_cgfreezer_vfork"),
    "test_kill": ("test_cgkill_simple", "test_cgkill_tree", "test_cgkill_forkbomb"),
    "test_kmem": (
        "test_kmem_basic", "test_kmem_memcg_deletion", "test_kmem_proc_kpagecgroup",
        "test_kmem_kernel_stacks", "test_kmem_dead_cgroups", "test_percpu_basic"),
    "test_memcontrol": (
        "test_memcg_subtree_control", "test_memcg_current_peak", "test_memcg_min",
        "test_memcg_low", "test_memcg_high", "test_memcg_high_sync", "test_memcg_max",
        "test_memcg_reclaim", "test_memcg_oom_events", "test_memcg_swap_max_peak",
        "test_memcg_sock", "test_memcg_oom_group_leaf_events",
        "test_memcg_oom_group_parent_events", "test_memcg_oom_group_score_events"),
    "test_pids": ("test_pids_max", "test_pids_events"),
    "test_zswap": (
        "test_zswap_usage", "test_swapin_nozswap", "test_zswapin",
        "test_zswap_writeback_enabled", "test_zswap_writeback_disabled", "test_no_kmem_bypass",
        "test_no_invasive_cgroup_shrink"),
}

_CASE = re.compile(r"^(test_\w+):(test_\w+)$")


def parse_case(text: str) -> tuple[str, str]:
    """`"test_memcontrol:test_memcg_min"` -> ("test_memcontrol", "test_memcg_min"); ValueError
    saying what is wrong (the shape, an unknown binary, an unknown subtest)."""
    m = _CASE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not BINARY:SUBTEST (e.g. test_memcontrol:test_memcg_min)")
    binary, subtest = m.groups()
    if binary not in CASES:
        raise ValueError(f"no cgroup selftest {binary!r}{did_you_mean(binary, CASES)}; there "
                         f"are {', '.join(CASES)}")
    if subtest not in CASES[binary]:
        raise ValueError(f"{binary} has no subtest {subtest!r} (as of {SOURCE})"
                         f"{did_you_mean(subtest, CASES[binary])}")
    return binary, subtest
