"""`kharness reproduce TRACE_FILE`: from a trace someone pasted to a checked reproduction.

The pasted trace (harness/traces.py reads gdb, dmesg, OOM reports, ftrace and perf) is the
input; this module decides the rest, per kernel:

- **what the kernel has** (harness/kernels/functions.py): each pasted function is out of line
  there, only inlined, renamed (RENAMES: the kernel history between 6.1 and 6.12 that the
  pasted chains run into) or absent, and why;
- **the breakpoint**: the innermost memcg function of the chain (mm/memcontrol.c, or a memcg
  name) that has a symbol in that kernel; when that one is inlined, renamed away or absent
  there, the nearest frame outwards that has one, and the plan says so. Frames of the paste
  inside the breakpoint (the OOM report's dump_stack) cannot be captured by it: they are
  listed as such and left out of the score;
- **the caller filter**: the next frame of the chain the kernel has, and the frame that marks
  the entry path (do_anonymous_page, __filemap_add_folio, do_mkdirat...), so the breakpoint
  stops on this chain and not on the hundred others through the same function;
- **the workload** (RECIPES): chosen by the entry path: a page fault on anonymous memory is
  memhog, a page-cache fault is memhog -m on a file of the scenario disk, a read or a write is
  dd there, mkdir is kmem, a swap-in is memhog -r with swap, fork is forker, a task move is a
  write to cgroup.procs, a migration is compaction under a holder, an exit is a killed holder;
  reclaim in the chain puts it over memory.max, swap functions give it zram swap. An OOM
  report's limit is memory.max, and its `memory+swap` lines (v1) the hierarchy.

The plan becomes an ordinary scenario (`scenario_doc`: a gdb section per kernel series with
`when: kernel`, frames expectations), run by the scenario runner like any other; `compare()`
then lines the pasted chain up with each captured one frame by frame (matched, inlined,
renamed, missing, extra; absent and inside ones named) and scores it: frames of the paste
found in order / frames of the paste the kernel has (inside ones excepted). `report()` is the
text the command prints; `final_doc()` the scenario kept in the results, its frames
expectations set to what reproduced, so that it passes `kharness run` and guards the
reproduction from then on.
"""

from .compare import (
                      ABSENT_HERE,
                      EXTRA,
                      INLINED_NOW,
                      INSIDE,
                      LEGEND,
                      MATCHED,
                      MISSING,
                      RENAMED,
                      Comparison,
                      FrameMatch,
                      best_comparison,
                      compare,
                      document,
                      final_frames,
                      format_comparison,
                      report,
                      script_text,
)
from .names import (
                      MEMCG_FILES,
                      MOVED,
                      RENAMES,
                      Moved,
                      Rename,
                      Resolved,
                      is_memcg,
                      lookup_names,
                      pasted_chain,
                      resolve,
)
from .plan import COUNT, KernelPlan, plan_kernel, scenario_doc, write_scenario
from .workload import (
                      CGROUP,
                      DEFAULT_LIMIT,
                      MAX_LIMIT,
                      OOM_FUNCTIONS,
                      PRESSURE_FUNCTIONS,
                      RECIPE_NAMES,
                      RECIPES,
                      SWAP_FUNCTIONS,
                      Recipe,
                      Workload,
                      choose_recipe,
                      plan_workload,
)

__all__ = [
                      "ABSENT_HERE",
                      "CGROUP",
                      "COUNT",
                      "DEFAULT_LIMIT",
                      "EXTRA",
                      "INLINED_NOW",
                      "INSIDE",
                      "LEGEND",
                      "MATCHED",
                      "MAX_LIMIT",
                      "MEMCG_FILES",
                      "MISSING",
                      "MOVED",
                      "OOM_FUNCTIONS",
                      "PRESSURE_FUNCTIONS",
                      "RECIPES",
                      "RECIPE_NAMES",
                      "RENAMED",
                      "RENAMES",
                      "SWAP_FUNCTIONS",
                      "Comparison",
                      "FrameMatch",
                      "KernelPlan",
                      "Moved",
                      "Recipe",
                      "Rename",
                      "Resolved",
                      "Workload",
                      "best_comparison",
                      "choose_recipe",
                      "compare",
                      "document",
                      "final_frames",
                      "format_comparison",
                      "is_memcg",
                      "lookup_names",
                      "pasted_chain",
                      "plan_kernel",
                      "plan_workload",
                      "report",
                      "resolve",
                      "scenario_doc",
                      "script_text",
                      "write_scenario",
]
