"""`kharness report`: one run as a matrix (scenarios x kernel x hierarchy), with what differs.

The model comes first and is data (`build()` in model.py: dataclasses built from
`results.jsonl` and `run.json`); the renderers (`render_html` in html.py, `render_markdown` in
markdown.py, `render_json` here) only read it.

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
import json
from pathlib import Path

from .html import render_html, usage_svg
from .markdown import render_markdown
from .model import (
    DEFAULT_TOLERANCE,
    Cell,
    CheckOutcome,
    Column,
    Difference,
    Environment,
    Figure,
    KernelInfo,
    Report,
    ReportError,
    Row,
    build,
    figure,
    format_value,
    human_size,
    load_run,
)

FORMATS = ("html", "md", "json")

__all__ = [
    "DEFAULT_TOLERANCE", "FORMATS", "Cell", "CheckOutcome", "Column", "Difference",
    "Environment", "Figure", "KernelInfo", "Report", "ReportError", "Row", "build",
    "default_output", "figure", "format_value", "human_size", "load_run", "render",
    "render_html", "render_json", "render_markdown", "usage_svg",
]


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
    """The model as JSON: its dataclasses as objects, samples as [t, usage, swap] lists (as in
    results.jsonl), with each row's axes and each difference's text."""
    data = dataclasses.asdict(report)
    for row, row_data in zip(report.rows, data["rows"]):
        row_data["axes"] = row.axes
        for d, d_data in zip(row.differences, row_data["differences"]):
            d_data["text"] = d.text
        for label, cell in row.cells.items():
            row_data["cells"][label]["samples"] = {
                cgroup: [s.to_list() for s in samples] for cgroup, samples in cell.samples.items()}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"
