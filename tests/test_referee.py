"""The referee (issue 10): scenarios' `refs:` checked before boot, and the judgement of a
scenario's verdict by the kernel selftest it names (harness/referee.py), as results that JUnit
and the report show."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import referee, scenario
from harness.results import ResultsWriter, ScenarioResult, junit_xml
from harness.selftest.cases import CASES, parse_case

K61, K612 = "6.1.0-57-amd64", "6.12.118+deb12-amd64"

SCENARIO = """\
description: memory.min holds
hierarchies: [v2]
refs:
  - test_memcontrol:test_memcg_low
  - case: test_memcontrol:test_memcg_min
    fails_on: {kernel: "<6.12"}
    why: 6.1's reclaim honours min
steps:
  - run: "true"
"""


def _scenario(tmp_path: Path, text: str = SCENARIO, name: str = "min") -> scenario.Scenario:
    (tmp_path / "scenarios").mkdir(exist_ok=True)
    path = tmp_path / "scenarios" / f"{name}.yaml"
    path.write_text(text)
    (sc,) = scenario.load_or_raise([path])
    return sc


def _result(name: str, kernel: str, status: str, reason: str = "",
            hierarchy: str = "v2", **kw) -> ScenarioResult:
    return ScenarioResult(scenario=name, kernel=kernel, kernel_spec="debian:" + kernel[:4],
                          hierarchy=hierarchy, status=status, reason=reason, **kw)


def test_refs_load_into_the_scenario(tmp_path):
    sc = _scenario(tmp_path)
    low, minimum = sc.refs
    assert (low.binary, low.subtest, low.fails_on) == ("test_memcontrol", "test_memcg_low", None)
    assert minimum.case == "test_memcontrol:test_memcg_min"
    assert minimum.fails_on == "<6.12" and minimum.why == "6.1's reclaim honours min"
    assert low.expects_ok(K61) and low.expects_ok(K612)
    assert not minimum.expects_ok(K61) and minimum.expects_ok(K612)
    assert referee.selections([sc, sc]) == [
        referee.Selection("test_memcontrol", "test_memcg_low"),
        referee.Selection("test_memcontrol", "test_memcg_min")]


def test_bad_refs_are_all_listed_before_anything_boots(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("""\
description: x
hierarchies: [v1]
refs:
  - test_memcontrl:test_memcg_min
  - test_memcontrol:test_memcg_mn
  - case: test_pids:test_pids_events
    fails_on: {kernel: "<<6.12"}
  - test_pids:test_pids_events
  - nonsense
  - case: test_pids:test_pids_max
    fails_on: {hierarchy: v1}
steps:
  - run: "true"
