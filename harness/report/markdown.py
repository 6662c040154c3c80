"""The report as markdown: the summary, the environment, the kernels and their config flags,
the matrix (a cell: its outcome, figures and console link) and the differences per scenario."""

from __future__ import annotations

from pathlib import Path

from ..results import ERROR, FAIL, PASS, SKIP
from .model import Cell, Environment, Report


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
                text += f" · {cell.figures_line()}"
            if cell.console:
                text += f" · [console]({report.link(cell.console, out_dir)})"
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
            if d.explanation:
                lines.append(f"  - {_md(d.explanation)}")
        lines.append("")
    lines += _md_referee(report)
    return "\n".join(lines).rstrip() + "\n"


def _md_referee(report: Report) -> list[str]:
    """The referee's judgements (`run --referee`), disagreements first."""
    if not report.referee:
        return []
    lines = ["## Referee: the catalogue against the kernel's own selftests", "",
             (f"{len(report.disagreements)} disagreement(s) in "
              f"{sum(len(r.cells) for r in report.referee)} judgement(s)."), "",
             "| scenario vs selftest | " + " | ".join(c.label for c in report.columns
                                                    if c.hierarchy == "v2") + " |",
             "|---|" + "---|" * sum(c.hierarchy == "v2" for c in report.columns)]
    rows = sorted(report.referee, key=lambda r: all(c.status != FAIL for c in r.cells.values()))
    for row in rows:
        cells = []
        for c in report.columns:
            if c.hierarchy != "v2":
                continue
            cell = row.cells.get(c.label)
            cells.append(_md(_referee_text(cell)) if cell else "—")
        lines.append(f"| {_md(row.scenario.removeprefix('referee/'))} | " + " | ".join(cells)
                     + " |")
    return lines + [""]


def _referee_text(cell: Cell) -> str:
    if cell.status == FAIL:
        return f"**DISAGREE**: {cell.reason}"
    if cell.status == PASS and cell.checks:
        ch = cell.checks[0]
        return f"agree: {ch.description}: selftest {ch.observed}"
    return f"{cell.status}: {cell.reason}"


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
