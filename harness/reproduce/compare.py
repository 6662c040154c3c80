"""The pasted chain against each captured one, frame by frame; the report and the script."""

from __future__ import annotations

import io
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..frames import GDB, Backtrace, base_function, format_backtrace
from ..results import ScenarioResult
from ..traces import PastedTrace
from ..units import format_size
from .names import pasted_chain
from .plan import KernelPlan
from .workload import Workload

MATCHED, INLINED_NOW, RENAMED, MISSING, ABSENT_HERE, INSIDE, EXTRA = (
    "matched", "inlined", "renamed", "missing", "absent", "inside", "extra")


@dataclass(frozen=True)
class FrameMatch:
    status: str
    pasted: str | None  # None for an extra frame
    reproduced: str | None = None
    why: str | None = None


@dataclass
class Comparison:
    release: str
    frames: list[FrameMatch]
    hit: int | None  # which captured hit was compared
    backtrace: Backtrace | None

    @property
    def found(self) -> int:
        return sum(f.status in (MATCHED, INLINED_NOW, RENAMED) for f in self.frames)

    @property
    def present(self) -> int:
        return sum(f.status in (MATCHED, INLINED_NOW, RENAMED, MISSING) for f in self.frames)

    @property
    def score(self) -> float:
        return self.found / self.present if self.present else 0.0

    @property
    def reproduced(self) -> bool:
        return self.backtrace is not None and self.present > 0 and self.found == self.present

    def to_dict(self) -> dict[str, Any]:
        return {"kernel": self.release, "score": round(self.score, 3), "found": self.found,
                "present": self.present, "reproduced": self.reproduced, "hit": self.hit,
                "frames": [{"status": f.status, "pasted": f.pasted,
                            "reproduced": f.reproduced, "why": f.why} for f in self.frames]}


