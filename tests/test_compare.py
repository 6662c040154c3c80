"""`kharness compare` on synthetic results directories: the status transitions, the figures'
threshold and floor, how kernels are paired, exit statuses and bad input."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from harness.cli import main
from harness.compare import compare, figure_moved, render_text, to_json
from harness.results import ScenarioResult
from harness.rundir import RunDirError, read_run

K61, K612 = "6.1.0-57-amd64", "6.12.117+deb12-amd64"
SPEC = {K61: "debian:6.1.0-57", K612: "debian:6.12.117+deb12"}  # as results record them


def check(desc: str, observed: str, passed: bool = True, expected: str = "") -> dict:
    return {"description": desc, "expected": expected or desc.split(" ", 4)[-1],
            "observed": observed, "passed": passed, "skipped_reason": None}


def result(scenario: str, status: str = "pass", kernel: str = K61, hierarchy: str = "v2",
           **kw) -> dict:
    kw.setdefault("kernel_spec", SPEC.get(kernel, "path:/x/bzImage"))
    return asdict(ScenarioResult(scenario=scenario, kernel=kernel, hierarchy=hierarchy,
                                 status=status, **kw))


def write_run(path: Path, results: list[dict], info: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    if info is not None:
        (path / "run.json").write_text(json.dumps(info))
    return path


OOM_PASS = [check("metric oom_kill of hog >= 1", "1"), check("step hog exit_status == 137", "137")]
OOM_FAIL = [check("metric oom_kill of hog >= 1", "0", passed=False, expected="oom_kill >= 1"),
            check("step hog exit_status == 137", "0", passed=False, expected="137")]


def baseline() -> list[dict]:
    return [result("memory/oom-kill", checks=OOM_PASS),
            result("memory/oom-kill", hierarchy="v1", checks=OOM_PASS),
            result("pids/max-fork", checks=[check("metric pids_max_events of forks == 6", "6")]),
            result("memory/high-throttle", "skip", hierarchy="v1",
                   reason="the scenario applies to v2 only")]


def test_identical_runs_exit_0_with_nothing_changed(tmp_path, capsys):
    a = write_run(tmp_path / "a", baseline())
    b = write_run(tmp_path / "b", baseline())
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert f"kernel {K61}: matched by (scenario, kernel, hierarchy)" in out
    assert "summary: regressions: 0, unchanged: 4; no regression" in out
    assert "REGRESSIONS" not in out and "FIGURES" not in out
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["regressed"] is False and doc["summary"]["unchanged"] == 4


def test_a_scenario_made_to_fail_is_a_regression_named_with_expected_vs_observed(tmp_path,
                                                                                   capsys):
    a = write_run(tmp_path / "a", baseline())
    changed = baseline()
    changed[0] = result("memory/oom-kill", "fail", checks=OOM_FAIL)
    b = write_run(tmp_path / "b", changed)
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "c.json")]) == 1
    out = capsys.readouterr().out
    assert "REGRESSIONS (1)\n" in out
    assert f"  memory/oom-kill [{K61} v2]: pass -> fail\n" in out
    assert "metric oom_kill of hog >= 1: expected oom_kill >= 1, observed 0" in out
    assert out.rstrip().endswith("REGRESSED")
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["regressed"] is True
    (reg,) = doc["regressions"]
    assert (reg["scenario"], reg["hierarchy"], reg["before"], reg["after"]) == (
        "memory/oom-kill", "v2", "pass", "fail")


def test_every_status_transition_lands_where_the_table_says(tmp_path):
    pairs = {  # scenario: (status in A, status in B)
        "pass-fail": ("pass", "fail"), "pass-error": ("pass", "error"),
        "skip-fail": ("skip", "error"), "fail-pass": ("fail", "pass"),
        "error-pass": ("error", "pass"), "pass-skip": ("pass", "skip"),
        "fail-skip": ("fail", "skip"), "skip-pass": ("skip", "pass"),
        "fail-error": ("fail", "error"), "fail-fail": ("fail", "fail"),
        "pass-pass": ("pass", "pass"), "skip-skip": ("skip", "skip"),
    }
    a = write_run(tmp_path / "a", [result(n, s, reason=f"why {n} A") for n, (s, _) in
                                   pairs.items()])
    b = write_run(tmp_path / "b", [result(n, s, reason=f"why {n} B", failure_kind="panic")
                                   for n, (_, s) in pairs.items()])
    cmp = compare(read_run(a), read_run(b))
    names = {k: sorted(c.scenario for c in getattr(cmp, k)) for k in (
        "regressions", "fixes", "new_skips", "skips_gone", "still_failing")}
    assert names == {
        "regressions": ["pass-error", "pass-fail", "skip-fail"],
        "fixes": ["error-pass", "fail-pass"],
        "new_skips": ["fail-skip", "pass-skip"],
        "skips_gone": ["skip-pass"],
        "still_failing": ["fail-error", "fail-fail"],
    }
    assert cmp.unchanged == 2 and cmp.regressed
    by = {c.scenario: c for c in cmp.regressions + cmp.new_skips + cmp.skips_gone}
    assert by["pass-error"].detail == "panic: why pass-error B"  # the error that appeared
    assert by["pass-skip"].detail == "why pass-skip B"  # why it is skipped now
    assert by["skip-pass"].detail == "why skip-pass A"  # why it was skipped


def test_fixes_new_skips_and_cells_in_one_run_only_do_not_gate(tmp_path, capsys):
    before = baseline()
    before[0] = result("memory/oom-kill", "fail", checks=OOM_FAIL)
    a = write_run(tmp_path / "a", before + [result("cpu/max-quota")])
    after = baseline()
    after[1] = result("memory/oom-kill", "skip", hierarchy="v1", reason="CONFIG_MEMCG_V1 off")
    b = write_run(tmp_path / "b", after + [result("io/max-read-bps", "fail")])
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"FIXES (1)\n  memory/oom-kill [{K61} v2]: fail -> pass" in out
    assert f"NEW SKIPS (1)\n  memory/oom-kill [{K61} v1]: pass -> skip\n      CONFIG_MEMCG_V1" \
        in out
    assert f"ONLY IN A (1)\n  cpu/max-quota [{K61} v2]: pass" in out
    assert f"ONLY IN B (1)\n  io/max-read-bps [{K61} v2]: fail" in out


@pytest.mark.parametrize("before,after,threshold,floor,moved", [
    (30, 45, 20, 1, True),  # +50%
    (30, 33, 20, 1, False),  # +10%
    (30, 33, 5, 1, True),
    (0, 1, 20, 1, False),  # 0 -> 1 OOM kill: within the floor
    (1, 2, 20, 1, False),  # +100% but by one
    (0, 2, 20, 1, True),  # from 0, beyond the floor
    (0, 1, 20, 0, True),  # --floor 0: every change from 0
    (4.04, 2.02, 20, 1, True),  # seconds halved
    (0.6, 1.2, 20, 1, False),  # a sub-second move
    (33554432, 34603008, 20, 1, False),  # bytes: +3%
    (33554432, 50331648, 20, 1, True),  # bytes: +50%
    (100, 70, 20, 1, True),  # -30%
])
def test_a_figure_moves_beyond_threshold_and_floor(before, after, threshold, floor, moved):
    assert figure_moved(before, after, threshold, floor) is moved


def test_figures_that_moved_are_listed_with_the_floor_of_their_unit_but_do_not_gate(
        tmp_path, capsys):
    samples_a = {"hog": [[0.1, 16 << 20, 0], [0.2, 32 << 20, 0]]}
    samples_b = {"hog": [[0.1, 16 << 20, 0], [0.2, 48 << 20, 0]]}
    a = write_run(tmp_path / "a", [result("cpu/max-quota", checks=[
        check("metric nr_throttled of busy >= 10", "30"),
        check("metric oom_kill of hog == 0", "0"),
        check("step hog cpu_s in [0.4, 0.8]", "0.617")]),
        result("memory/peak", samples=samples_a)])
    b = write_run(tmp_path / "b", [result("cpu/max-quota", checks=[
        check("metric nr_throttled of busy >= 10", "45"),
        check("metric oom_kill of hog == 0", "1", passed=False),
        check("step hog cpu_s in [0.4, 0.8]", "0.7")]),
        result("memory/peak", samples=samples_b)])
    cmp = compare(read_run(a), read_run(b))
    got = {(f.scenario, f.figure): (f.unit, f.before, f.after, f.percent) for f in cmp.figures}
    assert got == {  # not oom_kill 0 -> 1 (one count), not cpu_s +0.083 s, no sampled peaks
        ("cpu/max-quota", "metric nr_throttled of busy"): ("count", 30, 45, 50.0)}
    assert not cmp.regressed
    sampled = compare(read_run(a), read_run(b), sampled=True).figures
    assert [(f.figure, f.unit, f.percent) for f in sampled if f.scenario == "memory/peak"] == [
        ("sampled usage peak of hog", "bytes", 50.0)]
    assert main(["compare", str(a), str(b), "--threshold", "60", "--sampled"]) == 0
    assert "FIGURES" not in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--floor", "bytes=32M", "--sampled"]) == 0
    assert "sampled usage peak" not in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--floor", "count=0", "--floor", "seconds=0",
                 "--threshold", "10", "--sampled"]) == 0
    out = capsys.readouterr().out
    assert "FIGURES MOVED (4: by more than 10% and more than 0 (count), 0 s (seconds), " \
        "1M (bytes))" in out
    assert f"cpu/max-quota [{K61} v2] metric oom_kill of hog: 0 -> 1 (from 0)" in out
    assert "step hog cpu_s: 0.617 s -> 0.7 s (+13.5%)" in out
    assert "sampled usage peak of hog: 32M -> 48M (+50.0%)" in out


@pytest.mark.parametrize("option", ["bytes", "bytes=lots", "count=-1", "furlongs=3"])
def test_a_bad_floor_is_a_usage_error_listing_the_units(tmp_path, capsys, option):
    a = write_run(tmp_path / "a", baseline())
    assert main(["compare", str(a), str(a), "--floor", option]) == 2
    err = capsys.readouterr().err
    assert f"--floor {option!r}: expected UNIT=VALUE >= 0, UNIT one of count, number, bytes, " \
        "bytes/s, seconds, percent" in err


def test_single_kernel_runs_on_different_kernels_match_by_scenario_and_hierarchy(tmp_path,
                                                                                  capsys):
    a = write_run(tmp_path / "a", baseline())
    on_612 = [dict(r, kernel=K612, kernel_spec=SPEC[K612]) for r in baseline()]
    on_612[1] = dict(on_612[1], status="skip", reason="CONFIG_MEMCG_V1 is not set")
    b = write_run(tmp_path / "b", on_612)
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert (f"kernel {K61} (debian:6.1.0-57) -> {K612} (debian:6.12.117+deb12): different "
            "kernels, matched by (scenario, hierarchy) [the only kernel left in each run]") in out
    assert f"memory/oom-kill [{K61} -> {K612} v1]: pass -> skip" in out
    assert "ONLY IN" not in out
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["by_hierarchy"] is True and doc["summary"]["new_skips"] == 1


def test_kernels_pair_by_release_spec_series_and_the_rest_is_in_one_run_only(tmp_path):
    newer61 = "6.1.0-58-amd64"  # debian:6.1 resolved to a newer ABI since
    a = write_run(tmp_path / "a", [result("x", kernel=K61), result("x", kernel=K612),
                                   result("x", kernel="6.6.0-mine", kernel_spec="path:/a"),
                                   result("x", kernel="5.10.0", kernel_spec="path:/z")])
    b = write_run(tmp_path / "b", [result("x", kernel=K612),
                                   result("x", kernel=newer61, kernel_spec="debian:6.1.0-58"),
                                   result("x", kernel="6.6.1-mine", kernel_spec="path:/a"),
                                   result("x", "fail", kernel="6.13.0", kernel_spec="path:/b"),
                                   result("x", kernel="6.14.0", kernel_spec="path:/c")])
    cmp = compare(read_run(a), read_run(b))
    assert {(p.a, p.b, p.how) for p in cmp.pairs} == {
        (K612, K612, "same release"), ("6.6.0-mine", "6.6.1-mine", "same spec path:/a"),
        (K61, newer61, "same series debian:6.1")}
    assert [(o.kernel, o.status) for o in cmp.only_in_a] == [("5.10.0", "pass")]
    assert sorted((o.kernel, o.status) for o in cmp.only_in_b) == [("6.13.0", "fail"),
                                                                    ("6.14.0", "pass")]
    assert cmp.unchanged == 3 and not cmp.regressed  # a failing cell in B only: no baseline


def test_pair_compares_two_kernels_of_the_same_run(tmp_path, capsys):
    run = write_run(tmp_path / "a", baseline() + [
        result("memory/oom-kill", kernel=K612, checks=OOM_PASS),
        result("memory/oom-kill", "skip", hierarchy="v1", kernel=K612, reason="no MEMCG_V1"),
        result("pids/max-fork", "fail", kernel=K612)])
    assert main(["compare", str(run), str(run), "--pair", "debian:6.1=debian:6.12"]) == 1
    out = capsys.readouterr().out
    assert f"left out of A (not in --pair): {K612}" in out
    assert f"left out of B (not in --pair): {K61}" in out
    assert f"pids/max-fork [{K61} -> {K612} v2]: pass -> fail" in out
    assert f"memory/oom-kill [{K61} -> {K612} v1]: pass -> skip" in out
    assert f"ONLY IN A (1)\n  memory/high-throttle [{K61} v1]: skip" in out
    assert "ONLY IN B" not in out


@pytest.mark.parametrize("pair,message", [
    ("debian:6.1", "--pair 'debian:6.1': expected A_KERNEL=B_KERNEL"),
    ("debian:6.1=6.6", "'6.6' names no kernel of "),
    ("6=6.1", "'6' names several kernels of "),
    ("debian:6=6.1", f"(it has: {K61} (debian:6.1.0-57), {K612} (debian:6.12.117+deb12))"),
])
def test_bad_pairs_are_usage_errors(tmp_path, capsys, pair, message):
    a = write_run(tmp_path / "a", baseline() + [result("x", kernel=K612)])
    assert main(["compare", str(a), str(a), "--pair", pair]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_directory_without_results_is_bad_input_named_in_one_line(tmp_path, capsys):
    a = write_run(tmp_path / "a", baseline())
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(a), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err == f"kharness: {tmp_path / 'empty'}: no results.jsonl (not a kharness results " \
                  "directory)\n"
    assert main(["compare", str(tmp_path / "nowhere"), str(a)]) == 2
    assert f"{tmp_path / 'nowhere'}: not a directory" in capsys.readouterr().err


def test_broken_lines_and_duplicate_cells_are_named_with_file_and_line(tmp_path):
    bad = write_run(tmp_path / "bad", baseline())
    with (bad / "results.jsonl").open("a") as f:
        f.write('{"scenario": "memory/oom-k')
    with pytest.raises(RunDirError, match=r"results\.jsonl:5: not JSON"):
        read_run(bad)
    twice = write_run(tmp_path / "twice", baseline() + [baseline()[2]])
    with pytest.raises(RunDirError, match=rf"results\.jsonl:5: pids/max-fork \[{K61} v2\] is "
                       r"there twice \(also line 3\)"):
        read_run(twice)
    other = write_run(tmp_path / "other", [{"scenario": "x", "kernel": K61}])
    with pytest.raises(RunDirError, match=r"results\.jsonl:1: not a result: no hierarchy, "
                       "status"):
        read_run(other)


def test_the_json_view_carries_the_model(tmp_path):
    a = write_run(tmp_path / "a", baseline())
    changed = baseline()
    changed[2] = result("pids/max-fork", checks=[check("metric pids_max_events of forks == 6",
                                                       "12", passed=False)], status="fail")
    cmp = compare(read_run(a), read_run(write_run(tmp_path / "b", changed)))
    doc = to_json(cmp)
    assert doc["summary"] == {"regressions": 1, "fixes": 0, "new_skips": 0, "skips_gone": 0,
                              "still_failing": 0, "only_in_a": 0, "only_in_b": 0,
                              "figures_moved": 1, "unchanged": 3}
    assert doc["figures"][0]["percent"] == 100.0
    assert render_text(cmp).count("pids/max-fork") == 2  # the regression and the figure


def test_an_interrupted_run_is_said_to_be_so(tmp_path):
    """Cells an interrupt cut short have no result (issue 17): compare says the run did not
    finish, so "only in A" is not read as cells that went away."""
    a = write_run(tmp_path / "a", [result("memory/peak"), result("memory/oom-kill")])
    b = write_run(tmp_path / "b", [result("memory/peak")], info={"ending": {
        "status": "interrupted", "signal": "SIGTERM",
        "not_run": [f"memory/oom-kill [{K61} v2]"]}})
    cmp = compare(read_run(a), read_run(b))
    assert cmp.incomplete == {"B": "interrupted (SIGTERM): 1 planned cell(s) did not run"}
    assert [o.scenario for o in cmp.only_in_a] == ["memory/oom-kill"]
    assert "run B did not finish, interrupted (SIGTERM): 1 planned cell(s)" in render_text(cmp)
    assert not cmp.regressed
