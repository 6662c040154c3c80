"""`kharness report`: one run as a matrix (scenarios x kernel x hierarchy), with what differs.

The model comes first and is data (`build()`: dataclasses built from `results.jsonl` and
`run.json`); the renderers (`render_html`, `render_markdown`, `render_json`) only read it.

A row is marked when its scenario behaved differently between v1 and v2 on one kernel, or
between kernels on one hierarchy. Three kinds of difference are told apart, each with the
values per column:
- the outcome (pass / fail / skip / error, with the skip reason, the failed expectation or
  the error),
- one expectation's outcome where both cells ran (`metric swap_peak of hog in [16M, 64M]`
  skipped on 6.1 because memory.swap.peak does not exist there, passed on 6.12),
- a figure (harness/figures.py) that is off by more than the tolerance (10% by default, and
  more than a floor for its unit: 1 MiB, 0.1 s, 5 CPU points, so noise stays out). The
  sampled peaks are not compared: they depend on when the 100 ms sampler looked (the plots
  show them).
A difference the scenario itself asks for (it applies to v2 only, a `when` block) is marked
`by_design`. Kernel config options named in a reason (CONFIG_MEMCG_V1) are looked up in
run.json's flags of the kernels involved and quoted next to the difference.

The HTML is one file with inline CSS and SVG: no script, nothing fetched. Console logs are
linked relative to the report's directory (RUN_DIR/report.html by default).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cgroups.knobs import METRICS
from ..figures import figures
from ..results import ERROR, FAIL, PASS, SKIP, ScenarioResult
from ..rundir import RunDirError, read_run, to_result
from ..units import format_size

FORMATS = ("html", "md", "json")
DEFAULT_TOLERANCE = 10.0  # percent
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
    outcome: str  # pass, fail, skip
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
    status: str  # pass, fail, skip, error
    reason: str = ""
    failure_kind: str | None = None
    figures: list[Figure] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    machine: str = ""
    console: str | None = None  # the console log, relative to the run directory
    console_excerpt: str = ""
    duration: float = 0.0
    samples: dict[str, list] = field(default_factory=dict)  # cgroup -> [[t, usage, swap]]
    limits: dict[str, dict[str, int]] = field(default_factory=dict)

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
        return f"{self.between}: {self.what}{design}: {values}{extra}"


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


@dataclass
class Report:
    run_dir: str
    environment: Environment
    columns: list[Column]
    rows: list[Row]
    counts: dict[str, int]
    tolerance: float  # percent

    @property
    def differences(self) -> list[tuple[str, Difference]]:
        return [(row.scenario, d) for row in self.rows for d in row.differences]


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
    results = []
    for record in run.records:
        try:
            results.append(to_result(record.data))
        except TypeError as exc:
            raise ReportError(f"{run.jsonl}:{record.line}: not a result ({exc})") from None
    return results, run.info


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
    return Environment(
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
        skipped = c.get("skipped_reason")
        outcome = SKIP if skipped else PASS if c.get("passed") else FAIL
        checks.append(CheckOutcome(str(c.get("description", "")), outcome,
                                   str(c.get("expected", "")), str(c.get("observed", "")),
                                   str(skipped or "")))
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


# --- rendering --------------------------------------------------------------------------------

def default_output(run_dir: Path, fmt: str) -> Path:
    return run_dir / f"report.{fmt}"


def render(report: Report, fmt: str, out_dir: Path) -> str:
    """The report as text in `fmt`; links are made relative to `out_dir`."""
    if fmt == "html":
        return render_html(report, out_dir)
    if fmt == "md":
        return render_markdown(report, out_dir)
    if fmt == "json":
        return render_json(report)
    raise ValueError(f"unknown report format {fmt!r} (use one of {', '.join(FORMATS)})")


def render_json(report: Report) -> str:
    data = dataclasses.asdict(report)
    for row, row_data in zip(report.rows, data["rows"]):
        row_data["axes"] = row.axes
        for d, d_data in zip(row.differences, row_data["differences"]):
            d_data["text"] = d.text
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _link(report: Report, rel: str, out_dir: Path) -> str:
    target = Path(report.run_dir) / rel
    return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


def _cell_figures(cell: Cell, limit: int = 8) -> str:
    figs = cell.figures[:limit]
    more = len(cell.figures) - len(figs)
    text = ", ".join(f"{f.label} {f.text}" for f in figs)
    return text + (f", +{more} more" if more > 0 else "")


# markdown

def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report, out_dir: Path) -> str:
    env = report.environment
    lines = [f"# kharness report: {report.run_dir}", ""]
    lines.append(", ".join(f"{n} {s}" for s, n in report.counts.items())
                 + f" ({sum(report.counts.values())} results); "
                 f"{sum(1 for r in report.rows if r.axes)} of {len(report.rows)} scenarios "
                 f"differ between hierarchies or kernels")
    lines.append("")
    if env.run_json:
        lines.append(f"Started {env.started_at} on {env.host} ({env.host_kernel}); accelerator "
                     f"**{env.accel}**; {env.qemu}; Python {env.python}.")
        if env.argv:
            lines.append(f"Command: `{' '.join(env.argv)}`")
    else:
        lines.append(f"(no run.json in {report.run_dir}: the environment is unknown)")
    lines += ["", "## Kernels", ""]
    lines += _md_kernels(env)
    lines += ["", "## Matrix", "",
              "| scenario | differs | " + " | ".join(c.label for c in report.columns) + " |",
              "|---|---|" + "---|" * len(report.columns)]
    for row in report.rows:
        cells = []
        for c in report.columns:
            cell = row.cells.get(c.label)
            if cell is None:
                cells.append("—")
                continue
            text = f"**{cell.status}**"
            if cell.status in (SKIP, ERROR) and cell.reason:
                text += f": {cell.reason}"
            if cell.figures:
                text += f" · {_cell_figures(cell)}"
            if cell.console:
                text += f" · [console]({_link(report, cell.console, out_dir)})"
            cells.append(_md(text))
        mark = ", ".join(row.axes) if row.axes else ""
        lines.append(f"| {_md(row.scenario)} | {mark} | " + " | ".join(cells) + " |")
    lines += ["", "## Differences", ""]
    if not report.differences:
        lines.append("None: every scenario behaved the same in every column.")
    for row in report.rows:
        if not row.differences:
            continue
        lines.append(f"### {row.scenario}")
        lines.append("")
        for d in row.differences:
            design = " *(by the scenario's design)*" if d.by_design else ""
            lines.append(f"- {d.between}: {d.what}{design}")
            for col, val in d.values.items():
                lines.append(f"  - {col}: {_md(val)}")
            for note in d.config:
                lines.append(f"  - config: {note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _md_kernels(env: Environment) -> list[str]:
    if not env.kernels:
        return ["(none recorded)"]
    lines = ["| | " + " | ".join(k.release for k in env.kernels) + " |",
             "|---|" + "---|" * len(env.kernels)]
    rows = [("spec", [k.spec for k in env.kernels]),
            ("package", [f"{k.package} {k.package_version}".strip() for k in env.kernels]),
            ("config sha256", [(k.config_sha256 or "")[:16] for k in env.kernels]),
            ("build", [_build_text(k.build) for k in env.kernels])]
    for flag in sorted({f for k in env.kernels for f in k.flags}):
        mark = " (differs)" if flag in env.differing_flags else ""
        rows.append((f"CONFIG_{flag}{mark}", [k.flags.get(flag, "?") for k in env.kernels]))
    for name, values in rows:
        lines.append(f"| {name} | " + " | ".join(_md(v) or "—" for v in values) + " |")
    lines.append("")
    lines.append("Flags: y built in, m module, n not set, - no such option in this kernel "
                 "(MEMCG_V1/CPUSETS_V1 before 6.11: v1 comes with MEMCG/CPUSETS).")
    return lines


def _build_text(build: dict | None) -> str:
    if not build:
        return ""
    frags = ", ".join(str(f.get("path", f)) if isinstance(f, dict) else str(f)
                      for f in build.get("fragments") or [])
    source = build.get("source_identity") or build.get("source") or ""
    return f"{source}; fragments {frags}" if frags else str(source)


# HTML

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#202124}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;
border-bottom:1px solid #dadce0;padding-bottom:4px} h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse} td,th{border:1px solid #dadce0;padding:4px 6px;
vertical-align:top;text-align:left} th{background:#f1f3f4}
#matrix td.cell{min-width:150px;max-width:260px;font-size:12px}
.status{font-weight:600;text-transform:uppercase;font-size:11px;padding:1px 5px;
border-radius:3px;display:inline-block}
.pass .status{background:#1e8e3e;color:#fff} .fail .status{background:#d93025;color:#fff}
.skip .status{background:#9aa0a6;color:#fff} .error .status{background:#e37400;color:#fff}
td.pass{background:#e6f4ea} td.fail{background:#fce8e6} td.skip{background:#f8f9fa}
td.error{background:#fef7e0} td.missing{background:#fff;color:#9aa0a6}
.reason{color:#5f6368} .figs{color:#3c4043;margin-top:2px}
tr.differs td.name{border-left:5px solid #a142f4}
.badge{display:inline-block;background:#f3e8fd;color:#681da8;border-radius:3px;
padding:0 5px;font-size:11px;margin:1px 2px 1px 0}
.design{color:#80868b;font-size:11px}
.diff{margin:4px 0 10px} .diff ul{margin:2px 0 0 0;padding-left:20px}
.diff .cfg{color:#681da8}
.flags td.differs{background:#f3e8fd;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:12px} .plot{border:1px solid #dadce0;padding:6px}
.plot .title{font-size:12px;font-weight:600}
code,pre{font:12px ui-monospace,Menlo,Consolas,monospace} pre{background:#f8f9fa;
padding:6px;overflow:auto;max-height:300px}
.muted{color:#80868b} a{color:#1a73e8}
"""

