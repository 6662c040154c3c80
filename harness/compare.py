"""`kharness compare RUN_A RUN_B`: what changed from one run to another (two kernels, or
yesterday's CI and today's).

Cells are matched by (scenario, kernel, hierarchy), the kernels of the two runs being paired
first (`pair_kernels`): the same release; else the same spec; else the same series (debian:6.1
that resolved to a newer ABI); else, when one kernel of each run is left, those two (a run on
6.1 against a run on 6.12: cells are then matched by (scenario, hierarchy)). `--pair A=B` names
the pairs instead.

A cell's status from A to B:

    A \\ B   pass        fail / error    skip
    pass    -           regression      new skip
    fail    fix         still failing   new skip
    error   fix         still failing   new skip
    skip    skip gone   regression      -

(a cell that was skipped and now fails counts as a regression: it was not failing before).

A figure (harness/figures.py, with its unit as `kharness report` gives it) moved when
|b - a| > threshold% of |a| and |b - a| > the floor of its unit (FLOORS: one for counts, so an
OOM kill count going 0 -> 1 is not reported but 0 -> 2 is; 1M for bytes; 0.5 s; 5 CPU points).
From 0, any change beyond the floor counts. The sampled peaks are left out unless asked for
(`sampled`): they are where the 100 ms sampler happened to look, and move by tens of percent
between two runs of the same kernel. Figures are reported, not gated on: only regressions make
the exit status 1.

The model (`Comparison`) comes first; `render_text` and `to_json` are views of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .figures import figures
from .report import figure, format_value
from .results import ERROR, FAIL, PASS, SKIP, ScenarioResult, Status
from .rundir import Record, RunDir, RunDirError

DEFAULT_THRESHOLD = 20.0  # percent
# Per unit (report.figure's): the change a figure must exceed to count, whatever the percentage.
# Counts move by whole events, so one is the noise floor; TCG timing noise is a few tenths of a
# second; the 100 ms memory sampler misses a few pages to a few MiB.
FLOORS: dict[str, float] = {"count": 1.0, "number": 1.0, "bytes": float(1 << 20),
                            "bytes/s": float(64 << 10), "seconds": 0.5, "percent": 5.0}

FAILING = (FAIL, ERROR)


@dataclass(frozen=True)
class KernelPair:
    a: str  # release in RUN_A
    b: str  # release in RUN_B
    spec_a: str
    spec_b: str
    how: str  # why these two: "same release", "same spec", "the only kernel left", "--pair"


@dataclass(frozen=True)
class CellChange:
    scenario: str
    hierarchy: str
    kernel_a: str
    kernel_b: str
    before: Status  # in RUN_A
    after: Status  # in RUN_B
    detail: str = ""  # the failure, or the skip reason, that explains the change

    def where(self) -> str:
        kernel = self.kernel_a if self.kernel_a == self.kernel_b else \
            f"{self.kernel_a} -> {self.kernel_b}"
        return f"{self.scenario} [{kernel} {self.hierarchy}]"


@dataclass(frozen=True)
class OnlyIn:
    scenario: str
    kernel: str
    hierarchy: str
    status: Status


@dataclass(frozen=True)
class FigureChange:
    scenario: str
    hierarchy: str
    kernel_a: str
    kernel_b: str
    figure: str
    unit: str  # bytes, bytes/s, seconds, percent, count, number
    before: float
    after: float

    @property
    def percent(self) -> float | None:
        """The change relative to RUN_A's value; None when that was 0."""
        return None if self.before == 0 else (self.after - self.before) / abs(self.before) * 100