""")
    _, problems = scenario.load([path])
    text = "\n".join(str(p) for p in problems)
    assert "refs: the kernel's cgroup selftests test v2 only" in text
    assert "refs[0]: no cgroup selftest 'test_memcontrl' (did you mean test_memcontrol?)" in text
    assert "refs[1]: test_memcontrol has no subtest 'test_memcg_mn'" in text
    assert "(did you mean test_memcg_min?)" in text
    assert "refs[2].fails_on.kernel: malformed kernel constraint '<<6.12'" in text
    assert "refs[3]: test_pids:test_pids_events is already refs[2]" in text
    assert "refs[4]: 'nonsense' is not BINARY:SUBTEST" in text
    assert "refs[5].fails_on.hierarchy: unknown key 'hierarchy'" in text
    assert len(problems) == 8, text


def test_the_catalogue_names_only_real_cases():
    scenarios = scenario.load_or_raise([Path(__file__).resolve().parent.parent / "scenarios"])
    refs = [r for sc in scenarios for r in sc.refs]
    assert len(refs) >= 20
    for r in refs:
        assert r.subtest in CASES[r.binary]
    named = {r.case for r in refs}
    for case in ("test_memcontrol:test_memcg_oom_events", "test_memcontrol:test_memcg_min",
                 "test_memcontrol:test_memcg_low", "test_memcontrol:test_memcg_high",
                 "test_memcontrol:test_memcg_max", "test_memcontrol:test_memcg_reclaim",
                 "test_memcontrol:test_memcg_swap_max_peak",
                 "test_memcontrol:test_memcg_oom_group_leaf_events", "test_pids:test_pids_max",
                 "test_pids:test_pids_events", "test_cpu:test_cpucg_max",
                 "test_cpu:test_cpucg_weight_overprovisioned",
                 "test_freezer:test_cgfreezer_simple"):
        assert case in named, case


def test_parse_case():
    assert parse_case("test_pids:test_pids_max") == ("test_pids", "test_pids_max")
    with pytest.raises(ValueError, match="is not BINARY:SUBTEST"):
        parse_case("test_pids")


# (scenario status, the ref pins the defect on this kernel, selftest status) -> judgement
@pytest.mark.parametrize(("scenario_status", "kernel", "selftest_status", "want"), [
    ("pass", K612, "pass", "pass"),  # both say it works
    ("pass", K612, "fail", "fail"),  # the scenario passes where the kernel's test says broken
    ("fail", K612, "pass", "fail"),  # the reverse
    ("fail", K612, "fail", "pass"),  # both say it is broken
    ("pass", K61, "fail", "pass"),  # fails_on <6.12: the scenario pins 6.1's defect
    ("pass", K61, "pass", "fail"),  # ...which the selftest does not see
    ("skip", K612, "pass", "skip"),
    ("error", K612, "pass", "skip"),  # the scenario's own result counts its error
    ("pass", K612, "skip", "skip"),
    ("pass", K612, "error", "error"),  # the referee could not judge
])
def test_judgement(tmp_path, scenario_status, kernel, selftest_status, want):
    sc = _scenario(tmp_path)
    results = [_result("min", kernel, scenario_status, "why" if scenario_status != "pass"
                       else ""),
               _result("selftest/test_memcontrol/test_memcg_min", kernel, selftest_status,
                       {"pass": "", "fail": "not ok"}.get(selftest_status, "because"),
                       role="referee")]
    (judged,) = referee.judge([sc], results)  # test_memcg_low has no result: no judgement
    assert judged.scenario == "referee/min/test_memcontrol:test_memcg_min"
    assert (judged.kernel, judged.hierarchy, judged.status) == (kernel, "v2", want)
    if want == "fail":
        assert judged.reason.startswith("disagreement: min ")
        assert "the kernel's own test_memcontrol:test_memcg_min says" in judged.reason
        (check,) = judged.checks
        assert check.expected != check.observed.split(" (")[0] or check.observed.startswith(
            "not ok")


def test_disagreement_names_both_verdicts(tmp_path):
    sc = _scenario(tmp_path)
    results = [_result("min", K61, "pass"),
               _result("selftest/test_memcontrol/test_memcg_low", K61, "fail", "not ok"),
               _result("selftest/test_memcontrol/test_memcg_min", K61, "fail", "not ok")]
    low, minimum = referee.judge([sc], results)
    assert minimum.status == "pass"  # 6.1's defect, pinned by fails_on
    assert minimum.checks[0].expected == "not ok" and minimum.checks[0].passed
    assert low.status == "fail"
    assert low.reason == ("disagreement: min PASS, so the behaviour works on 6.1.0-57-amd64; "
                          "the kernel's own test_memcontrol:test_memcg_low says not ok")
    assert "min" in referee.summary([low, minimum])
    assert referee.summary([low, minimum]).startswith(
        "referee: 2 judgement(s) on 1 kernel(s): 1 agree, 1 disagreement(s), 0 without")


def test_a_whole_binary_error_or_skip_judges_its_subtests(tmp_path):
    sc = _scenario(tmp_path)
    results = [_result("min", K612, "pass"),
               _result("selftest/test_memcontrol", K612, "error", "test_memcontrol crashed",
                       failure_kind="crash")]
    judged = referee.judge([sc], results)
    assert [j.status for j in judged] == ["error", "error"]
    assert judged[0].reason == "the selftest gave no verdict: test_memcontrol crashed"


def test_v1_cells_are_not_judged(tmp_path):
    sc = _scenario(tmp_path, SCENARIO.replace("hierarchies: [v2]", "hierarchies: [v1, v2]"))
    results = [_result("min", K612, "pass", hierarchy="v1"),
               _result("selftest/test_memcontrol/test_memcg_min", K612, "pass")]
    assert referee.judge([sc], results) == []


def test_junit_has_the_judgements_not_the_referees_own_cells(tmp_path):
    sc = _scenario(tmp_path)
    own = _result("selftest/test_memcontrol/test_memcg_min", K612, "fail", "not ok",
                  role="referee")
    results = [_result("min", K612, "pass"), own]
    judged = referee.judge([sc], results)
    root = ET.fromstring(junit_xml(results + judged))
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert names == ["min", "referee/min/test_memcontrol:test_memcg_min"]
    (failure,) = root.iter("failure")
    assert "disagreement: min PASS" in failure.get("message")
    # the role is kept in results.jsonl and read back
    writer = ResultsWriter(tmp_path / "run")
    writer.add(own)
    line = json.loads(writer.jsonl.read_text())
    assert line["role"] == "referee"
    assert ScenarioResult.from_dict(line).role == "referee"
    assert "role" not in _result("min", K612, "pass").to_dict()  # older records unchanged


def test_scenario_names_of_kharness_own_cells_are_refused(tmp_path):
    d = tmp_path / "scenarios" / "referee"
    d.mkdir(parents=True)
    (d / "x.yaml").write_text("description: x\nsteps:\n  - run: \"true\"\n")
    _, problems = scenario.load([tmp_path / "scenarios"])
    (p,) = problems
    assert "scenario name 'referee/x' starts with referee/" in str(p)
