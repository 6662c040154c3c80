"""The report's model: one run directory as data (`build()`), which the renderers
(harness/report/html.py, markdown.py and the JSON view) only read.

Rows are scenarios, columns kernel x hierarchy; a row's differences are found here (see the
package's docstring for the three kinds, the tolerance and `by_design`), and so are the figures'
units and formatting, which `kharness compare` shares.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cgroups.knobs import METRICS
from ..figures import figures
from ..results import ERROR, FAIL, PASS, SKIP, Sample, ScenarioResult, Status
from ..rundir import RunDirError, read_run

DEFAULT_TOLERANCE = 10.0  # percent
SELFTEST_PREFIX = "selftest/"
REFEREE_PREFIX = "referee/"  # harness/referee.py's cells
STATUSES = (PASS, FAIL, SKIP, ERROR)

# Reasons that come from the scenario's own scope (runner._static_skip, a `when` block):
# the difference is what the scenario asks for, not something the kernel or hierarchy did.
_BY_DESIGN = re.compile(r"^(the scenario applies to |does not apply to |kernel \S+ does not "
                        r"satisfy )")
_CONFIG = re.compile(r"\bCONFIG_([A-Z0-9_]+)")
# a step check whose expected value is a size: "step reclaim current in [24297K, 36295K]"
_STEP_SIZED = re.compile(r"^(step \S+ \w+) .*\d[KMGT]\b")
# figure units: minimum absolute difference that counts, besides the relative tolerance
_FLOORS = {"bytes": float(1 << 20), "bytes/s": float(64 << 10), "seconds": 0.1,
           "percent": 5.0, "count": 0.0, "number": 0.0}


class ReportError(Exception):
    """A run directory that cannot be reported on: the message names the file."""


# --- the model --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    kernel: str  # release
    kernel_spec: str
    hierarchy: str

    @property
    def label(self) -> str:
        return f"{self.kernel} {self.hierarchy}"


@dataclass
class Figure:
    name: str  # as harness/figures.py names it: "metric oom_kill of hog"
    value: float
    unit: str  # bytes, bytes/s, seconds, percent, count, number
    label: str  # short, for a cell: "oom_kill(hog)"
    text: str  # the value formatted: "32.0M", "1", "0.61 s"


@dataclass
class CheckOutcome:
    description: str
    outcome: Status  # pass, fail, skip
    expected: str
    observed: str
    reason: str = ""  # why it was skipped

    @property
    def text(self) -> str:
        if self.outcome == SKIP:
            return f"skip ({self.reason})"
        if self.outcome == FAIL:
            return f"fail (expected {self.expected}, observed {self.observed or 'nothing'})"
        return f"pass (observed {self.observed})" if self.observed else "pass"


@dataclass
class Cell:
    column: str  # Column.label
    status: Status
    reason: str = ""
    failure_kind: str | None = None
    figures: list[Figure] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    machine: str = ""
    console: str | None = None  # the console log, relative to the run directory
    console_excerpt: str = ""
    duration: float = 0.0
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # cgroup -> samples
    limits: dict[str, dict[str, int]] = field(default_factory=dict)

    def figures_line(self, limit: int = 8) -> str:
        """The first `limit` figures in one line: "oom_kill(hog) 1, peak(hog) 32M, +2 more"."""
        figs = self.figures[:limit]
        more = len(self.figures) - len(figs)
        text = ", ".join(f"{f.label} {f.text}" for f in figs)
        return text + (f", +{more} more" if more > 0 else "")

    @property
    def summary(self) -> str:
        """What the cell showed, in one line: the outcome and why."""
        if self.status == SKIP:
            return f"skip: {self.reason}"
        if self.status == ERROR:
            return f"error ({self.failure_kind or 'error'}): {self.reason}"
        if self.status == FAIL:
            failed = [c for c in self.checks if c.outcome == FAIL]
            return "fail: " + "; ".join(f"{c.description}: expected {c.expected}, observed "
                                        f"{c.observed or 'nothing'}" for c in failed)
        return self.status


@dataclass
class Difference:
    axis: str  # "hierarchy" (v1 vs v2 on one kernel) or "kernel" (kernels on one hierarchy)
    scope: str  # the kernel release (hierarchy axis) or the hierarchy (kernel axis)
    kind: str  # outcome, check, figure
    subject: str  # "outcome", the expectation's description, or the figure's name
    values: dict[str, str]  # Column.label -> what that cell showed
    by_design: bool = False  # the scenario's scope says so (v2 only, a `when` block)
    config: list[str] = field(default_factory=list)  # "CONFIG_MEMCG_V1: 6.1.0-56-amd64 -, ..."
    # what the difference is, when the model knows: a selftest verdict that changed between
    # kernels running the same binary is the kernels' difference, not the harness's
    explanation: str = ""

    @property
    def between(self) -> str:
        if self.axis == "hierarchy":
            return f"v1 vs v2 on {self.scope}"
        kernels = [label.rsplit(" ", 1)[0] for label in self.values]
        return f"{' vs '.join(kernels)} on {self.scope}"

    @property
    def what(self) -> str:
        return {"outcome": "outcome", "check": f"expectation `{self.subject}`",
                "figure": f"figure {self.subject}"}[self.kind]

    @property
    def text(self) -> str:
        values = " vs ".join(f"{col}: {val}" for col, val in self.values.items())
        extra = f" [{'; '.join(self.config)}]" if self.config else ""
        design = " (by the scenario's design)" if self.by_design else ""
        why = f" ({self.explanation})" if self.explanation else ""
        return f"{self.between}: {self.what}{design}: {values}{extra}{why}"


@dataclass
class Row:
    scenario: str
    description: str
    cells: dict[str, Cell]  # Column.label -> cell; a column the run did not record is absent
    differences: list[Difference] = field(default_factory=list)

    @property
    def axes(self) -> list[str]:
        """How the row differs: "v1/v2", "kernels" (only differences not by design)."""
        names = {"hierarchy": "v1/v2", "kernel": "kernels"}
        found = {d.axis for d in self.differences if not d.by_design}
        return [names[a] for a in ("hierarchy", "kernel") if a in found]

    @property
    def has_samples(self) -> bool:
        return any(c.samples for c in self.cells.values())


@dataclass
class KernelInfo:
    spec: str
    release: str
    package: str = ""
    package_version: str = ""
    config_sha256: str | None = None
    flags: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] | None = None


@dataclass
class Environment:
    """What explains differences, from run.json."""

    run_json: bool  # whether run.json was there
    started_at: str = ""
    host: str = ""
    host_kernel: str = ""
    python: str = ""
    qemu: str = ""
    accel: str = ""
    argv: list[str] = field(default_factory=list)
    kernels: list[KernelInfo] = field(default_factory=list)
    # CONFIG flags whose value differs between the kernels: flag -> release -> value
    differing_flags: dict[str, dict[str, str]] = field(default_factory=dict)
    # where each kernel's selftest binaries came from (run.json `selftests` or `referee`):
    # release -> "linux-source-6.12 6.12.118-1~deb12u1"
    selftest_sources: dict[str, str] = field(default_factory=dict)


@dataclass
class Report:
    run_dir: str
    environment: Environment
    columns: list[Column]
    rows: list[Row]
    counts: dict[Status, int]
    tolerance: float  # percent

    @property
    def differences(self) -> list[tuple[str, Difference]]:
        return [(row.scenario, d) for row in self.rows for d in row.differences]

    @property
    def referee(self) -> list[Row]:
        """The referee's judgements (`run --referee`): a row per scenario x selftest case."""
        return [row for row in self.rows if row.scenario.startswith(REFEREE_PREFIX)]

    @property
    def disagreements(self) -> list[tuple[str, Cell]]:
        return [(row.scenario, cell) for row in self.referee for cell in row.cells.values()
                if cell.status == FAIL]

    def link(self, rel: str, out_dir: Path) -> str:
        """A file of the run directory (a console log) as a link from `out_dir`."""
        target = Path(self.run_dir) / rel
        return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