@dataclass
class Comparison:
    run_a: str
    run_b: str
    threshold: float
    floors: dict[str, float]
    pairs: list[KernelPair] = field(default_factory=list)
    sampled: bool = False  # the sampled peaks' figures compared too
    left_out_a: list[str] = field(default_factory=list)  # kernels not compared (with --pair)
    left_out_b: list[str] = field(default_factory=list)
    regressions: list[CellChange] = field(default_factory=list)
    fixes: list[CellChange] = field(default_factory=list)
    new_skips: list[CellChange] = field(default_factory=list)
    skips_gone: list[CellChange] = field(default_factory=list)
    still_failing: list[CellChange] = field(default_factory=list)
    only_in_a: list[OnlyIn] = field(default_factory=list)
    only_in_b: list[OnlyIn] = field(default_factory=list)
    figures: list[FigureChange] = field(default_factory=list)
    unchanged: int = 0  # matched cells with the same status (and no failure)
    # A run that did not finish (interrupted, stopped by a full disk): its missing cells are
    # not results, so "only in" the other run means "not run here", not "gone"
    incomplete: dict[str, str] = field(default_factory=dict)  # "A"/"B" -> why

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    @property
    def by_hierarchy(self) -> bool:
        """True when some cells were matched across different kernels."""
        return any(p.a != p.b for p in self.pairs)

    def summary(self) -> dict[str, int]:
        return {"regressions": len(self.regressions), "fixes": len(self.fixes),
                "new_skips": len(self.new_skips), "skips_gone": len(self.skips_gone),
                "still_failing": len(self.still_failing), "only_in_a": len(self.only_in_a),
                "only_in_b": len(self.only_in_b), "figures_moved": len(self.figures),
                "unchanged": self.unchanged}


# --- the model ---------------------------------------------------------------------------------

def pair_kernels(run_a: RunDir, run_b: RunDir, explicit: list[tuple[str, str]] | None = None
                 ) -> tuple[list[KernelPair], list[str], list[str]]:
    """Kernel pairs, and the kernels of A and of B left unpaired. `explicit`: (A, B) names, each
    a release or a spec of that run's kernels, or a prefix naming one (debian:6.1, 6.12)."""
    ka, kb = run_a.kernels(), run_b.kernels()
    spec_a, spec_b = dict(ka), dict(kb)
    if explicit:
        pairs = [KernelPair(a, b, spec_a[a], spec_b[b], "--pair")
                 for a, b in ((_kernel(ka, x, run_a), _kernel(kb, y, run_b)) for x, y in explicit)]
        for side, kernels in (("A", [p.a for p in pairs]), ("B", [p.b for p in pairs])):
            twice = sorted({k for k in kernels if kernels.count(k) > 1})
            if twice:
                raise RunDirError(f"--pair: {side}'s kernel {twice[0]} is paired twice")
        left_a = [r for r, _ in ka if r not in {p.a for p in pairs}]
        left_b = [r for r, _ in kb if r not in {p.b for p in pairs}]
        return pairs, left_a, left_b
    rest_a, rest_b = [r for r, _ in ka], [r for r, _ in kb]
    pairs = []

    def take(a: str, b: str, how: str) -> None:
        pairs.append(KernelPair(a, b, spec_a[a], spec_b[b], how))
        rest_a.remove(a)
        rest_b.remove(b)

    for a in list(rest_a):
        if a in rest_b:
            take(a, a, "same release")
    for a in list(rest_a):
        same = [b for b in rest_b if spec_b[b] and spec_b[b] == spec_a[a]]
        if len(same) == 1:
            take(a, same[0], f"same spec {spec_a[a]}")
    for a in list(rest_a):  # debian:6.1.0-57 yesterday, debian:6.1.0-58 today
        same = [b for b in rest_b if _series(b, spec_b[b]) == _series(a, spec_a[a])]
        if len(same) == 1:
            scheme, version = _series(a, spec_a[a])
            take(a, same[0], f"same series {scheme + ':' if scheme else ''}{version}")
    if len(rest_a) == 1 and len(rest_b) == 1:
        take(rest_a[0], rest_b[0], "the only kernel left in each run")
    return pairs, rest_a, rest_b


def _series(release: str, spec: str) -> tuple[str, str]:
    """(spec scheme, major.minor): ("debian", "6.1") for 6.1.0-57-amd64 from debian:6.1.0-57."""
    m = re.match(r"\d+\.\d+", release)
    return spec.partition(":")[0] if ":" in spec else "", m.group(0) if m else release


