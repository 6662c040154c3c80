"""Per kernel: the breakpoint, the caller filter, the frames expected; the scenario they make."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..frames import is_entry_function
from ..kernels.functions import ABSENT, INLINED, SYMBOL, FunctionInfo
from ..scenario import release_series
from ..traces import PastedTrace
from .names import Resolved, is_memcg, pasted_chain, resolve
from .workload import NUMA_FAULT_FUNCTIONS, Recipe, Workload

COUNT = 3  # hits captured per kernel: the best-matching one is compared


@dataclass
class KernelPlan:
    """What one kernel has of the pasted chain, and where to stop in it."""

    release: str
    chain: list[Resolved]  # the pasted chain, #0 outwards, resolved in this kernel
    start: int | None  # index in chain of the breakpoint; None: nothing to break at
    note: str | None = None  # the breakpoint is not the innermost memcg frame: why
    callers: tuple[str, ...] = ()

    @property
    def breakpoint(self) -> str | None:
        return None if self.start is None else self.chain[self.start].name

    @property
    def inside(self) -> list[Resolved]:
        """Pasted frames inside the breakpoint: a capture there cannot show them."""
        return [] if self.start is None else self.chain[:self.start]

    @property
    def expected(self) -> list[str]:
        """The kernel's names of the pasted frames it has, from the breakpoint outwards."""
        if self.start is None:
            return []
        return [r.name for r in self.chain[self.start:] if r.name]


def plan_kernel(trace: PastedTrace, release: str, infos: dict[str, FunctionInfo],
                config: dict[str, str], all_infos: Sequence[dict[str, FunctionInfo]],
                recipe: Recipe) -> KernelPlan:
    chain: list[Resolved] = []
    for n in pasted_chain(trace.backtrace):
        r = resolve(n, infos, config, release)
        if r.renamed and chain and chain[-1].name == r.name:  # two old functions, one new
            r = Resolved(n, None, ABSENT, f"{n} does not exist in {release}: it and "
                         f"{chain[-1].pasted} are both {r.name} there ({r.why})")
        chain.append(r)
    plan = KernelPlan(release, chain, None)
    if not chain:
        return plan
    innermost = next((i for i, r in enumerate(chain) if is_memcg(r.pasted, all_infos)), 0)
    start = next((i for i in range(innermost, len(chain))
                  if chain[i].name and infos.get(chain[i].name, FunctionInfo("", ABSENT)).state
                  == SYMBOL and not is_entry_function(chain[i].name)), None)
    if start is None:  # nothing out of line outwards: the nearest inwards
        start = next((i for i in range(innermost - 1, -1, -1)
                      if chain[i].name and infos.get(chain[i].name).state == SYMBOL), None)
    plan.start = start
    if start is None:
        return plan
    first = chain[innermost]
    if start != innermost:
        if first.name is None:
            how = first.why
        elif first.state == INLINED:
            how = (f"{first.name} is inlined in {release}: a breakpoint would be one per "
                   "copy")
        else:
            how = first.why or f"{first.pasted} has no symbol in {release}"
        plan.note = (f"breaking at {chain[start].name}, the nearest frame that exists out of "
                     f"line: {how}")
    elif first.renamed:
        plan.note = f"breaking at {first.name}: {first.why}"
    callers: list[str] = []
    nxt = next((r.name for r in chain[start + 1:] if r.name and r.name != chain[start].name),
               None)
    if nxt:
        callers.append(nxt)
    # the reclaim in between, when there is one: an uncharge under reclaim and one under
    # the LRU's batch have the same next frame and the same entry
    middle = next((r.name for r in chain[start + 2:] if r.name and r.pasted in
                   ("shrink_folio_list", "shrink_page_list", "try_to_free_mem_cgroup_pages")
                   and r.name not in callers), None)
    if middle:
        callers.append(middle)
    # the entry path's mark; for a NUMA hinting fault the fault itself (a THP's or a page's)
    numa = [r.name for r in chain[start + 1:] if r.name and r.pasted in NUMA_FAULT_FUNCTIONS
            and r.pasted.startswith("do_")]
    anchor = numa[-1] if numa else next(
        (r.name for r in chain[start + 1:] if r.name and r.pasted in recipe.anchors
         and r.name not in callers), None)
    if anchor:
        callers.append(anchor)
    plan.callers = tuple(callers)
    return plan


def scenario_doc(trace: PastedTrace, workload: Workload, plans: Sequence[KernelPlan],
                 source: str, frames: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The reproduction as a scenario: one breakpoint per distinct plan (`when: kernel` by
    series when the kernels differ). `frames`: release -> the frames expectation (default:
    every pasted frame the kernel has, from the breakpoint outwards)."""
    groups: dict[tuple, list[KernelPlan]] = {}
    for p in plans:
        if p.breakpoint is None:
            continue
        want = (frames or {}).get(p.release, p.expected)
        groups.setdefault((p.breakpoint, p.callers, tuple(want)), []).append(p)
    gdb = []
    for (location, callers, want), members in groups.items():
        bp: dict[str, Any] = {"function": location, "count": COUNT, "hits": [1, COUNT]}
        if len(groups) > 1:
            bp["when"] = {"kernel": ",".join(sorted({f"=={release_series(m.release)}"
                                                      for m in members}))}
        if workload.comm:
            bp["comm"] = workload.comm
        if callers:
            bp["callers"] = list(callers)
        if workload.from_step:
            bp["from_step"] = workload.from_step
        bp["frames"] = list(want)
        gdb.append(bp)
    first = pasted_chain(trace.backtrace)
    return {
        "description": f"kharness reproduce {source}: the {trace.format} trace "
                       f"{' <- '.join(first[:4])}{' ...' if len(first) > 4 else ''}; "
                       f"workload: {workload.recipe.what}",
        "hierarchies": [workload.hierarchy],
        "requires": {"controllers": ["memory"] + (["pids"] if "pids.max" in str(
            workload.cgroups) else [])},
        "machine": dict(workload.machine),
        "cgroups": workload.cgroups,
        "steps": workload.steps,
        "gdb": gdb,
    }


def write_scenario(doc: dict[str, Any], path: Path, header: Sequence[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [("# written by kharness reproduce; rerun with `kharness run " f"{path}`")]
    lines += [f"# {h}" for h in header]
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(doc, sort_keys=False, width=100))
    return path
