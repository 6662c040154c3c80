"""Results as data: JSON lines written per scenario, JUnit rendered from them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from harness.results import Check, ResultsWriter, ScenarioResult, junit_xml
from harness.rundir import load_results


def _r(status: str, **kw) -> ScenarioResult:
    base = {"scenario": "memory/oom-kill", "kernel": "6.1.0-56-amd64",
            "kernel_spec": "debian:6.1.0-56", "hierarchy": "v2", "status": status}
    base.update(kw)
    return ScenarioResult(**base)


def test_each_result_is_a_json_line_written_at_once(tmp_path):
    w = ResultsWriter(tmp_path / "run")
    w.add(_r("pass"))
    # the line is on disk before the run ends (a crash keeps it)
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["status"] == "pass"
    w.add(_r("skip", hierarchy="v1", reason="memory controller unavailable on v1: "
             "CONFIG_MEMCG_V1 is not set in 6.12.117+deb12-amd64"))
    loaded = load_results(tmp_path / "run")
    assert [r.status for r in loaded] == ["pass", "skip"]
    assert loaded[1].reason.endswith("6.12.117+deb12-amd64")


def test_junit_has_one_case_per_cell_with_reasons_and_expected_vs_observed():
    check = Check(description="metric oom_kill of hog >= 1", expected=">= 1", observed="0",
                  passed=False, skipped_reason=None)
    results = [
        _r("pass"),
        _r("skip", hierarchy="v1", kernel="6.12.117+deb12-amd64",
           reason="memory controller unavailable on v1: CONFIG_MEMCG_V1 is not set"),
        _r("fail", kernel="6.12.117+deb12-amd64", checks=[check]),
        _r("error", scenario="panic", failure_kind="panic", reason="kernel panic: sysrq",
           console_excerpt="Kernel panic - not syncing: sysrq triggered crash"),
    ]
    root = ET.fromstring(junit_xml(results))
    cases = root.findall(".//testcase")
    assert len(cases) == 4
    skipped = root.find(".//testcase/skipped")
    assert "CONFIG_MEMCG_V1" in skipped.get("message")
    failure = root.find(".//testcase/failure")
    msg = failure.get("message")
    assert "expected >= 1, observed 0" in msg
    assert "6.12.117+deb12-amd64" in msg and "v2" in msg
    error = root.find(".//testcase/error")
    assert error.get("message").startswith("panic:")
    assert "sysrq triggered crash" in error.text


def test_taint_flags_are_named():
    from harness.scenario_run import taint_flags

    assert taint_flags(0) == "0 (none)"
    assert taint_flags(512) == "512 (W)"
    assert taint_flags(4096 + 8192) == "12288 (OE)"