# --- building the model -----------------------------------------------------------------------

def load_run(run_dir: Path) -> tuple[list[ScenarioResult], dict]:
    """The results and run.json ({} when absent), read by harness/rundir.py. ReportError
    naming the file (and line) for anything unreadable."""
    try:
        run = read_run(run_dir)
    except RunDirError as exc:
        raise ReportError(str(exc)) from None
    if not run.records:
        raise ReportError(f"{run.jsonl}: no results in it (the run recorded no scenario yet)")
    return run.results(), run.info


def build(run_dir: Path, tolerance: float = DEFAULT_TOLERANCE) -> Report:
    """The report model of one run directory."""
    results, info = load_run(run_dir)
    env = _environment(info)
    columns = _columns(results, env)
    by_scenario: dict[str, dict[str, ScenarioResult]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, {})[Column(r.kernel, r.kernel_spec,
                                                      r.hierarchy).label] = r
    order = {name: i for i, name in enumerate(info.get("scenarios") or [])}
    rows = []
    for name in sorted(by_scenario, key=lambda s: (order.get(s, len(order)), s)):
        cells = {label: _cell(r, run_dir) for label, r in by_scenario[name].items()}
        description = next((r.description for r in by_scenario[name].values()
                            if r.description), "")
        row = Row(name, description, {c.label: cells[c.label] for c in columns
                                      if c.label in cells})
        row.differences = _differences(row, columns, env, tolerance)
        rows.append(row)
    counts = {s: 0 for s in STATUSES}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return Report(str(run_dir), env, columns, rows, counts, tolerance)


