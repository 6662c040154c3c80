"""The report as one HTML file: inline CSS and SVG (the memory usage plots with the limits),
no script, nothing fetched. Console logs are linked relative to the report's directory
(RUN_DIR/report.html by default)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from ..results import ERROR, FAIL, PASS, SKIP, Sample
from ..units import format_size
from .model import Difference, Report, human_size

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
.diff .why{color:#0b5394}
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
    parts += _html_referee(report)
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
                body += f'<div class="figs">{_e(cell.figures_line())}</div>'
            links = []
            if cell.console:
                links.append(f'<a href="{_e(report.link(cell.console, out_dir))}">'
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
    if d.explanation:
        items += f'<li class="why">{_e(d.explanation)}</li>'
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


def _html_referee(report: Report) -> list[str]:
    """The referee's judgements (`run --referee`): per scenario x selftest case and kernel,
    both verdicts; disagreements first."""
    if not report.referee:
        return []
    columns = [c for c in report.columns if c.hierarchy == "v2"]
    out = ['<h2 id="referee">Referee: the catalogue against the kernel\'s own selftests</h2>',
           (f"<p><b>{len(report.disagreements)}</b> disagreement(s) in "
           f"{sum(len(r.cells) for r in report.referee)} judgement(s). A disagreement: the "
           "scenario passes where the kernel's own test says the behaviour is broken, or the "
           "reverse.</p>"),
           '<table id="referee-table"><thead><tr><th>scenario vs selftest</th>'
           + "".join(f"<th>{_e(c.kernel)}</th>" for c in columns) + "</tr></thead><tbody>"]
    rows = sorted(report.referee, key=lambda r: all(c.status != FAIL for c in r.cells.values()))
    for row in rows:
        cells = []
        for c in columns:
            cell = row.cells.get(c.label)
            if cell is None:
                cells.append('<td class="cell missing">—</td>')
                continue
            if cell.status == FAIL:
                body = f'<span class="status">DISAGREE</span> {_e(cell.reason)}'
            elif cell.status == PASS and cell.checks:
                ch = cell.checks[0]
                body = (f'<span class="status">agree</span> {_e(ch.description)}: selftest '
                        f"{_e(ch.observed)}")
            else:
                body = f'<span class="status">{_e(cell.status)}</span> {_e(cell.reason)}'
            cells.append(f'<td class="cell {_e(cell.status)}">{body}</td>')
        name = row.scenario.removeprefix("referee/")
        out.append(f'<tr><td class="name">{_e(name)}</td>{"".join(cells)}</tr>')
    out.append("</tbody></table>")
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
            link = (f' · <a href="{_e(report.link(cell.console, out_dir))}">console log</a>'
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


def usage_svg(samples: dict[str, list[Sample]], limits: dict[str, dict[str, int]],
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
    t0 = min((p.t for pts in series.values() for p in pts), default=0.0)
    t1 = max((p.t for pts in series.values() for p in pts), default=1.0)
    span = (t1 - t0) or 1.0
    data_max = max((max(p.usage, p.swap or 0) for pts in series.values() for p in pts),
                   default=0)
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
        usage = " ".join(f"{x(p.t):.1f},{y(p.usage):.1f}" for p in pts)
        el.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{usage}">'
                  f"<title>memory usage of {_e(cg)}</title></polyline>")
        swap = [p for p in pts if p.swap is not None]
        if swap:
            pts_text = " ".join(f"{x(p.t):.1f},{y(p.swap):.1f}" for p in swap)
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
