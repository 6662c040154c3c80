"""`kharness run --referee` for real (issue 10): scenarios on Debian's 6.1 and 6.12, then the
selftest cases they name (built from linux-source-6.12) on the same kernels, and the
judgements. pids/max-parent-events pins 6.1's pids.events defect (`fails_on`), so it agrees
with test_pids_events on both kernels although that test is not ok on 6.1; the two scenarios
of tests/scenarios/opposite are made to claim the opposite of test_pids_max and must be
flagged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

ROOT = Path(__file__).resolve().parent.parent


def test_referee_flags_the_scenarios_that_claim_the_opposite(tmp_path):
    out = tmp_path / "r"
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "scenarios/pids/max-parent-events.yaml",
         "scenarios/pids/max-fork.yaml", "tests/scenarios/opposite", "--referee",
         "--kernel", "debian:6.1", "--kernel", "debian:6.12", "--hierarchy", "v2",
         "--results", str(out), "--junit", str(junit)],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL, check=False,
        cwd=ROOT)
    assert proc.returncode == 1, proc.stderr  # the disagreements (and the scenario that fails)
    got = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        got[(r["scenario"], "6.12" if r["kernel"].startswith("6.12") else "6.1")] = r

    # the selftest cells the referee ran, with their own verdicts, kept with role referee
    events = got[("selftest/test_pids/test_pids_events", "6.1")]
    assert (events["status"], events["role"]) == ("fail", "referee")
    assert got[("selftest/test_pids/test_pids_events", "6.12")]["status"] == "pass"
    assert got[("selftest/test_pids/test_pids_max", "6.1")]["status"] == "pass"
    # only the cases named were kept
    assert {k[0] for k in got if k[0].startswith("selftest/")} == {
        "selftest/test_pids/test_pids_events", "selftest/test_pids/test_pids_max"}

    ref = "referee/pids/max-parent-events/test_pids:test_pids_events"
    for series in ("6.1", "6.12"):  # 6.1: the scenario pins the defect the selftest sees
        assert got[(ref, series)]["status"] == "pass", got[(ref, series)]
        assert got[("referee/pids/max-fork/test_pids:test_pids_max", series)]["status"] \
            == "pass"
        opposite = got[("referee/opposite/claims-no-limit/test_pids:test_pids_max", series)]
        assert opposite["status"] == "fail"
        assert opposite["reason"].startswith("disagreement: opposite/claims-no-limit FAIL, so the "
                                             "behaviour is broken on ")
        assert opposite["reason"].endswith("the kernel's own test_pids:test_pids_max says ok")
        pinned = got[("referee/opposite/pins-a-defect-that-is-not-there/test_pids:test_pids_max",
                      series)]
        assert pinned["status"] == "fail"
        assert "PASS (its ref: fails_on >=6.1), so the behaviour is broken" in pinned["reason"]
    assert got[(ref, "6.1")]["checks"][0]["expected"] == "not ok"

    # the terminal names each disagreement; the summary counts them
    assert "DISAGREE referee/opposite/claims-no-limit/test_pids:test_pids_max" in proc.stderr
    assert "referee: 8 judgement(s) on 2 kernel(s): 4 agree, 4 disagreement(s)" in proc.stderr

    # JUnit: the judgements are cases, the referee's own selftest cells are not
    names = [tc.get("name") for tc in ET.parse(junit).getroot().iter("testcase")]
    assert "referee/opposite/claims-no-limit/test_pids:test_pids_max" in names
    assert not [n for n in names if n.startswith("selftest/")]
    failures = [f.get("message") for f in ET.parse(junit).getroot().iter("failure")]
    assert sum("disagreement:" in m for m in failures) == 4
    info = json.loads((out / "run.json").read_text())
    assert [r["binaries"] for r in info["referee"]] == [["test_pids"], ["test_pids"]]

    # the report's Referee section, disagreements first
    rep = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(out), "--format",
                          "md", "--out", "-"], capture_output=True, text=True, timeout=60,
                         check=False, cwd=ROOT)
    assert rep.returncode == 0, rep.stderr
    section = rep.stdout.split("## Referee", 1)[1]
    assert "4 disagreement(s) in 8 judgement(s)." in section
    rows = [x for x in section.splitlines() if x.startswith("| ") and "DISAGREE" in x]
    assert len(rows) == 2  # two rows (scenario x case), both kernels each
