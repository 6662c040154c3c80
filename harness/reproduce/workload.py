"""The workload of a reproduction, chosen by the pasted chain's entry path (RECIPES)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..traces import PastedTrace
from ..units import format_size
from .names import pasted_chain

CGROUP = "repro"
DEFAULT_LIMIT = 32 << 20
MAX_LIMIT = 1 << 30  # larger OOM-report limits are scaled down to this (said in the plan)


_MOUNT = (  # ext2 through the ext4 driver on the scenario disk: page-cache files
    "M=/lib/modules/$(uname -r)/kernel; grep -qw ext4 /proc/filesystems || for m in lib/crc16 "
    "crypto/crc32c_generic fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4; do "
    "[ -e $M/$m.ko ] && insmod $M/$m.ko; [ -e $M/$m.ko.xz ] && insmod $M/$m.ko.xz; done; "
    "mke2fs -q -b 4096 /dev/vda >/dev/null 2>&1 && mkdir -p /mnt/kh-repro && "
    "mount -t ext2 /dev/vda /mnt/kh-repro && echo mounted=1")
_DROP = "sync; echo 3 > /proc/sys/vm/drop_caches"

SWAP_FUNCTIONS = frozenset({
    "add_to_swap", "folio_alloc_swap", "__mem_cgroup_try_charge_swap",
    "mem_cgroup_try_charge_swap", "mem_cgroup_swapout", "memcg1_swapout", "swap_writepage",
    "shrink_folio_list", "shrink_page_list", "mem_cgroup_uncharge_list",
    "__mem_cgroup_uncharge_list", "mem_cgroup_uncharge_folios", "__mem_cgroup_uncharge_folios",
    "__remove_mapping", "pageout", "zram_write_page", "zswap_store",
})
PRESSURE_FUNCTIONS = frozenset({
    "try_to_free_mem_cgroup_pages", "mem_cgroup_out_of_memory", "mem_cgroup_oom",
    "do_try_to_free_pages", "shrink_node", "shrink_zones", "shrink_lruvec",
    "shrink_node_memcgs", "mem_cgroup_calculate_protection", "out_of_memory",
    "mem_cgroup_handle_over_high", "reclaim_high",
}) | SWAP_FUNCTIONS
# the swap-in through the swap cache and its readahead (not zram's synchronous swap-in)
SWAP_CACHE_FUNCTIONS = frozenset({"swapin_readahead", "swap_cluster_readahead",
                                  "swap_vma_readahead", "__read_swap_cache_async",
                                  "read_swap_cache_async"})
# reclaim through the classic active/inactive lists; the multi-gen LRU (6.1+, on in Debian's
# 6.12) goes lru_gen_shrink_lruvec -> evict_folios instead
CLASSIC_LRU_FUNCTIONS = frozenset({"shrink_inactive_list", "shrink_active_list", "shrink_list"})
# a migration from a NUMA hinting fault (NUMA balancing), not from compaction
NUMA_FAULT_FUNCTIONS = frozenset({"do_numa_page", "do_huge_pmd_numa_page",
                                  "migrate_misplaced_page", "migrate_misplaced_folio",
                                  "task_numa_fault", "numa_migrate_prep"})
OOM_FUNCTIONS = frozenset({"mem_cgroup_out_of_memory", "mem_cgroup_oom", "out_of_memory",
                           "oom_kill_process", "mem_cgroup_oom_synchronize"})


@dataclass(frozen=True)
class Recipe:
    """A workload for an entry path. `anchors`: chain functions that pick it (first recipe of
    RECIPES whose anchor is in the chain wins); the first anchor found goes into the caller
    filter."""

    name: str
    anchors: tuple[str, ...]
    what: str  # for the plan's text


RECIPES: tuple[Recipe, ...] = (
    Recipe("move", ("mem_cgroup_move_task", "memcg1_move_task", "cgroup_procs_write_finish",
                    "__cgroup_procs_write", "__cgroup1_procs_write", "cgroup_attach_task",
                    "cgroup_migrate", "mem_cgroup_can_attach"),
           "a task moved between two cgroups by a write to cgroup.procs"),
    Recipe("mkdir", ("do_mkdirat", "__x64_sys_mkdir", "__do_sys_mkdir", "vfs_mkdir",
                     "filename_create", "d_alloc"),
           "mkdir of a deep directory chain: dentries and inodes charged as kernel memory"),
    Recipe("migrate", ("mem_cgroup_migrate", "migrate_pages", "move_to_new_folio",
                       "migrate_folio", "folio_migrate_flags", "migrate_misplaced_page",
                       "migrate_misplaced_folio", "compact_zone"),
           "a holder's pages migrated (by NUMA balancing across two nodes, or by compaction)"),
    Recipe("exit", ("exit_mmap", "__mmput", "mmput", "do_exit", "do_group_exit"),
           "a holder killed: its memory uncharged as it exits"),
    Recipe("fork", ("copy_process", "kernel_clone", "dup_mm", "dup_mmap", "__do_sys_clone"),
           "forker: forks in the cgroup"),
    Recipe("swapin", ("do_swap_page", "swapin_readahead", "swap_cluster_readahead",
                      "swap_vma_readahead", "mem_cgroup_swapin_charge_folio",
                      "__read_swap_cache_async", "read_swap_cache_async"),
           "memhog -r over memory.max with swap: its swapped-out pages read back"),
    Recipe("file-fault", ("filemap_fault", "do_read_fault", "__do_fault",
                          "do_sync_mmap_readahead"),
           "memhog -m: a file of the scenario disk mapped and read, page by page"),
    Recipe("file-read", ("filemap_read", "generic_file_read_iter", "page_cache_sync_ra",
                         "ext4_file_read_iter", "ksys_read", "vfs_read"),
           "dd reading a file of the scenario disk"),
    Recipe("file-write", ("generic_perform_write", "ext4_buffered_write_iter",
                          "ext4_file_write_iter", "ext4_da_write_begin"),
           "dd writing a file of the scenario disk"),
    Recipe("anon", ("do_anonymous_page", "handle_pte_fault", "__handle_mm_fault",
                    "handle_mm_fault", "do_user_addr_fault", "exc_page_fault"),
           "memhog: anonymous memory faulted in"),
)
RECIPE_NAMES = tuple(r.name for r in RECIPES)


def choose_recipe(chain: Sequence[str], forced: str | None = None) -> Recipe:
    if forced:
        return next(r for r in RECIPES if r.name == forced)
    present = set(chain)
    for recipe in RECIPES:
        if present & set(recipe.anchors):
            return recipe
    return RECIPES[-1]


def _mib(size: int) -> int:
    return max(1, (size + (1 << 20) - 1) >> 20)


@dataclass
class Workload:
    """The kernel-independent part of the scenario: machine, cgroups, steps, task filters."""

    recipe: Recipe
    limit: int
    swap: bool
    pressure: bool
    oom: bool
    hierarchy: str
    notes: list[str] = field(default_factory=list)
    comm: str | None = None
    from_step: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    cgroups: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def swap_kind(self) -> str:
        if self.machine.get("swap", "none") != "none":
            return "zram swap"
        if any(s.get("name") == "swapon" for s in self.steps):
            return "swap on the virtio disk"
        return "no swap"


def plan_workload(trace: PastedTrace, hierarchy: str | None = None,
                  recipe: str | None = None) -> Workload:
    chain = pasted_chain(trace.backtrace)
    names = set(chain)
    chosen = choose_recipe(chain, recipe)
    oom = bool(names & OOM_FUNCTIONS) or trace.oom is not None
    swap = chosen.name == "swapin" or (bool(names & SWAP_FUNCTIONS) and not oom)
    pressure = bool(names & PRESSURE_FUNCTIONS) or oom
    notes: list[str] = []
    limit = DEFAULT_LIMIT
    if trace.oom is not None and trace.oom.memory_limit:
        limit = trace.oom.memory_limit
        notes.append(f"memory.max {format_size(limit)}: the limit the OOM report gives "
                     f"(usage {format_size(trace.oom.memory_usage or 0)})")
        if limit > MAX_LIMIT:
            notes.append(f"scaled down to {format_size(MAX_LIMIT)}: the guest has a few "
                         "hundred MiB")
            limit = MAX_LIMIT
    if hierarchy is None:
        if trace.oom is not None and trace.oom.hierarchy:
            hierarchy = trace.oom.hierarchy
            notes.append(f"hierarchy {hierarchy}: the OOM report's "
                         + ("memory+swap lines are v1's" if hierarchy == "v1"
                            else "swap line is v2's"))
        else:
            hierarchy = "v2"
    w = Workload(chosen, limit, swap, pressure, oom, hierarchy, notes)
    L = _mib(limit)
    hog = 2 * L if pressure else L + L // 2
    memory = max(512, 4 * L + 256)
    w.machine = {"memory": f"{memory}M", "swap": f"{max(256, 8 * L)}M" if swap else "none"}
    limits = {"memory.max": format_size(limit)}
    report = trace.oom
    if swap and report is not None and report.memory_limit:
        if report.memsw_limit:  # v1: memory+swap; the knob table's swap.max is memsw - memory
            limits["memory.swap.max"] = format_size(max(0, report.memsw_limit
                                                          - report.memory_limit))
        elif report.swap_limit is not None:
            limits["memory.swap.max"] = format_size(report.swap_limit)
        if "memory.swap.max" in limits:
            w.notes.append(f"memory.swap.max {limits['memory.swap.max']}: the swap the OOM "
                           "report allowed")
    w.cgroups = {CGROUP: dict(limits)}
    name = chosen.name
    if name == "move":
        w.cgroups = {"src": dict(limits), "dst": {**limits, "v1": {
            "memory.move_charge_at_immigrate": 3}}, "ctl": {}}
        w.steps = [
            {"name": "holder", "run": f"memhog -t 30 {max(1, L // 2)}", "cgroup": "src",
             "background": True, "timeout": 60},
            {"sleep": 1.5},
            {"name": "move", "run": "sh -c 'cat {cgroup:src}/cgroup.procs | tee "
                                    "{cgroup:dst}/cgroup.procs'", "cgroup": "ctl"},
            {"name": "stop", "run": "sh -c 'kill $(cat {cgroup:dst}/cgroup.procs)'",
             "cgroup": "ctl"},
            {"wait": "holder"}]
        w.comm, w.from_step = "tee", "move"
    elif name == "mkdir":
        deep = "/".join(["d"] * 400)
        w.steps = [{"name": "mkdir", "run": f"mkdir -p /tmp/kh-repro/{deep}", "cgroup": CGROUP},
                   {"name": "tidy", "run": "rm -rf /tmp/kh-repro", "cgroup": "tools"}]
        w.cgroups["tools"] = {}
        w.comm = "mkdir"
    elif name == "migrate" and names & NUMA_FAULT_FUNCTIONS:
        # a NUMA hinting fault: two nodes, a THP-backed hog faulted in on node 0's CPU, then
        # moved to node 1's CPU while it keeps reading: NUMA balancing migrates its pages
        w.machine.update(cpus=2, numa=2, memory=f"{max(1024, 8 * L)}M")
        w.cgroups["ctl"] = {}
        w.steps = [
            {"name": "numa", "cgroup": "ctl", "run": (
                "sh -c 'echo 1 > /proc/sys/kernel/numa_balancing; "
                "echo always > /sys/kernel/mm/transparent_hugepage/enabled; "
                "t=/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled; "
                "[ -w $t ] && echo always > $t; "
                "echo numa_balancing=$(cat /proc/sys/kernel/numa_balancing)'")},
            {"name": "holder", "run": f"taskset 1 memhog -s {2 * L} -r 1000000 {2 * L}",
             "cgroup": CGROUP, "background": True, "timeout": 180},
            {"sleep": 2},
            {"name": "move", "cgroup": "ctl", "run":
                f"sh -c 'taskset -p 2 $(cat {{cgroup:{CGROUP}}}/cgroup.procs)'"},
            {"sleep": 10},
            {"name": "stop", "run": f"sh -c 'kill $(cat {{cgroup:{CGROUP}}}/cgroup.procs)'",
             "cgroup": "ctl"},
            {"wait": "holder"}]
        w.cgroups[CGROUP]["memory.max"] = format_size(max(limit, (4 * L) << 20))
        w.comm, w.from_step = "memhog", "move"
        w.notes.append("two NUMA nodes: the hog faults its (transparent huge) pages in on node "
                       "0's CPU, is moved to node 1's, and NUMA balancing migrates the pages "
                       "from its hinting faults")
    elif name == "migrate":
        w.cgroups["ctl"] = {}
        w.steps = [
            {"name": "holder", "run": f"memhog -t 60 {max(1, L // 2)}", "cgroup": CGROUP,
             "background": True, "timeout": 120},
            {"sleep": 2},
            {"name": "compact", "run": "sh -c 'echo 1 > /proc/sys/vm/compact_memory'",
             "cgroup": "ctl", "timeout": 120},
            {"name": "stop", "run": f"sh -c 'kill $(cat {{cgroup:{CGROUP}}}/cgroup.procs)'",
             "cgroup": "ctl"},
            {"wait": "holder"}]
        w.from_step = "compact"
        w.notes.append("the guest has one NUMA node: pages migrate through compaction, not "
                       "through a NUMA hinting fault")
    elif name == "exit":
        w.cgroups["ctl"] = {}
        w.steps = [
            {"name": "holder", "run": f"memhog -t 30 {max(1, L // 2)}", "cgroup": CGROUP,
             "background": True},
            {"sleep": 2},
            {"name": "stop", "run": f"sh -c 'kill $(cat {{cgroup:{CGROUP}}}/cgroup.procs)'",
             "cgroup": "ctl"},
            {"wait": "holder"}]
        w.comm, w.from_step = "memhog", "stop"
    elif name == "fork":
        w.cgroups[CGROUP]["pids.max"] = 64
        w.steps = [{"name": "fork", "run": "forker 32", "cgroup": CGROUP}]
        w.comm = "forker"
    elif name == "swapin":
        w.steps = [{"name": "hog", "run": f"memhog -r 1 {L + L // 2}", "cgroup": CGROUP,
                    "timeout": 240}]
        w.comm = "memhog"
        if names & SWAP_CACHE_FUNCTIONS:
            # zram is SWP_SYNCHRONOUS_IO: do_swap_page reads it without the swap cache and its
            # readahead. A swap partition on the virtio disk goes through both.
            w.machine["swap"] = "none"
            w.machine["disk"] = f"{max(256, 8 * L)}M"
            ra = "swap_cluster_readahead" in names and "swap_vma_readahead" not in names
            w.cgroups.setdefault("tools", {})
            w.steps[:0] = [{"name": "swapon", "cgroup": "tools", "run": (
                "sh -c 'mkswap /dev/vda >/dev/null && swapon /dev/vda"
                + (" && echo false > /sys/kernel/mm/swap/vma_ra_enabled" if ra else "")
                + " && echo swapon=1'")}]
            w.notes.append("swap on a partition of the virtio disk, not zram: the paste went "
                           "through the swap cache (__read_swap_cache_async), which zram's "
                           "synchronous swap-in skips"
                           + ("; VMA-based swap readahead off, for swap_cluster_readahead"
                              if ra else ""))
    elif name in ("file-fault", "file-read", "file-write"):
        size = 2 * L if pressure else L
        w.machine["disk"] = f"{max(256, 4 * L)}M"
        w.cgroups["tools"] = {}
        w.steps = [{"name": "mount", "run": _MOUNT, "cgroup": "tools"}]
        if name != "file-write":
            w.steps += [{"name": "file", "cgroup": "tools", "timeout": 240,
                         "run": f"sh -c 'dd if=/dev/zero of=/mnt/kh-repro/f bs=1M "
                                f"count={size} 2>/dev/null; {_DROP}'"}]
        if swap:  # anonymous pages for reclaim to swap out while the file comes in
            w.steps += [{"name": "holder", "run": f"memhog -t 120 {max(1, (3 * L) // 4)}",
                         "cgroup": CGROUP, "background": True, "timeout": 240},
                        {"sleep": 2}]
        if name == "file-fault":
            flags = []
            chain_set = set(chain)
            if "__filemap_get_folio" in chain_set and not chain_set & {
                    "page_cache_ra_unbounded", "do_sync_mmap_readahead", "page_cache_ra_order"}:
                flags.append("-R")  # no readahead: the fault reads its own folio
            if oom:
                flags.append("-L")  # page cache that cannot be reclaimed: the charge OOMs
                w.notes.append("the mapping is mlocked on fault (memhog -L), so the page "
                               "cache cannot be reclaimed and the charge ends in the OOM")
            elif swap:
                flags.append("-L")  # reclaim for the page cache's charge must swap anon out
                w.notes.append("the mapping is mlocked on fault (memhog -L), so reclaim for "
                               "its charges swaps the holder's anonymous pages out")
            run = " ".join(["memhog", "-m", "/mnt/kh-repro/f", *flags, str(size)])
            w.comm = "memhog"
        elif name == "file-read":
            run = "dd if=/mnt/kh-repro/f of=/dev/null bs=1M"
            w.comm = "dd"
        else:
            run = f"dd if=/dev/zero of=/mnt/kh-repro/f bs=1M count={size}"
            w.comm = "dd"
        w.steps += [{"name": "workload", "run": run, "cgroup": CGROUP, "timeout": 240}]
        if swap:
            w.steps += [{"name": "stop", "run": "sh -c 'kill $(pidof memhog) 2>/dev/null; true'",
                         "cgroup": "tools"}]
            if name == "file-fault":  # the holder is a memhog too
                w.comm = None
    else:  # anon
        w.steps = [{"name": "hog", "run": f"memhog {hog}", "cgroup": CGROUP,
                    "timeout": 240 if swap else 120}]
        w.comm = "memhog"
    if names & CLASSIC_LRU_FUNCTIONS:
        w.cgroups.setdefault("tools", {})
        w.steps[:0] = [{"name": "classic_lru", "cgroup": "tools", "run": (
            "sh -c 'f=/sys/kernel/mm/lru_gen/enabled; [ -w $f ] && echo n > $f; "
            "echo lru_gen=$(cat $f 2>/dev/null || echo none)'")}]
        w.notes.append("the paste reclaims through the classic LRU lists (shrink_inactive_list):"
                       " the multi-gen LRU is turned off (/sys/kernel/mm/lru_gen/enabled = n) "
                       "where the kernel has it on")
    if oom and name in ("anon", "swapin"):
        w.notes.append(f"memhog {hog} MiB over memory.max {format_size(limit)} without swap: "
                       "the OOM killer ends it")
    return w
