"""A results directory read back (`kharness compare`, `kharness merge`, `kharness report`): the
records of results.jsonl as the ScenarioResults that were written (ScenarioResult.from_dict,
each with its line number) and run.json.

Every problem is a RunDirError whose message names the file (and line): a directory without
results.jsonl, a line that is not a result, the same cell twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .results import ResultFormatError, ScenarioResult, Status

REQUIRED = ("scenario", "kernel", "hierarchy", "status")
STATUSES = tuple(Status)


class RunDirError(Exception):
    """Bad input: one line that names the path."""


@dataclass(frozen=True)
class CellKey:
    """A cell of the matrix: scenario x kernel (release) x hierarchy."""

    scenario: str
    kernel: str
    hierarchy: str

    def __str__(self) -> str:
        return f"{self.scenario} [{self.kernel} {self.hierarchy}]"


@dataclass
class Record:
    """One line of results.jsonl: the result, and where."""

    result: ScenarioResult
    line: int

    @property
    def key(self) -> CellKey:
        return CellKey(self.result.scenario, self.result.kernel, self.result.hierarchy)

    @property
    def status(self) -> Status:
        return self.result.status


@dataclass
class RunDir:
    path: Path
    records: list[Record] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # run.json; {} when the directory has none

    @property
    def jsonl(self) -> Path:
        return self.path / "results.jsonl"

    def kernels(self) -> list[tuple[str, str]]:
        """(release, spec) of the kernels the results are on, in order of first appearance."""
        seen: dict[str, str] = {}
        for r in self.records:
            seen.setdefault(r.result.kernel, r.result.kernel_spec)
        return list(seen.items())

    def results(self) -> list[ScenarioResult]:
        return [r.result for r in self.records]

    def incomplete(self) -> str | None:
        """Why the run has no result for some of its planned cells (run.json's `ending`:
        interrupted by a signal, or stopped by a write that failed), None for a run that
        finished (or an older run.json that does not say)."""
        ending = self.info.get("ending")
        if not isinstance(ending, dict) or ending.get("status") in (None, "finished"):
            return None
        not_run = ending.get("not_run") or []
        why = ending.get("signal") or ending.get("error") or ""
        return (f"{ending['status']}{f' ({why})' if why else ''}: {len(not_run)} planned "
                "cell(s) did not run")

    def shard(self) -> str | None:
        """`I/N` when the run was a `--shard` slice."""
        shard = self.info.get("shard")
        if not isinstance(shard, dict) or not {"index", "count"} <= shard.keys():
            return None
        return f"{shard['index']}/{shard['count']}"


def read_run(path: Path | str) -> RunDir:
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory (expected a kharness results directory)")
    jsonl = path / "results.jsonl"
    if not jsonl.is_file():
        raise RunDirError(f"{path}: no results.jsonl (not a kharness results directory)")
    run = RunDir(path)
    first: dict[CellKey, int] = {}
    for number, text in enumerate(jsonl.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{jsonl}:{number}"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{where}: not JSON ({exc.msg}); a line cut short by a crash? "
                              "remove it") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{where}: not a result (a JSON object)")
        missing = [k for k in REQUIRED if not isinstance(data.get(k), str)]
        if missing:
            raise RunDirError(f"{where}: not a result: no {', '.join(missing)}")
        if data["status"] not in STATUSES:
            raise RunDirError(f"{where}: unknown status {data['status']!r}")
        try:
            record = Record(ScenarioResult.from_dict(data), number)
        except ResultFormatError as exc:
            raise RunDirError(f"{where}: not a result: {exc}") from None
        if record.key in first:
            raise RunDirError(f"{where}: {record.key} is there twice (also line "
                              f"{first[record.key]})")
        first[record.key] = number
        run.records.append(record)
    info = path / "run.json"
    if info.exists():
        try:
            run.info = json.loads(info.read_text())
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{info}: not JSON ({exc.msg})") from None
        if not isinstance(run.info, dict):
            raise RunDirError(f"{info}: not a JSON object")
    return run


def load_results(directory: Path) -> list[ScenarioResult]:
    """The results of `directory` ([] when it has no results.jsonl yet), checked as read_run
    checks them."""
    if not (Path(directory) / "results.jsonl").is_file():
        return []
    return read_run(directory).results()