def _names(name: str, text: str) -> bool:
    """`debian:6.1` names debian:6.1.0-57 (results record the resolved spec), `6.1` names
    6.1.0-57-amd64; neither names 6.12."""
    return text == name or (text.startswith(name) and text[len(name)] in ".-+")


def _kernel(kernels: list[tuple[str, str]], name: str, run: RunDir) -> str:
    for release, spec in kernels:
        if name in (release, spec):
            return release
    named = [r for r, s in kernels if _names(name, s) or _names(name, r)]
    if len(named) == 1:
        return named[0]
    have = ", ".join(f"{r} ({s})" if s else r for r, s in kernels) or "none"
    what = "names several kernels" if named else "names no kernel"
    raise RunDirError(f"--pair: {name!r} {what} of {run.path} (it has: {have})")


def figure_moved(before: float, after: float, threshold: float, floor: float) -> bool:
    delta = abs(after - before)
    if delta <= floor:
        return False
    return before == 0 or delta / abs(before) * 100 > threshold


def _failure(r: ScenarioResult) -> str:
    if r.status == ERROR:
        return f"{r.failure_kind or 'error'}: {r.reason}"
    if r.status == FAIL:
        return "; ".join(f"{c.description}: expected {c.expected}, observed {c.observed}"
                         for c in r.failed_checks())
    return r.reason


def compare(run_a: RunDir, run_b: RunDir, threshold: float = DEFAULT_THRESHOLD,
            floors: dict[str, float] | None = None, pairs: list[tuple[str, str]] | None = None,
            sampled: bool = False) -> Comparison:
    """`floors`: per unit, over FLOORS."""
    kernel_pairs, left_a, left_b = pair_kernels(run_a, run_b, pairs)
    cmp = Comparison(str(run_a.path), str(run_b.path), threshold, {**FLOORS, **(floors or {})},
                     kernel_pairs, sampled=sampled)
    if pairs:  # the user chose what to compare: the other kernels are left out, not "only in"
        cmp.left_out_a, cmp.left_out_b = left_a, left_b
    for side, run in (("A", run_a), ("B", run_b)):
        if why := run.incomplete():
            cmp.incomplete[side] = why
    to_b = {p.a: p.b for p in kernel_pairs}
    compared_b = set(to_b.values())
    b_cells = {(r.result.scenario, r.result.kernel, r.result.hierarchy): r
               for r in run_b.records}
    matched: set[tuple[str, str, str]] = set()
    for ra in run_a.records:
        a = ra.result
        if pairs and a.kernel not in to_b:
            continue
        key_b = (a.scenario, to_b.get(a.kernel, ""), a.hierarchy)
        rb = b_cells.get(key_b)
        if rb is None:
            cmp.only_in_a.append(OnlyIn(a.scenario, a.kernel, a.hierarchy, a.status))
            continue
        matched.add(key_b)
        _classify(cmp, ra, rb)
    for rb in run_b.records:
        b = rb.result
        key = (b.scenario, b.kernel, b.hierarchy)
        if key in matched or (pairs and b.kernel not in compared_b):
            continue
        cmp.only_in_b.append(OnlyIn(b.scenario, b.kernel, b.hierarchy, b.status))
    return cmp


def _classify(cmp: Comparison, ra: Record, rb: Record) -> None:
    a, b = ra.result, rb.result
    before, after = a.status, b.status

    def change(detail: str) -> CellChange:
        return CellChange(a.scenario, a.hierarchy, a.kernel, b.kernel, before, after, detail)

    if after in FAILING and before in (PASS, SKIP):
        cmp.regressions.append(change(_failure(b)))
    elif after in FAILING:
        cmp.still_failing.append(change(_failure(b)))
    elif before in FAILING and after == PASS:
        cmp.fixes.append(change(_failure(a)))
    elif after == SKIP and before != SKIP:
        cmp.new_skips.append(change(b.reason))
    elif before == SKIP and after == PASS:
        cmp.skips_gone.append(change(a.reason))
    else:
        cmp.unchanged += 1
    fa, fb = figures(a), figures(b)
    for name, va in fa.items():
        vb = fb.get(name)
        if vb is None or (name.startswith("sampled ") and not cmp.sampled):
            continue
        unit = figure(name, va).unit
        if figure_moved(va, vb, cmp.threshold, cmp.floors.get(unit, 0.0)):
            cmp.figures.append(FigureChange(a.scenario, a.hierarchy, a.kernel, b.kernel, name,
                                            unit, va, vb))