_COLORS = ("#1a73e8", "#e8710a", "#188038", "#a142f4", "#d01884", "#12b5cb", "#5f6368")
_LIMIT_STYLE = {  # knob -> (colour, dash)
    "memory.max": ("#d93025", ""),
    "memory.high": ("#e37400", "6 3"),
    "memory.swap.max": ("#9334e6", "2 3"),
    "memory.low": ("#188038", "4 4"),
    "memory.min": ("#0d652d", "1 3"),
    "memory.soft_limit_in_bytes": ("#80868b", "8 4"),
}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def render_html(report: Report, out_dir: Path) -> str:
    env = report.environment
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>kharness report: {_e(report.run_dir)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>kharness report: <code>{_e(report.run_dir)}</code></h1>"]
    differing = sum(1 for r in report.rows if r.axes)
    parts.append('<p id="summary">' + ", ".join(
        f"<b>{n}</b> {s}" for s, n in report.counts.items())
        + f" ({sum(report.counts.values())} results); <b>{differing}</b> of {len(report.rows)} "
        "scenarios differ between hierarchies or kernels"
        + (f"; accelerator <b>{_e(env.accel)}</b>; {_e(env.qemu)}" if env.run_json else "")
        + "</p>")
    parts += _html_matrix(report, out_dir)
    parts += _html_differences(report)
    parts += _html_environment(report)
    parts += _html_details(report, out_dir)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_matrix(report: Report, out_dir: Path) -> list[str]:
    out = ["<h2>Matrix</h2>",
           '<table id="matrix"><thead><tr><th>scenario</th>'
           + "".join(f"<th>{_e(c.kernel)}<br>{_e(c.hierarchy)}"
                     f'<div class="muted">{_e(c.kernel_spec)}</div></th>'
                     for c in report.columns) + "</tr></thead><tbody>"]
    for row in report.rows:
        anchor = _slug(row.scenario)
        badges = "".join(f'<span class="badge">differs: {_e(a)}</span>' for a in row.axes)
        cls = ' class="differs"' if row.axes else ""
        cells = []
        for c in report.columns:
            cell = row.cells.get(c.label)
            if cell is None:
                cells.append('<td class="cell missing">not run</td>')
                continue
            body = f'<span class="status">{_e(cell.status)}</span>'
            if cell.status in (SKIP, ERROR) and cell.reason:
                short = cell.reason if len(cell.reason) <= 200 else cell.reason[:199] + "…"
                body += f' <span class="reason" title="{_e(cell.reason)}">{_e(short)}</span>'
            if cell.status == FAIL:
                failed = [ch for ch in cell.checks if ch.outcome == FAIL]
                body += "".join(f'<div class="reason">{_e(ch.description)}: expected '
                                f"{_e(ch.expected)}, observed {_e(ch.observed)}</div>"
                                for ch in failed)
            if cell.figures:
                body += f'<div class="figs">{_e(_cell_figures(cell))}</div>'
            links = []
            if cell.console:
                links.append(f'<a href="{_e(_link(report, cell.console, out_dir))}">'
                             "console</a>")
            if cell.samples:
                links.append(f'<a href="#{anchor}">plot</a>')
            if links:
                body += f'<div>{" · ".join(links)}</div>'
            cells.append(f'<td class="cell {_e(cell.status)}">{body}</td>')
        out.append(f"<tr{cls}><td class=\"name\"><a href=\"#{anchor}\">{_e(row.scenario)}</a>"
                   f"<div>{badges}</div></td>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return out


def _html_difference(d: Difference) -> str:
    design = ' <span class="design">(by the scenario\'s design)</span>' if d.by_design else ""
    items = "".join(f"<li><b>{_e(col)}</b>: {_e(val)}</li>" for col, val in d.values.items())
    items += "".join(f'<li class="cfg">config: {_e(n)}</li>' for n in d.config)
    return (f'<div class="diff">{_e(d.between)}: {_e(d.what)}{design}<ul>{items}</ul></div>')


def _html_differences(report: Report) -> list[str]:
    out = ['<h2 id="differences">Differences</h2>']
    if not report.differences:
        return out + ["<p>None: every scenario behaved the same in every column.</p>"]
    out.append(f'<p class="muted">Figures differ when they are more than '
               f"{report.tolerance:g}% apart (and past a floor for their unit: 1M, 0.1 s, "
               "5 CPU points; sampled peaks are left to the plots). Differences the scenario asks for (v2 only, a when block) are "
               "greyed and do not mark the row.</p>")
    for row in report.rows:
        if not row.differences:
            continue
        out.append(f'<h3><a href="#{_slug(row.scenario)}">{_e(row.scenario)}</a></h3>')
        out += [_html_difference(d) for d in row.differences if not d.by_design]
        out += [_html_difference(d) for d in row.differences if d.by_design]
    return out


def _html_environment(report: Report) -> list[str]:
    env = report.environment
    out = ['<h2 id="environment">Environment</h2>']
    if not env.run_json:
        return [*out, f"<p>No run.json in {_e(report.run_dir)}: the environment is unknown.</p>"]
    host = f"{env.host} ({env.host_kernel})"
    facts = [("accelerator", env.accel), ("QEMU", env.qemu), ("host", host),
             ("Python", env.python), ("started", env.started_at),
             ("command", " ".join(env.argv))]
    out.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>"
                                   for k, v in facts if v) + "</table>")
    if not env.kernels:
        return out
    out.append("<h3>Kernels</h3>")
    head = "".join(f"<th>{_e(k.release)}</th>" for k in env.kernels)
    rows = [("spec", [k.spec for k in env.kernels]),
            ("package", [f"{k.package} {k.package_version}".strip() for k in env.kernels]),
            ("config sha256", [(k.config_sha256 or "")[:16] for k in env.kernels])]
    body = "".join(f"<tr><th>{_e(n)}</th>" + "".join(f"<td><code>{_e(v)}</code></td>"
                                                       for v in vals) + "</tr>"
                   for n, vals in rows)
    for flag in sorted({f for k in env.kernels for f in k.flags}):
        cls = ' class="differs"' if flag in env.differing_flags else ""
        body += (f"<tr><th>CONFIG_{_e(flag)}</th>"
                 + "".join(f"<td{cls}>{_e(k.flags.get(flag, '?'))}</td>" for k in env.kernels)
                 + "</tr>")
    out.append(f'<table class="flags"><tr><th></th>{head}</tr>{body}</table>')
    out.append('<p class="muted">Flags: y built in, m module, n not set, - no such option in '
               "this kernel (MEMCG_V1/CPUSETS_V1 before 6.11: v1 comes with MEMCG/CPUSETS). "
               "Highlighted: differs between the kernels.</p>")
    for k in env.kernels:
        if not k.build:
            continue
        b = k.build
        frags = "".join(f"<li><code>{_e(f.get('path', ''))}</code> "
                        f"<span class=\"muted\">{_e(str(f.get('sha256', ''))[:16])}</span></li>"
                        if isinstance(f, dict) else f"<li>{_e(f)}</li>"
                        for f in b.get("fragments") or [])
        out.append(f"<h3>Build of {_e(k.spec)}</h3><table>"
                   f"<tr><th>source</th><td>{_e(b.get('source', ''))} "
                   f"<span class=\"muted\">{_e(b.get('source_identity', ''))}</span></td></tr>"
                   f"<tr><th>fragments</th><td><ul>{frags}</ul></td></tr>"
                   f"<tr><th>key</th><td><code>{_e(b.get('key', ''))}</code></td></tr>"
                   f"<tr><th>reproducer</th><td><code>{_e(b.get('reproducer', ''))}</code>"
                   "</td></tr></table>")
    return out