def _lcs(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = (table[i + 1][j + 1] + 1 if a[i] == b[j]
                           else max(table[i + 1][j], table[i][j + 1]))
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def compare(plan: KernelPlan, trace: PastedTrace, bt: Backtrace | None,
            hit: int | None = None) -> Comparison:
    """The pasted chain against one captured backtrace, frame by frame."""
    rows: list[FrameMatch] = []
    pasted_frames = {base_function(f.function): f for f in trace.backtrace.frames}
    for r in plan.inside:
        rows.append(FrameMatch(INSIDE, r.pasted, None,
                               f"inside the breakpoint at {plan.breakpoint}: not captured"))
    tail = plan.chain[plan.start:] if plan.start is not None else plan.chain
    if bt is None:
        for r in tail:
            rows.append(FrameMatch(ABSENT_HERE if not r.name else MISSING, r.pasted, None,
                                   r.why if not r.name else "no backtrace captured"))
        return Comparison(plan.release, rows, hit, None)
    got = [f for f in bt.frames if not f.unreliable]
    got_names = [base_function(f.function) for f in got]
    present = [(k, r) for k, r in enumerate(tail) if r.name]
    pairs = dict(_lcs([r.name for _, r in present], got_names))
    matched_at: dict[int, int] = {present[i][0]: j for i, j in pairs.items()}
    last_j = -1
    for k, r in enumerate(tail):
        if not r.name:
            rows.append(FrameMatch(ABSENT_HERE, r.pasted, None, r.why))
            continue
        j = matched_at.get(k)
        if j is None:
            rows.append(FrameMatch(MISSING, r.pasted, None,
                                   f"{r.name} exists in {plan.release} but is not on the "
                                   "reproduced chain"))
            continue
        for extra in got_names[last_j + 1:j]:
            rows.append(FrameMatch(EXTRA, None, extra))
        last_j = j
        pasted = pasted_frames.get(r.pasted)
        from_gdb = trace.backtrace.source == GDB
        if r.renamed:
            rows.append(FrameMatch(RENAMED, r.pasted, r.name, r.why))
        elif got[j].inlined and not (from_gdb and pasted is not None and pasted.inlined):
            rows.append(FrameMatch(INLINED_NOW, r.pasted, r.name, f"inlined in {plan.release}"
                                   + ("" if from_gdb else " (the paste's unwinder shows no "
                                                          "inlined frames)")))
        else:
            rows.append(FrameMatch(MATCHED, r.pasted, r.name))
    return Comparison(plan.release, rows, hit, bt)


def best_comparison(plan: KernelPlan, trace: PastedTrace,
                    result: ScenarioResult | None) -> Comparison:
    hits = list(result.backtraces) if result is not None else []
    best: Comparison | None = None
    for b in hits:
        c = compare(plan, trace, b.chain(), b.hit)
        if best is None or c.score > best.score:
            best = c
    return best or compare(plan, trace, None)


# --- the report ------------------------------------------------------------------------------

_MARK = {MATCHED: "=", INLINED_NOW: "~", RENAMED: ">", MISSING: "-", ABSENT_HERE: "x",
         INSIDE: ".", EXTRA: "+"}


def format_comparison(c: Comparison, plan: KernelPlan) -> str:
    out = io.StringIO()
    verdict = "reproduced" if c.reproduced else "not reproduced"
    print(f"== {c.release}: {verdict}: score {c.found}/{c.present} = {c.score:.2f} "
          f"(frames of the paste found in order / frames of the paste {c.release} has)",
          file=out)
    if plan.breakpoint:
        print(f"   breakpoint {plan.breakpoint}"
              + (f", callers {', '.join(plan.callers)}" if plan.callers else ""), file=out)
    if plan.note:
        print(f"   {plan.note}", file=out)
    width = max([len(f.pasted or "") for f in c.frames] + [24]) + 2
    print(f"   {'pasted':<{width + 2}}reproduced", file=out)
    for f in c.frames:
        left = f.pasted or ""
        right = f.reproduced or ""
        why = f"  ({f.why})" if f.why and f.status not in (MATCHED,) else ""
        print(f"   {_MARK[f.status]} {left:<{width}}{right:<{width}}{f.status}{why}", file=out)
    return out.getvalue()


LEGEND = ("= matched, ~ matched but inlined here, > renamed here, - missing (the kernel has it, "
          "the reproduction did not pass it), x absent from this kernel, . inside the "
          "breakpoint (not captured), + extra (only in the reproduction)")


def report(trace: PastedTrace, workload: Workload, plans: Sequence[KernelPlan],
           comparisons: Sequence[Comparison], results: Sequence[ScenarioResult]) -> str:
    out = io.StringIO()
    chain = pasted_chain(trace.backtrace)
    print(f"pasted {trace.format} trace: {len(chain)} frames, #0 {chain[0] if chain else '?'}"
          + (f" (comm {trace.backtrace.comm})" if trace.backtrace.comm else ""), file=out)
    print(f"workload: {workload.recipe.what} ({workload.hierarchy}, memory.max "
          f"{format_size(workload.limit)}, {workload.swap_kind})",
          file=out)
    for note in workload.notes:
        print(f"  {note}", file=out)
    by_release = {r.kernel: r for r in results}
    for c, p in zip(comparisons, plans, strict=True):
        print(file=out)
        print(format_comparison(c, p), end="", file=out)
        r = by_release.get(c.release)
        if c.backtrace is None and r is not None:
            why = r.reason or "; ".join(f"{x.description}: {x.skipped_reason or x.observed}"
                                        for x in r.checks if not x.passed) or "no hit"
            print(f"   no backtrace: {why}", file=out)
        elif c.backtrace is not None and not c.reproduced:
            print("   the closest captured chain:", file=out)
            for line in format_backtrace(c.backtrace).splitlines():
                print(f"     {line}", file=out)
    print(f"\n{LEGEND}", file=out)
    return out.getvalue()


def document(trace: PastedTrace, workload: Workload, plans: Sequence[KernelPlan],
             comparisons: Sequence[Comparison], scenario: Path) -> dict[str, Any]:
    return {"trace": trace.to_dict(), "scenario": str(scenario),
            "workload": {"recipe": workload.recipe.name, "hierarchy": workload.hierarchy,
                         "memory_max": workload.limit, "swap": workload.swap,
                         "notes": list(workload.notes)},
            "kernels": [{**c.to_dict(), "breakpoint": p.breakpoint, "callers": list(p.callers),
                         "note": p.note} for c, p in zip(comparisons, plans, strict=True)],
            "reproduced": all(c.reproduced for c in comparisons)}


def final_frames(comparisons: Sequence[Comparison], plans: Sequence[KernelPlan]
                 ) -> dict[str, list[str]]:
    """Per kernel, the frames expectation of the scenario kept: what reproduced (all the
    expected frames where nothing was captured)."""
    out = {}
    for c, p in zip(comparisons, plans, strict=True):
        got = [f.reproduced for f in c.frames
               if f.status in (MATCHED, INLINED_NOW, RENAMED) and f.reproduced]
        out[p.release] = got if c.backtrace is not None and got else p.expected
    return out


def script_text(doc: dict[str, Any], kernel_specs: Sequence[str]) -> str:
    """A shell script that reruns the reproduction: the scenario kept, inline, run by
    `kharness run` on the same kernels (its exit status: 0 when every frames expectation
    held)."""
    body = yaml.safe_dump(doc, sort_keys=False, width=100)
    kernels = " ".join(f"--kernel {shlex.quote(k)}" for k in kernel_specs)
    kernels += "".join(f" --hierarchy {h}" for h in doc.get("hierarchies") or ())
    return ("#!/bin/sh\n"
            "# Reruns a reproduction with kharness (written by `kharness reproduce --script`):\n"
            "# the scenario below, its frames expectations set to what reproduced.\n"
            "# Needs kharness on PATH, or KHARNESS=/path/to/kharness-checkout/kh; extra\n"
            "# arguments (--results DIR, -q...) are passed on to `kharness run`.\n"
            "set -e\n"
            'dir=$(mktemp -d)\ntrap \'rm -rf "$dir"\' EXIT\n'
            'cat > "$dir/reproduce.yaml" <<\'KH_SCENARIO\'\n'
            f"{body}KH_SCENARIO\n"
            f'${{KHARNESS:-kharness}} run "$dir/reproduce.yaml" {kernels} "$@"\n')
