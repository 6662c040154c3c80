"""`run --shard` for real: the memory and pids scenarios on both default kernels and both
hierarchies, run as shards 1/2 and 2/2 and merged, give the same results as one unsharded run:
the same (scenario, kernel, hierarchy, status) set and the same JUnit testcases."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_run_integration import kharness, lines

pytestmark = pytest.mark.integration

PATHS = ["scenarios/memory", "scenarios/pids"]
KERNELS = ["--kernel", "debian:6.1", "--kernel", "debian:6.12"]


def _run(out: Path, *extra: str) -> float:
    start = time.monotonic()
    proc = kharness("run", *PATHS, *KERNELS, "--jobs", "1", "--results", str(out), "-q", *extra,
                    timeout=1800)
    assert proc.returncode in (0, 1), proc.stderr  # 1: a scenario failed, compared below
    assert (out / "results.jsonl").exists(), proc.stderr
    return time.monotonic() - start


def _cells(run: Path) -> set[tuple[str, str, str, str]]:
    return {(r["scenario"], r["kernel"], r["hierarchy"], r["status"]) for r in lines(run)}


def _testcases(run: Path) -> list[tuple[str, str, str]]:
    root = ET.parse(run / "junit.xml").getroot()
    out = []
    for case in root.iter("testcase"):
        verdict = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "pass")
        out.append((case.get("classname"), case.get("name"), verdict))
    return sorted(out)


def test_shards_merged_equal_one_unsharded_run(tmp_path):
    times = {"whole": _run(tmp_path / "whole")}
    for i in (1, 2):
        times[f"shard {i}/2"] = _run(tmp_path / f"s{i}", "--shard", f"{i}/2")
    print("wall times:", {k: f"{v:.0f}s" for k, v in times.items()})

    shards = [_cells(tmp_path / f"s{i}") for i in (1, 2)]
    assert shards[0] and shards[1], "each shard ran part of the matrix"
    assert not {c[:3] for c in shards[0]} & {c[:3] for c in shards[1]}  # disjoint
    names = [{c[0] for c in s} for s in shards]
    assert not names[0] & names[1]  # a scenario is in one shard on every kernel and hierarchy
    for i in (1, 2):
        info = json.loads((tmp_path / f"s{i}" / "run.json").read_text())
        assert (info["shard"]["index"], info["shard"]["count"]) == (i, 2)
        assert sorted(info["scenarios"]) == sorted(names[i - 1])

    proc = kharness("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out",
                    str(tmp_path / "merged"))
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    merged, whole = tmp_path / "merged", tmp_path / "whole"
    assert _cells(merged) == _cells(whole)
    assert len(lines(merged)) == len(lines(whole)) == 15 * 2 * 2
    assert _testcases(merged) == _testcases(whole)
    # every result's machine directory is there, renamed or not
    for r in lines(merged):
        if r["machine"]:
            assert (merged / "machines" / r["machine"] / "console.log").exists(), r["machine"]
    info = json.loads((merged / "run.json").read_text())
    assert [s["shard"] for s in info["shards"]] == ["1/2", "2/2"]
    assert len(info["kernels"]) == 2

    proc = kharness("compare", str(whole), str(merged))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "regressions: 0" in proc.stdout and "ONLY IN" not in proc.stdout


def test_an_empty_shard_is_a_run_that_merges(tmp_path):
    """More shards than scenarios: the empty one boots nothing, exits 0 and still merges.
    (The two pids scenarios fill shards 1 and 2, one each.)"""
    out = tmp_path / "s3"
    proc = kharness("run", "scenarios/pids", "--kernel", "debian:6.1", "--accel", "tcg",
                    "--shard", "3/3", "--results", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.jsonl").read_text() == ""
    info = json.loads((out / "run.json").read_text())
    assert info["scenarios"] == [] and info["shard"]["count"] == 3
    assert len(info["shard"]["all_scenarios"]) == 2
    assert not (out / "machines").exists()
    proc = kharness("merge", str(out), "--out", str(tmp_path / "m"), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "shard(s) 1/3, 2/3 of the run on kernels debian:6.1" in proc.stderr