def _html_details(report: Report, out_dir: Path) -> list[str]:
    out = ['<h2 id="scenarios">Scenarios</h2>']
    for row in report.rows:
        out.append(f'<section id="{_slug(row.scenario)}"><h3>{_e(row.scenario)}</h3>')
        if row.description:
            out.append(f"<p>{_e(row.description)}</p>")
        for d in row.differences:
            out.append(_html_difference(d))
        plots = []
        for label, cell in row.cells.items():
            if cell.samples:
                plots.append(f'<div class="plot"><div class="title">{_e(label)}</div>'
                             f"{usage_svg(cell.samples, cell.limits)}</div>")
        if plots:
            out.append(f'<div class="plots">{"".join(plots)}</div>')
        items = []
        for label, cell in row.cells.items():
            link = (f' · <a href="{_e(_link(report, cell.console, out_dir))}">console log</a>'
                    if cell.console else "")
            items.append(f"<li><b>{_e(label)}</b>: {_e(cell.summary)}"
                         f' <span class="muted">({cell.duration:.1f} s'
                         f"{', ' + _e(cell.machine) if cell.machine else ''})</span>{link}"
                         + (f"<details><summary>console excerpt</summary><pre>"
                            f"{_e(cell.console_excerpt)}</pre></details>"
                            if cell.console_excerpt else "") + "</li>")
        out.append(f"<ul>{''.join(items)}</ul></section>")
    return out