# --- views -------------------------------------------------------------------------------------

def to_json(cmp: Comparison) -> dict:
    doc = asdict(cmp)
    doc["regressed"] = cmp.regressed
    doc["by_hierarchy"] = cmp.by_hierarchy
    doc["summary"] = cmp.summary()
    for fig, change in zip(doc["figures"], cmp.figures):
        fig["percent"] = None if change.percent is None else round(change.percent, 2)
    return doc


def write_json(cmp: Comparison, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(cmp), indent=2) + "\n")


def render_text(cmp: Comparison) -> str:
    out = [f"compare {cmp.run_a} (A) -> {cmp.run_b} (B)"]
    for p in cmp.pairs:
        if p.a == p.b:
            out.append(f"  kernel {p.a}: matched by (scenario, kernel, hierarchy)")
        else:
            out.append(f"  kernel {p.a} ({p.spec_a}) -> {p.b} ({p.spec_b}): different kernels, "
                       f"matched by (scenario, hierarchy) [{p.how}]")
    for side, kernels in (("A", cmp.left_out_a), ("B", cmp.left_out_b)):
        if kernels:
            out.append(f"  left out of {side} (not in --pair): {', '.join(kernels)}")
    if not cmp.pairs:
        out.append("  no kernel of A pairs with one of B: use --pair A_KERNEL=B_KERNEL")
    for side, why in sorted(cmp.incomplete.items()):
        out.append(f"  run {side} did not finish, {why} (cells only in the other run may be "
                   "those)")

    def section(title: str, changes: list[CellChange]) -> None:
        if not changes:
            return
        out.extend(["", f"{title} ({len(changes)})"])
        for c in sorted(changes, key=lambda c: (c.scenario, c.kernel_a, c.hierarchy)):
            out.append(f"  {c.where()}: {c.before} -> {c.after}")
            if c.detail:
                out.append(f"      {c.detail}")

    section("REGRESSIONS", cmp.regressions)
    section("FIXES", cmp.fixes)
    section("NEW SKIPS", cmp.new_skips)
    section("SKIPS GONE", cmp.skips_gone)
    section("STILL FAILING", cmp.still_failing)
    for title, only in (("ONLY IN A", cmp.only_in_a), ("ONLY IN B", cmp.only_in_b)):
        if only:
            out.extend(["", f"{title} ({len(only)})"])
            out.extend(f"  {o.scenario} [{o.kernel} {o.hierarchy}]: {o.status}"
                       for o in sorted(only, key=lambda o: (o.scenario, o.kernel, o.hierarchy)))
    if cmp.figures:
        floors = ", ".join(f"{format_value(cmp.floors[u], u)} ({u})" for u in
                           dict.fromkeys(f.unit for f in cmp.figures) if u in cmp.floors)
        title = (f"FIGURES MOVED ({len(cmp.figures)}: by more than {cmp.threshold:g}% and "
                 f"more than {floors})")
        out.extend(["", title])
        for f in sorted(cmp.figures, key=lambda f: (f.scenario, f.kernel_a, f.hierarchy)):
            kernel = f.kernel_a if f.kernel_a == f.kernel_b else f"{f.kernel_a} -> {f.kernel_b}"
            pct = "from 0" if f.percent is None else f"{f.percent:+.1f}%"
            out.append(f"  {f.scenario} [{kernel} {f.hierarchy}] {f.figure}: "
                       f"{format_value(f.before, f.unit)} -> {format_value(f.after, f.unit)} "
                       f"({pct})")
    counts = [f"{k.replace('_', ' ')}: {n}" for k, n in cmp.summary().items()
              if n or k in ("regressions", "unchanged")]
    out.extend(["", f"summary: {', '.join(counts)}; "
                + ("REGRESSED" if cmp.regressed else "no regression")])
    return "\n".join(out) + "\n"
