"""Figures out of results: what report and compare read."""

from harness.figures import figures, number
from harness.results import ScenarioResult


def typed(record: dict) -> ScenarioResult:
    """A result as results.jsonl would hold these fields (the others left out)."""
    return ScenarioResult.from_dict({"scenario": "x", "kernel": "6.1.0-57-amd64",
                                     "hierarchy": "v2", "status": "pass", **record})


def test_numbers_from_observed_values():
    assert number("33554432 (32M)") == 33554432
    assert number("0.613927") == 0.613927
    assert number("-3") == -3
    assert number("EAGAIN") is None and number("") is None and number("error EINVAL") is None


def test_figures_from_checks_and_samples():
    result = {
        "checks": [
            {"description": "metric oom_kill of hog == 0", "observed": "0", "passed": True,
             "skipped_reason": None},
            {"description": "metric peak of hog approx 32M ±5%", "observed": "33554432 (32M)",
             "passed": True, "skipped_reason": None},
            {"description": "metric swap_peak of hog in [16M, 64M]", "observed": "",
             "passed": False, "skipped_reason": "memory.swap.peak: not in this kernel"},
            {"description": "step hog cpu_s in [3.2, 4.2]", "observed": "4.042", "passed": True,
             "skipped_reason": None},
            {"description": "step hog exit_status == 0", "observed": "0", "passed": True,
             "skipped_reason": None},
            {"description": "step open errno == EAGAIN", "observed": "EAGAIN", "passed": True,
             "skipped_reason": None},
        ],
        "samples": {"hog": [[0.1, 0, 0], [0.2, 30 << 20, 1 << 20], [0.3, 20 << 20, 5 << 20]],
                    "idle": []},
    }
    assert figures(typed(result)) == {
        "metric oom_kill of hog": 0.0,
        "metric peak of hog": 33554432.0,
        "step hog cpu_s": 4.042,
        "sampled usage peak of hog": float(30 << 20),
        "sampled swap peak of hog": float(5 << 20),
    }


def test_cpu_percent_and_io_read_rate_are_derived_from_steps():
    result = {
        "checks": [
            {"description": "metric io_read_bytes of reader approx 4M ±5%",
             "observed": "4194304 (4M)", "passed": True, "skipped_reason": None},
        ],
        "steps": [
            {"name": "hog", "command": "cpuhog -n 2 2", "cgroup": "busy", "duration": 2.1,
             "fields": {"cpu_s": "3.000", "wall_s": "2.000"}},
            {"name": "idle", "command": "cpuhog 1", "cgroup": "busy", "duration": 1.0,
             "fields": {"cpu_s": "0.5", "wall_s": "0"}},  # no wall time: no percentage
            {"name": "read", "command": "dd if=/dev/vda", "cgroup": "reader", "duration": 4.0,
             "fields": {}},
            {"name": "step3", "write": "io.max", "value": "x", "cgroup": "reader"},
        ],
    }
    got = figures(typed(result))
    assert got["step hog cpu_pct"] == 150.0
    assert "step idle cpu_pct" not in got
    assert got["io read rate of reader"] == 4194304 / 4.0
