"""`kharness bisect` over Debian's packaged releases, for real: kernels downloaded into the
cache on first use (one unsigned image each, ~70 MB), one boot per step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_run_integration import kharness

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

HERE = Path(__file__).parent / "scenarios" / "bisect"


def bisect(tmp_path: Path, scenario: str, good: str, bad: str, *extra: str):
    out = tmp_path / "b"
    p = kharness("bisect", str(HERE / scenario), "--good", good, "--bad", bad, "--results",
                 str(out), "-q", *extra, timeout=1800)
    doc = json.loads((out / "bisect.json").read_text())
    return p, doc, out


def test_a_scenario_made_to_flip_at_53_is_found_exactly_in_log2_n_plus_2_boots(tmp_path):
    p, doc, out = bisect(tmp_path, "flips-at-53.yaml", "debian:6.1.0-47", "debian:6.1.0-57")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (doc["last_good"], doc["first_bad"]) == ("6.1.0-50-amd64", "6.1.0-53-amd64")
    assert len(doc["releases"]) >= 7 and doc["boots"] <= len(doc["releases"]).bit_length() + 2
    assert "first bad 6.1.0-53-amd64, last good 6.1.0-50-amd64" in p.stdout
    # what changed in between, from the -53 package's changelog: mm/cgroup/sched items first
    changes = doc["changes"]
    assert (changes["from"], changes["to"]) == ("6.1.176-1", "6.1.187-1")
    assert changes["relevant_count"] > 0 and "6.1.187" in changes["stable_releases"]
    assert "changes 6.1.176-1 -> 6.1.187-1" in p.stdout
    # every step is an ordinary run; a rerun with the same arguments reuses them all
    assert (out / "steps" / "6.1.0-53-amd64" / "r1" / "results.jsonl").exists()
    again = kharness("bisect", str(HERE / "flips-at-53.yaml"), "--good", "debian:6.1.0-47",
                     "--bad", "debian:6.1.0-57", "--results", str(out))
    assert again.returncode == 0 and again.stderr.count("reusing") == doc["boots"]


def test_pids_events_changes_at_the_series_boundary_and_not_inside_61(tmp_path):
    p, doc, _ = bisect(tmp_path, "pids-events-at-parent.yaml", "debian:6.1.0-47",
                       "debian:6.12.118+deb12")
    assert p.returncode == 0, p.stdout + p.stderr
    assert doc["last_good"].startswith("6.1.0-") and doc["first_bad"].startswith("6.12.")
    assert doc["boundary"] and "series boundary 6.1 -> 6.12" in p.stdout
    p, doc, _ = bisect(tmp_path / "inside", "pids-events-at-parent.yaml", "debian:6.1.0-47",
                       "debian:6.1.0-57")
    assert p.returncode == 0, p.stdout + p.stderr
    assert doc["no_change"] and doc["boots"] == 2
    assert "no change between 6.1.0-47-amd64 and 6.1.0-57-amd64" in p.stdout
