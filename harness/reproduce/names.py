"""What a kernel has of a pasted chain: the kernel history (RENAMES) and resolving each pasted
function in one kernel."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..frames import Backtrace, base_function, is_entry_function
from ..kernels.functions import ABSENT, INLINED, FunctionInfo
from ..traces import PastedTrace

MEMCG_FILES = ("mm/memcontrol.c", "mm/memcontrol-v1.c", "include/linux/memcontrol.h",
               "mm/swap_cgroup.c")
_MEMCG_NAME = re.compile(r"mem_cgroup|memcg|obj_cgroup|^(?:try_)?charge_|^uncharge_|_charge$")


@dataclass(frozen=True)
class Rename:
    """`old` became `new` (None: removed) in `since`; `config`: the new code is built only
    with this option."""

    old: str
    new: str | None
    since: str
    why: str
    config: str | None = None


RENAMES: tuple[Rename, ...] = (
    Rename("mem_cgroup_move_task", "memcg1_move_task", "6.11",
           "moved to mm/memcontrol-v1.c with the rest of v1's charge moving",
           "CONFIG_MEMCG_V1"),
    Rename("memcg_check_events", "memcg1_check_events", "6.11",
           "moved to mm/memcontrol-v1.c: only v1's thresholds and soft limit use the events",
           "CONFIG_MEMCG_V1"),
    Rename("mem_cgroup_uncharge_list", "mem_cgroup_uncharge_folios", "6.8",
           "the uncharge of a reclaimed list takes a folio batch"),
    Rename("__mem_cgroup_uncharge_list", "__mem_cgroup_uncharge_folios", "6.8",
           "the uncharge of a reclaimed list takes a folio batch"),
    Rename("migrate_misplaced_page", "migrate_misplaced_folio", "after 6.1",
           "the NUMA-balancing migration works on folios"),
    Rename("alloc_misplaced_dst_page", "alloc_misplaced_dst_folio", "after 6.1",
           "the NUMA-balancing migration works on folios"),
    Rename("unmap_and_move", "migrate_folio_move", "6.3",
           "batched migration split it into migrate_folio_unmap and migrate_folio_move"),
    Rename("__unmap_and_move", "migrate_folio_move", "6.3",
           "batched migration split it into migrate_folio_unmap and migrate_folio_move"),
    Rename("shrink_page_list", "shrink_folio_list", "6.1", "reclaim works on folios"),
    Rename("kmem_cache_alloc_lru", "kmem_cache_alloc_lru_noprof", "6.10",
           "memory allocation profiling wraps the allocators in macros"),
    Rename("kmem_cache_alloc", "kmem_cache_alloc_noprof", "6.10",
           "memory allocation profiling wraps the allocators in macros"),
    Rename("__kmem_cache_alloc_lru", None, "after 6.1",
           "folded into slab_alloc_node when SLAB went away"),
    Rename("memcg_slab_pre_alloc_hook", None, "6.9",
           "slab objects are charged after the allocation, in __memcg_slab_post_alloc_hook"),
    Rename("call_write_iter", None, "after 6.1",
           "vfs_write calls ->write_iter directly"),
    Rename("call_read_iter", None, "after 6.1", "vfs_read calls ->read_iter directly"),
    Rename("slab_alloc", None, "after 6.1", "its callers call slab_alloc_node directly"),
    Rename("__lookup_hash", "lookup_one_qstr_excl", "6.0", "renamed for what it does"),
)


@dataclass(frozen=True)
class Moved:
    """`frame` still exists, but the call the paste shows no longer goes through it in a
    kernel that has `instead` (the function the work moved to)."""

    frame: str
    instead: str | None  # the kernel has this function: the call moved
    since: str
    why: str
    verified: tuple[int, int] | None = None  # or: from this version on (read in its source)

    def applies(self, infos: dict[str, FunctionInfo], release: str) -> bool:
        if self.instead is not None:
            there = infos.get(self.instead)
            return there is not None and there.exists
        m = re.match(r"(\d+)\.(\d+)", release)
        return bool(m and self.verified and (int(m[1]), int(m[2])) >= self.verified)


MOVED: tuple[Moved, ...] = (
    Moved("slab_pre_alloc_hook", "__memcg_slab_post_alloc_hook", "6.9",
          "slab objects are charged after the allocation, in __memcg_slab_post_alloc_hook, "
          "not before it"),
    Moved("memcg_slab_pre_alloc_hook", "__memcg_slab_post_alloc_hook", "6.9",
          "slab objects are charged after the allocation, in __memcg_slab_post_alloc_hook, "
          "not before it"),
    Moved("__filemap_add_folio", None, "after 6.1",
          "filemap_add_folio charges the folio itself (mem_cgroup_charge) before it calls "
          "__filemap_add_folio", verified=(6, 12)),
)


def _when(r: Rename) -> str:
    return r.since if r.since.startswith("after") else f"in {r.since}"


def _renames_of(name: str) -> list[tuple[str | None, Rename]]:
    """(the other name, the rename) for every rename that involves `name`, either way."""
    out: list[tuple[str | None, Rename]] = []
    for r in RENAMES:
        if r.old == name:
            out.append((r.new, r))
        elif r.new == name:
            out.append((r.old, r))
    return out


@dataclass(frozen=True)
class Resolved:
    """A pasted function in one kernel: `name` is the kernel's name for it (the pasted one, or
    a rename's), None when the kernel has neither; `state` the kernel's FunctionInfo state."""

    pasted: str
    name: str | None
    state: str
    why: str | None = None  # renamed / inlined / absent: the explanation

    @property
    def exists(self) -> bool:
        return self.name is not None

    @property
    def renamed(self) -> bool:
        return self.name is not None and self.name != self.pasted


def resolve(pasted: str, infos: dict[str, FunctionInfo], config: dict[str, str],
            release: str) -> Resolved:
    """How kernel `release` (its functions `infos`, its .config values) has `pasted`."""
    info = infos.get(pasted)
    for m in MOVED:
        if m.frame == pasted and info is not None and info.exists and m.applies(infos, release):
            return Resolved(pasted, None, ABSENT,
                            f"{pasted} is not on this path in {release}: "
                            f"{'since ' if m.since[0].isdigit() else ''}{m.since}, {m.why}")
    if info is not None and info.exists:
        why = (f"{pasted} is inlined in {release}: no symbol of its own, no frame in the "
               "kernel's unwinder (gdb still shows it)") if info.state == INLINED else None
        return Resolved(pasted, pasted, info.state, why)
    for other, r in _renames_of(pasted):
        target = infos.get(other) if other else None
        if other and target is not None and target.exists:
            return Resolved(pasted, other, target.state,
                            f"{pasted} is {other} in {release} (renamed {_when(r)}: {r.why})")
    for other, r in _renames_of(pasted):
        if other and r.config and config.get(r.config, "n") not in ("y", "m"):
            return Resolved(pasted, None, ABSENT,
                            f"{pasted} does not exist in {release}: it became {other} {_when(r)} "
                            f"({r.why}), built only with {r.config}, which is not set there")
        if other is None or r.old == pasted:
            return Resolved(pasted, None, ABSENT,
                            f"{pasted} does not exist in {release}: "
                            + (f"removed {_when(r)}: {r.why}" if other is None
                               else f"it became {other} {_when(r)} ({r.why}), and "
                                    f"{release} has neither"))
        return Resolved(pasted, None, ABSENT,
                        f"{pasted} does not exist in {release}: it is the newer name of {r.old} "
                        f"({_when(r)}: {r.why}), and {release} has neither")
    return Resolved(pasted, None, ABSENT,
                    f"{pasted} does not exist in {release}: not in its symbols nor in its "
                    "debug info (removed, renamed, or built out by its configuration)")


def lookup_names(trace: PastedTrace) -> set[str]:
    """Every name to look up in a kernel for this trace: the pasted functions, the other names
    of the renamed ones, and the recipes' anchors."""
    names = set(pasted_chain(trace.backtrace))
    for n in list(names):
        names.update(o for o, _ in _renames_of(n) if o)
        names.update(m.instead for m in MOVED if m.frame == n and m.instead)
    return names


def pasted_chain(bt: Backtrace) -> list[str]:
    """The paste's reliable frames, #0 outwards, without clone suffixes, up to the first entry
    function (gdb's frames past it are user registers)."""
    chain: list[str] = []
    for f in bt.frames:
        if f.unreliable or f.function == "??":
            continue
        name = base_function(f.function)
        chain.append(name)
        if is_entry_function(name):
            break
    return chain


def is_memcg(name: str, infos: Iterable[dict[str, FunctionInfo]]) -> bool:
    if _MEMCG_NAME.search(name):
        return True
    return any((i.get(name) and i[name].file in MEMCG_FILES) for i in infos)