def _environment(info: dict) -> Environment:
    kernels = []
    for k in info.get("kernels") or []:
        kernels.append(KernelInfo(
            spec=str(k.get("spec", "")), release=str(k.get("release", "")),
            package=str(k.get("package") or ""),
            package_version=str(k.get("package_version") or ""),
            config_sha256=k.get("config_sha256"),
            flags={str(a): str(b) for a, b in (k.get("flags") or {}).items()},
            build=k.get("build") or None))
    differing: dict[str, dict[str, str]] = {}
    if len(kernels) > 1:
        for flag in sorted({f for k in kernels for f in k.flags}):
            values = {k.release: k.flags.get(flag, "?") for k in kernels}
            if len(set(values.values())) > 1:
                differing[flag] = values
    sources = {}
    for entry in (info.get("selftests") or []) + (info.get("referee") or []):
        if isinstance(entry, dict) and entry.get("kernel"):
            sources[str(entry["kernel"])] = str(entry.get("identity") or entry.get("source", ""))
    return Environment(
        selftest_sources=sources,
        run_json=bool(info), started_at=str(info.get("started_at", "")),
        host=str(info.get("host", "")), host_kernel=str(info.get("host_kernel", "")),
        python=str(info.get("python", "")), qemu=str(info.get("qemu", "")),
        accel=str(info.get("accel", "")), argv=[str(a) for a in info.get("argv") or []],
        kernels=kernels, differing_flags=differing)


def _columns(results: list[ScenarioResult], env: Environment) -> list[Column]:
    """Kernels in run.json's order (then as they appear), hierarchies v1 before v2."""
    kernel_order = {k.release: i for i, k in enumerate(env.kernels)}
    seen: dict[tuple[str, str], Column] = {}
    first: dict[str, int] = {}
    for i, r in enumerate(results):
        first.setdefault(r.kernel, i)
        seen.setdefault((r.kernel, r.hierarchy), Column(r.kernel, r.kernel_spec, r.hierarchy))
    return sorted(seen.values(), key=lambda c: (
        kernel_order.get(c.kernel, len(kernel_order)), first[c.kernel], c.hierarchy))


def _cell(r: ScenarioResult, run_dir: Path) -> Cell:
    console = None
    if r.machine:
        rel = Path("machines") / r.machine / "console.log"
        if (run_dir / rel).is_file():
            console = rel.as_posix()
    checks = []
    for c in r.checks:
        outcome = SKIP if c.skipped_reason else PASS if c.passed else FAIL
        checks.append(CheckOutcome(str(c.description), outcome, str(c.expected),
                                   str(c.observed), str(c.skipped_reason or "")))
    sized = {m.group(1) for c in checks if (m := _STEP_SIZED.match(c.description))}
    figs = [figure(name, value, name in sized) for name, value in figures(r).items()]
    return Cell(column=Column(r.kernel, r.kernel_spec, r.hierarchy).label, status=r.status,
                reason=r.reason, failure_kind=r.failure_kind, figures=figs, checks=checks,
                machine=r.machine, console=console, console_excerpt=r.console_excerpt,
                duration=r.duration, samples=r.samples, limits=r.limits)


def figure(name: str, value: float, sized: bool = False) -> Figure:
    """A figure with its unit, a short label and its value formatted. `sized`: a step field
    whose expectation is written as a size (`current in [24M, 36M]`), so bytes."""
    unit, label = "number", name
    m = re.match(r"^metric (\w+) of (\S+)$", name)
    if m:
        metric = METRICS.get(m.group(1))
        unit = {"bytes": "bytes", "seconds": "seconds", "count": "count",
                "bool": "count"}.get(metric.unit if metric else "", "number")
        label = f"{m.group(1)}({m.group(2)})"
    elif m := re.match(r"^sampled (usage|swap) peak of (\S+)$", name):
        unit, label = "bytes", f"sampled {m.group(1)} peak({m.group(2)})"
    elif m := re.match(r"^io read rate of (\S+)$", name):
        unit, label = "bytes/s", f"io read({m.group(1)})"
    elif m := re.match(r"^step (\S+) cpu_pct$", name):
        unit, label = "percent", f"{m.group(1)} cpu"
    elif m := re.match(r"^step (\S+) (\w+)$", name):
        field_ = m.group(2)
        unit = ("seconds" if field_ in ("duration", "cpu_s", "wall_s")
                else "bytes" if sized else "number")
        label = f"{m.group(1)}.{field_}"
    return Figure(name, value, unit, label, format_value(value, unit))


def human_size(n: float) -> str:
    """Bytes for reading: `32M` when exact, else one decimal in the largest unit (`32.6M`)."""
    n = int(n)
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if abs(n) >= mult:
            return f"{n // mult}{unit}" if n % mult == 0 else f"{n / mult:.1f}{unit}"
    return str(n)


