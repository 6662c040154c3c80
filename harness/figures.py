"""The observed figures of one scenario result, as numbers: what a report shows in a matrix
cell and what `compare` watches for drift between runs.

Names:
- `metric NAME of CGROUP` for a checked metric (`metric oom_kill of hog`: 0),
- `step STEP FIELD` for a checked step field (`step hog cpu_s`: 4.042),
- `sampled usage peak of CGROUP` / `sampled swap peak of CGROUP` from the samples the runner
  took while the steps ran (bytes),
- `step STEP cpu_pct`: the CPU a step's workload used, in percent of one CPU, from the
  `cpu_s` and `wall_s` it printed (cpuhog), checked or not,
- `io read rate of CGROUP`: the checked `io_read_bytes` of a cgroup over the time its run
  steps took (bytes per second).
Checks whose observed value is not a number (errno names, file contents) are left out.
"""

from __future__ import annotations

import re

from .results import ScenarioResult

_METRIC = re.compile(r"^metric (\w+) of (\S+) ")
_STEP = re.compile(r"^step (\S+) (\w+) ")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_IO_READ = re.compile(r"^metric io_read_bytes of (\S+)$")


def number(observed: str) -> float | None:
    """`33554432 (32M)` -> 33554432.0; `0.613927` -> 0.613927; `EAGAIN`, `` -> None."""
    head = (observed or "").split(" ", 1)[0]
    return float(head) if _NUMBER.match(head) else None


def figures(result: ScenarioResult) -> dict[str, float]:
    """Figures of a result, in a stable order: checked metrics and step fields first, then the
    sampled peaks."""
    out: dict[str, float] = {}
    for check in result.checks:
        if check.skipped_reason:
            continue
        value = number(check.observed)
        if value is None:
            continue
        m = _METRIC.match(check.description)
        if m:
            out.setdefault(f"metric {m.group(1)} of {m.group(2)}", value)
            continue
        m = _STEP.match(check.description)
        if m and m.group(2) not in ("exit_status", "signal"):
            out.setdefault(f"step {m.group(1)} {m.group(2)}", value)
    for cgroup, samples in sorted(result.samples.items()):
        if not samples:
            continue
        out[f"sampled usage peak of {cgroup}"] = float(max(s.usage for s in samples))
        swaps = [s.swap for s in samples if s.swap is not None]
        if swaps:
            out[f"sampled swap peak of {cgroup}"] = float(max(swaps))
    steps = result.run_steps()
    for step in steps:
        cpu = number(step.fields.get("cpu_s", ""))
        wall = number(step.fields.get("wall_s", ""))
        if cpu is not None and wall:
            out[f"step {step.name} cpu_pct"] = round(100 * cpu / wall, 1)
    for name, value in list(out.items()):
        m = _IO_READ.match(name)
        if not m:
            continue
        cgroup = m.group(1)
        seconds = sum(s.duration or 0.0 for s in steps
                      if (s.cgroup or ".") == cgroup and s.command)
        if seconds > 0:
            out[f"io read rate of {cgroup}"] = value / seconds
    return out