def _ancestors(cgroup: str) -> list[str]:
    """"a/b" -> [".", "a", "a/b"]: the cgroups whose limits bound `cgroup`."""
    if cgroup in ("", "."):
        return ["."]
    parts = cgroup.split("/")
    return [".", *("/".join(parts[:i]) for i in range(1, len(parts) + 1))]


def _tick_step(top: float) -> int:
    """A power-of-two byte step giving 3 to 5 gridlines up to `top` (8M, 16M: exact sizes)."""
    step = 1024
    while step * 5 < top:
        step *= 2
    return step


def usage_svg(samples: dict[str, list], limits: dict[str, dict[str, int]],
              width: int = 460, plot_height: int = 150) -> str:
    """Memory (solid) and swap (dashed) usage over time per sampled cgroup, with the limits of
    those cgroups and their ancestors as horizontal lines. Inline SVG, no script."""
    series = {cg: pts for cg, pts in sorted(samples.items()) if pts}
    shown_limits: list[tuple[str, str, int]] = []  # (cgroup, knob, bytes)
    for cg in dict.fromkeys(a for c in series for a in _ancestors(c)):
        for knob, value in sorted((limits.get(cg) or {}).items()):
            shown_limits.append((cg, knob, value))
    off_rows = 1 if shown_limits else 0  # room for the limits above the plot, if any
    left, right, top = 50, 10, 10
    pw, ph = width - left - right, plot_height
    height = top + ph + 22 + 14 * (len(series) + off_rows)
    t0 = min((p[0] for pts in series.values() for p in pts), default=0.0)
    t1 = max((p[0] for pts in series.values() for p in pts), default=1.0)
    span = (t1 - t0) or 1.0
    data_max = max((max(p[1], p[2] or 0) for pts in series.values() for p in pts), default=0)
    # a limit far above what was used would flatten the curves: it is named, not drawn
    in_range = [v for _, _, v in shown_limits if v <= 4 * max(data_max, 1 << 20)]
    scale_max = max(max([data_max, *in_range]) * 1.1, 1 << 20)

    def x(t: float) -> float:
        return left + (t - t0) / span * pw

    def y(v: float) -> float:
        return top + ph - min(v, scale_max) / scale_max * ph

    el = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" '
           'font-size="10">'),
          (f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" '
           'stroke="#dadce0"/>')]
    step = _tick_step(scale_max)
    for i in range(int(scale_max // step) + 1):
        v = i * step
        yy = y(v)
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" '
                  'stroke="#e8eaed"/>')
        el.append(f'<text x="{left - 4}" y="{yy + 3:.1f}" text-anchor="end" fill="#5f6368">'
                  f"{_e(format_size(v))}</text>")
    axis_y = top + ph + 12
    el.append(f'<text x="{left}" y="{axis_y}" fill="#5f6368">0 s</text>')
    el.append(f'<text x="{left + pw / 2:.0f}" y="{axis_y}" text-anchor="middle" '
              f'fill="#5f6368">{span / 2:.2g} s</text>')
    el.append(f'<text x="{left + pw}" y="{axis_y}" text-anchor="end" fill="#5f6368">'
              f"{span:.2g} s</text>")
    off_scale = []
    for cg, knob, value in shown_limits:
        color, dash = _LIMIT_STYLE.get(knob, ("#5f6368", "3 3"))
        name = f"{knob}{'' if cg == '.' else ' ' + cg} {human_size(value)}"
        if value > scale_max:
            off_scale.append(name)
            continue
        yy = y(value)
        el.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" '
                  f'stroke="{color}" stroke-width="1.5"'
                  + (f' stroke-dasharray="{dash}"' if dash else "") + f"><title>{_e(name)}"
                  "</title></line>")
        el.append(f'<text x="{left + pw - 3}" y="{yy - 3:.1f}" text-anchor="end" '
                  f'fill="{color}">{_e(name)}</text>')
    legend_y = axis_y + 16
    for i, (cg, pts) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        usage = " ".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in pts)
        el.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{usage}">'
                  f"<title>memory usage of {_e(cg)}</title></polyline>")
        swap = [p for p in pts if len(p) > 2 and p[2] is not None]
        if swap:
            pts_text = " ".join(f"{x(p[0]):.1f},{y(p[2]):.1f}" for p in swap)
            el.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                      f'stroke-dasharray="5 3" points="{pts_text}"><title>swap usage of '
                      f"{_e(cg)}</title></polyline>")
        ly = legend_y + 14 * i
        el.append(f'<line x1="{left}" x2="{left + 18}" y1="{ly - 3}" y2="{ly - 3}" '
                  f'stroke="{color}" stroke-width="2"/>')
        el.append(f'<text x="{left + 22}" y="{ly}" fill="#3c4043">{_e(cg)} memory</text>')
        if swap:
            el.append(f'<line x1="{left + 130}" x2="{left + 148}" y1="{ly - 3}" y2="{ly - 3}" '
                      f'stroke="{color}" stroke-width="1.5" stroke-dasharray="5 3"/>')
            el.append(f'<text x="{left + 152}" y="{ly}" fill="#3c4043">{_e(cg)} swap</text>')
    if off_scale:
        el.append(f'<text x="{left}" y="{legend_y + 14 * len(series)}" fill="#5f6368">'
                  f"above the plot: {_e(', '.join(off_scale))}</text>")
    el.append("</svg>")
    return "".join(el)
