"""`kharness merge RUN_DIR... --out DIR`: join runs (the shards of `run --shard I/N`, or runs on
different kernels) into one results directory, as if one run had made it:

- results.jsonl: the inputs' results in the order given, written back as they were read
  (ResultsWriter; fields a newer kharness wrote are kept); the same cell (scenario, kernel,
  hierarchy) in two inputs is refused, naming both;
- machines/: every input's boot directories copied; a name already taken (two shards both
  have an m01-<release>-v2-boot1) gets the input's shard (`-shard2`, else `-run2`) appended,
  and the results' `machine` field follows the rename;
- run.json: the kernels' union, the scenarios' union, the environment when the inputs agree on
  it, and `shards`: each input with its directory, shard, argv and environment;
- junit.xml rendered again from the merged results, and report.html (`kharness report`).

Shards of one sharded run are checked for completeness (every I of N there, their scenarios
adding up to the run's): a gap is a warning, the merge still happens.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .output import append_empty
from .results import ResultsWriter, ScenarioResult
from .rundir import CellKey, RunDir, RunDirError, read_run

ENVIRONMENT = ("host", "host_kernel", "python", "qemu", "accel")


@dataclass
class Merged:
    out: Path
    inputs: list[Path]
    results: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    renamed: list[tuple[Path, str, str]] = field(default_factory=list)  # input, old, new
    warnings: list[str] = field(default_factory=list)
    report: Path | None = None


def _check_out(out: Path, runs: list[RunDir]) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"--out {out}: exists and is not an empty directory; give a new one")
    real = out.resolve()
    for run in runs:
        src = run.path.resolve()
        if real == src or src in real.parents:
            raise RunDirError(f"--out {out}: inside the input {run.path}")


def _check_inputs(runs: list[RunDir]) -> None:
    seen: dict[Path, Path] = {}
    for run in runs:
        real = run.path.resolve()
        if real in seen:
            raise RunDirError(f"{run.path}: given twice (also as {seen[real]})")
        seen[real] = run.path
    first: dict[CellKey, tuple[RunDir, int]] = {}
    for run in runs:
        for record in run.records:
            if record.key in first:
                other, line = first[record.key]
                raise RunDirError(
                    f"{run.jsonl}:{record.line}: {record.key} is also in "
                    f"{other.jsonl}:{line}; the runs overlap: merge each cell once")
            first[record.key] = (run, record.line)


def _machine_names(runs: list[RunDir]) -> dict[tuple[int, str], str]:
    """(input index, boot directory) -> its name in the merged run."""
    taken: set[str] = set()
    names: dict[tuple[int, str], str] = {}
    for i, run in enumerate(runs):
        machines = run.path / "machines"
        if not machines.is_dir():
            continue
        shard = run.shard()
        suffix = f"-shard{shard.split('/')[0]}" if shard else f"-run{i + 1}"
        for d in sorted(p.name for p in machines.iterdir() if p.is_dir()):
            name = d
            n = 1
            while name in taken:
                name = f"{d}{suffix}" + (f".{n}" if n > 1 else "")
                n += 1
            taken.add(name)
            names[(i, d)] = name
    return names


def _common(values: list) -> object:
    unique = list(dict.fromkeys(v for v in values if v not in (None, "")))
    if len(unique) <= 1:
        return unique[0] if unique else ""
    return ", ".join(str(v) for v in unique)


def _completeness(runs: list[RunDir]) -> list[str]:
    """Warnings about shards of a sharded run that are not all there."""
    groups: dict[tuple, list[RunDir]] = {}
    for run in runs:
        shard = run.info.get("shard")
        if run.shard() is None:
            continue
        kernels = tuple(sorted(k.get("spec", "") for k in run.info.get("kernels", [])))
        key = (shard.get("count"), kernels, tuple(run.info.get("hierarchies") or ()),
               tuple(shard.get("all_scenarios") or ()))
        groups.setdefault(key, []).append(run)
    warnings = []
    for (count, kernels, _, everything), members in groups.items():
        what = f"kernels {', '.join(kernels) or '?'}"
        have = {run.info["shard"]["index"] for run in members}
        missing = [f"{i}/{count}" for i in range(1, (count or 0) + 1) if i not in have]
        if missing:
            warnings.append(f"shard(s) {', '.join(missing)} of the run on {what} are missing")
            continue
        ran = {name for run in members for name in run.info.get("scenarios", [])}
        lost = sorted(set(everything) - ran)
        if lost:
            warnings.append(f"the {count} shards on {what} did not run {len(lost)} of its "
                            f"scenarios: {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}")
    return warnings


def _run_info(runs: list[RunDir], names: dict[tuple[int, str], str], argv: list[str]) -> dict:
    kernels: dict[tuple, dict] = {}
    shards = []
    for i, run in enumerate(runs):
        info = run.info
        for k in info.get("kernels", []):
            kernels.setdefault((k.get("spec"), k.get("release"), k.get("config_sha256")), k)
        if isinstance(info.get("shards"), list):  # an input that is itself a merge
            shards.extend(info["shards"])
            continue
        shards.append({
            "dir": str(run.path), "shard": run.shard(), "argv": info.get("argv", []),
            "started_at": info.get("started_at", ""),
            "kernels": [release for release, _ in run.kernels()],
            "results": len(run.records),
            **({"ending": info["ending"]} if isinstance(info.get("ending"), dict) else {}),
            "machines": {old: new for (j, old), new in names.items() if j == i and old != new},
            **{k: info.get(k, "") for k in ENVIRONMENT},
        })
    scenarios = sorted({s for run in runs for s in run.info.get("scenarios", [])}
                       | {r.result.scenario for run in runs for r in run.records})
    hierarchies = list(dict.fromkeys(h for run in runs for h in run.info.get("hierarchies")
                                     or sorted({r.result.hierarchy for r in run.records})))
    started = [run.info.get("started_at") for run in runs if run.info.get("started_at")]
    return {
        "argv": argv, "merged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "started_at": min(started) if started else "",
        **{k: _common([run.info.get(k) for run in runs]) for k in ENVIRONMENT},
        "kernels": list(kernels.values()), "hierarchies": hierarchies, "scenarios": scenarios,
        "shards": shards,
    }


def write_report(run_dir: Path) -> Path:
    """RUN_DIR/report.html, as `kharness report RUN_DIR` writes it."""
    from . import report

    model = report.build(run_dir)
    path = report.default_output(run_dir, "html")
    path.write_text(report.render(model, "html", path.parent))
    return path


def merge(inputs: list[Path], out: Path, argv: list[str], with_report: bool = True) -> Merged:
    """Check everything first (nothing is written when an input is bad), then write `out`."""
    runs = [read_run(p) for p in inputs]
    _check_inputs(runs)
    _check_out(out, runs)
    names = _machine_names(runs)
    merged = Merged(out, list(inputs), warnings=_completeness(runs))
    for run in runs:
        if not run.info:
            merged.warnings.append(f"{run.path}: no run.json (its environment is not recorded)")
        if why := run.incomplete():
            merged.warnings.append(f"{run.path}: the run did not finish, {why}")

    writer = ResultsWriter(out)
    for (i, old), new in names.items():
        shutil.copytree(runs[i].path / "machines" / old, out / "machines" / new, symlinks=True)
        if old != new:
            merged.renamed.append((runs[i].path, old, new))
    results: list[ScenarioResult] = []
    for i, run in enumerate(runs):
        for record in run.records:
            r = record.result
            if r.machine and (i, r.machine) in names:
                r = replace(r, machine=names[(i, r.machine)])
            results.append(r)
    append_empty(writer.jsonl)  # shards that recorded nothing merge into an empty run
    for r in results:
        writer.add(r)
    writer.write_run_info(_run_info(runs, names, argv))
    writer.write_junit()
    merged.results = len(results)
    for r in results:
        merged.counts[r.status] = merged.counts.get(r.status, 0) + 1
    if with_report:
        from .report import ReportError

        try:
            merged.report = write_report(out)
        except ReportError as exc:  # e.g. shards that recorded nothing: the merge stands
            merged.warnings.append(f"no report: {exc}")
    return merged
