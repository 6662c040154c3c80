"""`kharness merge` on synthetic shards: results concatenated, machines copied and renamed with
the results following, run.json merged, JUnit regenerated; overlapping or bad input refused."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_compare import K61, K612, result, write_run

from harness.cli import main
from harness.merge import merge
from harness.rundir import RunDirError, read_run


def info(shard: str | None, scenarios: list[str], everything: list[str], **kw) -> dict:
    doc = {"argv": ["kharness", "run", "scenarios/", *(["--shard", shard] if shard else [])],
           "started_at": kw.pop("started_at", "2026-11-29T20:00:00Z"), "host": "vm",
           "host_kernel": "6.18", "python": "3.11.7", "qemu": "QEMU emulator version 7.2",
           "accel": "tcg", "hierarchies": ["v1", "v2"], "scenarios": scenarios,
           "kernels": [{"spec": "debian:6.1", "release": K61, "config_sha256": "a1"}]}
    if shard:
        i, n = shard.split("/")
        doc["shard"] = {"index": int(i), "count": int(n), "all_scenarios": everything}
    doc.update(kw)
    return doc


ALL = ["memory/oom-kill", "pids/max-fork"]


def shard_run(path: Path, shard: str, scenario: str, machine: str = "m01-6.1.0-57-amd64-v2-boot1",
              **kw) -> Path:
    run = write_run(path, [result(scenario, machine=machine, limits={"hog": {"memory.max": 1}}),
                           result(scenario, "skip", hierarchy="v1", reason="v2 only")],
                    info(shard, [scenario], ALL, **kw))
    (run / "machines" / machine).mkdir(parents=True)
    (run / "machines" / machine / "console.log").write_text(f"console of {path.name}\n")
    (run / "junit.xml").write_text("<testsuites/>")  # stale: the merge renders its own
    return run


def test_shards_merge_into_one_run(tmp_path, capsys):
    s1 = shard_run(tmp_path / "s1", "1/2", "memory/oom-kill")
    s2 = shard_run(tmp_path / "s2", "2/2", "pids/max-fork", started_at="2026-11-29T19:00:00Z")
    out = tmp_path / "merged"
    assert main(["merge", str(s1), str(s2), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"merged 2 run(s) into {out}: 4 results (2 pass, 2 skip); report: " \
        f"{out}/report.html" in captured.out
    html = (out / "report.html").read_text()  # `kharness report` of the merged run
    assert "memory/oom-kill" in html and "pids/max-fork" in html
    assert "m01-6.1.0-57-amd64-v2-boot1 is machines/m01-6.1.0-57-amd64-v2-boot1-shard2" \
        in captured.err
    assert "warning" not in captured.err

    merged = read_run(out)
    assert [(r.result.scenario, r.result.hierarchy) for r in merged.records] == [
        ("memory/oom-kill", "v2"), ("memory/oom-kill", "v1"),
        ("pids/max-fork", "v2"), ("pids/max-fork", "v1")]
    machines = [r.result.machine for r in merged.records if r.result.machine]
    assert machines == ["m01-6.1.0-57-amd64-v2-boot1", "m01-6.1.0-57-amd64-v2-boot1-shard2"]
    for name, src in zip(machines, ("s1", "s2")):  # each result still finds its console
        assert (out / "machines" / name / "console.log").read_text() == f"console of {src}\n"
    assert merged.records[0].result.limits == {"hog": {"memory.max": 1}}  # kept verbatim

    run = merged.info
    assert run["scenarios"] == ALL and run["hierarchies"] == ["v1", "v2"]
    assert run["kernels"] == [{"spec": "debian:6.1", "release": K61, "config_sha256": "a1"}]
    assert run["started_at"] == "2026-11-29T19:00:00Z" and run["accel"] == "tcg"
    assert [(s["dir"], s["shard"], s["argv"][-1]) for s in run["shards"]] == [
        (str(s1), "1/2", "1/2"), (str(s2), "2/2", "2/2")]
    assert run["shards"][1]["machines"] == {
        "m01-6.1.0-57-amd64-v2-boot1": "m01-6.1.0-57-amd64-v2-boot1-shard2"}
    assert run["argv"] == sys.argv  # the merge's own, as `run` records its own

    cases = ET.parse(out / "junit.xml").getroot().findall(".//testcase")
    assert sorted((c.get("classname"), c.get("name")) for c in cases) == [
        (f"kharness.{K61}.v1", "memory/oom-kill"), (f"kharness.{K61}.v1", "pids/max-fork"),
        (f"kharness.{K61}.v2", "memory/oom-kill"), (f"kharness.{K61}.v2", "pids/max-fork")]
    # and the merged run is a run like any other
    assert main(["compare", str(out), str(out)]) == 0


def test_runs_on_different_kernels_merge_with_the_kernels_union(tmp_path):
    a = write_run(tmp_path / "a", [result("x")], info(None, ["x"], []))
    b = write_run(tmp_path / "b", [result("x", kernel=K612)], info(None, ["x"], [], kernels=[
        {"spec": "debian:6.12", "release": K612, "config_sha256": "b2"}], accel="kvm"))
    done = merge([a, b], tmp_path / "m", ["kharness", "merge"])
    assert done.results == 2 and not done.renamed and not done.warnings
    run = json.loads((tmp_path / "m" / "run.json").read_text())
    assert [k["release"] for k in run["kernels"]] == [K61, K612]
    assert run["accel"] == "tcg, kvm"  # the inputs disagree: both said, each in its shard entry
    assert [s["accel"] for s in run["shards"]] == ["tcg", "kvm"]


def test_a_missing_shard_is_a_warning(tmp_path, capsys):
    s1 = shard_run(tmp_path / "s1", "1/3", "memory/oom-kill")
    s3 = shard_run(tmp_path / "s3", "3/3", "pids/max-fork")
    assert main(["merge", str(s1), str(s3), "--out", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert "warning: shard(s) 2/3 of the run on kernels debian:6.1 are missing" in err


def test_shards_that_did_not_run_every_scenario_are_a_warning(tmp_path):
    s1 = shard_run(tmp_path / "s1", "1/2", "memory/oom-kill")
    s2 = write_run(tmp_path / "s2", [], info("2/2", [], ALL))
    done = merge([s1, s2], tmp_path / "m", [])
    assert done.warnings == [
        "the 2 shards on kernels debian:6.1 did not run 1 of its scenarios: pids/max-fork"]


def test_the_same_cell_in_two_inputs_is_refused_and_nothing_is_written(tmp_path, capsys):
    s1 = shard_run(tmp_path / "s1", "1/2", "memory/oom-kill")
    s2 = shard_run(tmp_path / "s2", "2/2", "memory/oom-kill")
    out = tmp_path / "m"
    assert main(["merge", str(s1), str(s2), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"kharness: {s2}/results.jsonl:1: memory/oom-kill [{K61} v2] is also in "
                   f"{s1}/results.jsonl:1; the runs overlap: merge each cell once\n")
    assert not out.exists()


@pytest.mark.parametrize("case", ["out-not-empty", "out-inside-input", "input-twice",
                                  "no-results"])
def test_bad_merges_are_usage_errors_naming_the_path(tmp_path, capsys, case):
    s1 = shard_run(tmp_path / "s1", "1/2", "memory/oom-kill")
    s2 = shard_run(tmp_path / "s2", "2/2", "pids/max-fork")
    inputs, out, message = [s1, s2], tmp_path / "m", ""
    if case == "out-not-empty":
        out.mkdir()
        (out / "old.txt").write_text("x")
        message = f"--out {out}: exists and is not an empty directory"
    elif case == "out-inside-input":
        out = s1 / "merged"
        message = f"--out {out}: inside the input {s1}"
    elif case == "input-twice":
        inputs = [s1, s2, tmp_path / "s1" / ".." / "s1"]
        message = f"{inputs[2]}: given twice (also as {s1})"
    else:
        (s2 / "results.jsonl").unlink()
        message = f"{s2}: no results.jsonl"
    assert main(["merge", *map(str, inputs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(RunDirError):
        merge(inputs, out, [])


def test_no_report_and_a_merge_of_empty_shards(tmp_path, capsys):
    s1 = shard_run(tmp_path / "s1", "1/2", "memory/oom-kill")
    s2 = shard_run(tmp_path / "s2", "2/2", "pids/max-fork")
    assert main(["merge", str(s1), str(s2), "--out", str(tmp_path / "m"), "--no-report"]) == 0
    assert "; report: " not in capsys.readouterr().out
    assert not (tmp_path / "m" / "report.html").exists()
    e1 = write_run(tmp_path / "e1", [], info("1/2", [], []))
    e2 = write_run(tmp_path / "e2", [], info("2/2", [], []))
    done = merge([e1, e2], tmp_path / "e", [])
    assert done.results == 0 and done.report is None
    assert [w for w in done.warnings if w.startswith("no report: ")]
    assert (tmp_path / "e" / "junit.xml").exists()


def test_a_merge_of_merges_keeps_the_shards_flat(tmp_path):
    s1 = shard_run(tmp_path / "s1", "1/2", "memory/oom-kill")
    s2 = shard_run(tmp_path / "s2", "2/2", "pids/max-fork")
    m1 = tmp_path / "m1"
    merge([s1], m1, [])
    merge([m1, s2], tmp_path / "m2", [])
    run = json.loads((tmp_path / "m2" / "run.json").read_text())
    assert [s["shard"] for s in run["shards"]] == ["1/2", "2/2"]
    assert len(read_run(tmp_path / "m2").records) == 4