def format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        return human_size(value)
    if unit == "bytes/s":
        return f"{human_size(value)}/s"
    if unit == "seconds":
        return f"{value:.3g} s" if value < 100 else f"{value:.0f} s"
    if unit == "percent":
        return f"{value:.0f}%"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _differences(row: Row, columns: list[Column], env: Environment,
                 tolerance: float) -> list[Difference]:
    groups: list[tuple[str, str, list[Column]]] = []
    for kernel in dict.fromkeys(c.kernel for c in columns):
        groups.append(("hierarchy", kernel, [c for c in columns if c.kernel == kernel]))
    for hierarchy in sorted({c.hierarchy for c in columns}):
        groups.append(("kernel", hierarchy, [c for c in columns if c.hierarchy == hierarchy]))
    out: list[Difference] = []
    for axis, scope, cols in groups:
        cells = [row.cells[c.label] for c in cols if c.label in row.cells]
        if len(cells) < 2:
            continue
        found: list[Difference] = []
        if len({c.status for c in cells}) > 1:
            found.append(Difference(
                axis, scope, "outcome", "outcome", {c.column: c.summary for c in cells},
                by_design=any(c.status == SKIP and _BY_DESIGN.match(c.reason)
                              for c in cells)))
        ran = [c for c in cells if c.status in (PASS, FAIL)]
        if len(ran) == len(cells):
            found += _check_differences(axis, scope, ran)
            found += _figure_differences(axis, scope, ran, tolerance)
        for d in found:
            d.config = _config_notes(d, env)
            if axis == "kernel" and row.scenario.startswith(SELFTEST_PREFIX):
                d.explanation = _selftest_explanation(d, env)
        out += found
    return out


def _check_differences(axis: str, scope: str, cells: list[Cell]) -> list[Difference]:
    out = []
    names = list(dict.fromkeys(c.description for cell in cells for c in cell.checks))
    for name in names:
        per = {cell.column: next((c for c in cell.checks if c.description == name), None)
               for cell in cells}
        outcomes = {c.outcome if c else None for c in per.values()}
        if len(outcomes) < 2:
            continue
        values = {col: c.text if c else "not checked" for col, c in per.items()}
        by_design = any(c and c.outcome == SKIP and _BY_DESIGN.match(c.reason)
                        for c in per.values())
        out.append(Difference(axis, scope, "check", name, values, by_design=by_design))
    return out


def _figure_differences(axis: str, scope: str, cells: list[Cell],
                        tolerance: float) -> list[Difference]:
    out = []
    by_cell = [{f.name: f for f in cell.figures} for cell in cells]
    for name in by_cell[0]:
        if name.startswith("sampled "):
            continue  # when the 100 ms sampler looked, not the kernel: the plots show them
        if any(name not in figs for figs in by_cell[1:]):
            continue  # a check that ran in one cell only: a check difference says why
        figs = [figs[name] for figs in by_cell]
        values = [f.value for f in figs]
        lo, hi = min(values), max(values)
        spread = hi - lo
        if spread <= _FLOORS.get(figs[0].unit, 0.0):
            continue
        if spread <= tolerance / 100 * max(abs(lo), abs(hi)):
            continue
        out.append(Difference(axis, scope, "figure", name,
                              {cell.column: f.text for cell, f in zip(cells, figs)}))
    return out


def _selftest_explanation(d: Difference, env: Environment) -> str:
    """Why a selftest's verdict differs between kernels: the kernels, when the same binary
    ran on all of them (the default: the newest source's tests); else possibly the tests."""
    releases = [label.rsplit(" ", 1)[0] for label in d.values]
    sources = {env.selftest_sources.get(r) for r in releases}
    if len(sources) == 1 and None not in sources:
        return (f"a kernel difference: the same test binary, built from {sources.pop()}, "
                "ran on each kernel, so the verdict changed with the kernel, not with the "
                "test or the harness")
    if None in sources:
        return "where the tests came from is not in run.json: the kernels or the tests differ"
    return ("each kernel ran the selftests of its own source (--own-source): the kernels or "
            "the tests differ")


def _config_notes(d: Difference, env: Environment) -> list[str]:
    """CONFIG_X named in a difference, with the value each of its kernels has in run.json."""
    notes = []
    names = dict.fromkeys(_CONFIG.findall(" ".join(d.values.values())))
    releases = list(dict.fromkeys(label.rsplit(" ", 1)[0] for label in d.values))
    flags = {k.release: k.flags for k in env.kernels}
    for name in names:
        have = [f"{rel} {flags[rel][name]}" for rel in releases
                if rel in flags and name in flags[rel]]
        if have:
            notes.append(f"CONFIG_{name}: " + ", ".join(have))
    return notes
