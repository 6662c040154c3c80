"""Operator semantics of harness/checks.py: sizes, tolerances, ranges, words, max, skips."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.checks import Check, describe, evaluate, skip
from harness.scenario import Expectation


def metric(op: str, value: Any, tolerance: Any = None, target: str = "peak",
           cgroup: str = "hog") -> Expectation:
    return Expectation(index=0, kind="metric", target=target, op=op, value=value,
                       cgroup=cgroup, tolerance=tolerance)


def file(op: str, value: Any, target: str = "memory.max", key: str | None = None,
         cgroup: str = "hog") -> Expectation:
    return Expectation(index=0, kind="file", target=target, key=key, op=op, value=value,
                       cgroup=cgroup)


def step(op: str, value: Any, field: str = "exit_status") -> Expectation:
    return Expectation(index=0, kind="step", target="hog", field=field, op=op, value=value)


M = 1024 * 1024


# --- the text a report shows -------------------------------------------------------------------

def test_approx_with_a_size_reads_as_the_scenario_wrote_it() -> None:
    c = evaluate(metric("approx", "32M", "10%"), 33554432)
    assert c == Check(description="metric peak of hog approx 32M ±10%",
                      expected="peak approx 32M ±10%", observed="33554432 (32M)", passed=True)
    assert c.message == "expected peak approx 32M ±10%, observed 33554432 (32M)"
    assert c.status == "pass"


def test_a_failed_approx_says_by_how_much() -> None:
    c = evaluate(metric("approx", "32M", "10%"), 40 * M)
    assert not c.passed and c.status == "fail"
    assert c.message == "expected peak approx 32M ±10%, observed 41943040 (40M, +25.0%)"


@pytest.mark.parametrize(("expectation", "text"), [
    (metric(">=", 1, target="oom_kill"), "metric oom_kill of hog >= 1"),
    (metric("<", "1G", target="usage", cgroup=""), "metric usage of the scenario's cgroup < 1G"),
    (metric("range", ["16M", "48M"]), "metric peak of hog in [16M, 48M]"),
    (file("==", 1, target="memory.events", key="oom_group_kill"),
     "file memory.events oom_group_kill of hog == 1"),
    (file("==", "max"), "file memory.max of hog == max"),
    (step("==", "SIGKILL", field="signal"), "step hog signal == SIGKILL"),
    (step("==", 0), "step hog exit_status == 0"),
    (metric("approx", 2.5, 0.25, target="cpu_usage"), "metric cpu_usage of hog approx 2.5 ±0.25"),
])
def test_descriptions(expectation: Expectation, text: str) -> None:
    assert describe(expectation) == text


def test_observed_sizes_are_shown_for_byte_metrics_and_size_values_only() -> None:
    assert evaluate(metric(">", 0, target="usage"), 5 * M).observed == "5242880 (5M)"
    assert evaluate(metric(">=", 1, target="oom_kill"), 2048).observed == "2048"
    assert evaluate(file("==", "32M"), "33554432").observed == "33554432 (32M)"
    assert evaluate(file("==", "32M"), "33554431").observed == "33554431 (32.0M)"
    assert evaluate(metric(">", 0, target="usage"), 1000).observed == "1000"


def test_long_or_multiline_observed_text_is_quoted_and_cut() -> None:
    c = evaluate(file("==", "x", target="memory.events"), "low 0\nhigh 0\nmax 3\n")
    assert c.observed == repr("low 0\nhigh 0\nmax 3")
    c = evaluate(file("==", "x"), "y" * 500)
    assert len(c.observed) < 250 and c.observed.endswith("...'")


# --- operators ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("op", "value", "observed", "passed"), [
    ("==", 1, 1, True),
    ("==", 1, "1", True),  # a file's text
    ("==", 1, 1.0, True),
    ("==", 1, 2, False),
    ("!=", 1, 2, True),
    ("!=", 1, "1", False),
    ("==", "32M", 33554432, True),  # sizes compare as bytes
    ("==", "32M", "33554432", True),
    ("==", "32M", 33554431, False),
    ("==", "1G", 1024 * 1024 * 1024, True),
    ("==", "512K", 524288, True),
    ("<", "32M", 32 * M - 1, True),
    ("<", "32M", 32 * M, False),
    ("<=", "32M", 32 * M, True),
    ("<=", "32M", 32 * M + 1, False),
    (">", 0, 1, True),
    (">", 0, 0, False),
    (">=", 1, 1, True),
    (">=", 1, 0, False),
    (">=", "1.5G", 1536 * M, True),
    ("<", 10.5, 10.4999, True),
    ("<", 10.5, "10.5", False),
])
def test_comparison_operators(op: str, value: Any, observed: Any, passed: bool) -> None:
    assert evaluate(file(op, value), observed).passed is passed


@pytest.mark.parametrize(("value", "tolerance", "observed", "passed"), [
    ("32M", "10%", 32 * M, True),
    ("32M", "10%", int(32 * M * 1.1), True),  # the bound is inclusive
    ("32M", "10%", int(32 * M * 1.1) + 1, False),
    ("32M", "10%", math.ceil(32 * M * 0.9), True),
    ("32M", "10%", math.ceil(32 * M * 0.9) - 1, False),
    ("32M", "4M", 36 * M, True),  # an absolute amount, as a size
    ("32M", "4M", 36 * M + 1, False),
    ("32M", "4M", 28 * M, True),
    ("32M", "4M", 28 * M - 1, False),
    (100, 5, 105, True),  # an absolute amount, as a number
    (100, 5, 94, False),
    (2.5, 0.25, "2.7", True),
    (2.5, "0.5%", 2.51, True),
    (2.5, "0.5%", 2.52, False),
    (0, "10%", 0, True),
    (0, "10%", 1, False),
    ("32M", "10%", "max", False),
])
def test_approx(value: Any, tolerance: Any, observed: Any, passed: bool) -> None:
    assert evaluate(metric("approx", value, tolerance), observed).passed is passed


@pytest.mark.parametrize(("bounds", "observed", "passed"), [
    ([2, 3], 2, True),  # inclusive at both ends
    ([2, 3], 3, True),
    ([2, 3], 1, False),
    ([2, 3], 4, False),
    (["16M", "48M"], 16 * M, True),
    (["16M", "48M"], 48 * M, True),
    (["16M", "48M"], 48 * M + 1, False),
    (["16M", "48M"], "33554432", True),
    (["83782K", "125156K"], 100 * M, True),
    ([0, "max"], 10**15, True),
])
def test_range(bounds: list[Any], observed: Any, passed: bool) -> None:
    assert evaluate(metric("range", bounds), observed).passed is passed


def test_max_is_a_word_for_equality_and_above_any_number_in_order() -> None:
    assert evaluate(file("==", "max"), "max").passed
    assert evaluate(file("==", "max"), "max\n").passed
    assert not evaluate(file("==", "max"), "33554432").passed
    assert not evaluate(file("==", "32M"), "max").passed
    assert evaluate(file("!=", "max"), "33554432").passed
    assert evaluate(file(">", "1G"), "max").passed
    assert not evaluate(file("<", "1G"), "max").passed
    assert evaluate(file(">=", "max"), "max").passed
    assert evaluate(file("<", "max"), "9223372036854771712").passed


def test_words_compare_as_written() -> None:
    assert evaluate(file("==", "FROZEN", target="freezer.state"), "FROZEN").passed
    assert not evaluate(file("==", "FROZEN", target="freezer.state"), "THAWED").passed
    assert evaluate(file("!=", "FROZEN", target="freezer.state"), "THAWED").passed
    assert evaluate(file("==", "0-1", target="cpuset.cpus"), "0-1").passed
    assert evaluate(file("==", "50000 100000", target="cpu.max"), "50000 100000\n").passed
    assert evaluate(step("==", "EINVAL", field="errno"), "EINVAL").passed


def test_ordering_a_word_fails_and_says_why() -> None:
    c = evaluate(file(">", 0), "FROZEN")
    assert not c.passed and c.observed == "FROZEN (not a number)"
    c = evaluate(metric("range", [1, 2]), "lots")
    assert not c.passed and c.observed == "lots (not a number)"


@pytest.mark.parametrize(("value", "observed", "passed"), [
    ("SIGKILL", "SIGKILL", True),
    ("SIGKILL", 9, True),
    ("SIGKILL", "KILL", True),
    ("SIGKILL", "9", True),
    ("SIGKILL", "SIGTERM", False),
    ("SIGKILL", "none", False),  # exited normally: a failure, not a skip
    ("none", "none", True),
    ("none", 0, True),
    (9, "SIGKILL", True),
])
def test_signals(value: Any, observed: Any, passed: bool) -> None:
    assert evaluate(step("==", value, field="signal"), observed).passed is passed


def test_no_signal_is_a_failure_not_a_skip() -> None:
    # The runner reports a step that exited on its own with signal None and no reason.
    c = evaluate(step("==", "SIGKILL", field="signal"), None)
    assert c.status == "fail"
    assert c.message == "expected signal == SIGKILL, observed none"
    assert evaluate(step("==", "none", field="signal"), None).passed
    c = evaluate(step("==", "SIGKILL", field="signal"), None, "step hog did not run")
    assert c.status == "skip" and c.skipped_reason == "step hog did not run"


def test_booleans() -> None:
    c = evaluate(step("==", True, field="timed_out"), False)
    assert not c.passed and c.message == "expected timed_out == true, observed false"
    assert evaluate(step("==", False, field="timed_out"), False).passed


def test_signal_numbers_are_named_in_the_observed_text() -> None:
    c = evaluate(step("==", "SIGKILL", field="signal"), 15)
    assert c.message == "expected signal == SIGKILL, observed 15 (SIGTERM)"
    assert evaluate(step("!=", "SIGKILL", field="signal"), "SIGTERM").passed


def test_exit_status_and_stdout_keys() -> None:
    assert evaluate(step("==", 0), 0).passed
    assert not evaluate(step("==", 0), 137).passed
    assert evaluate(step(">=", 2, field="forked"), "2").passed
    assert evaluate(step("approx", 5, field="cpu_s"), "4.9").passed is False  # no tolerance
    c = evaluate(Expectation(index=0, kind="step", target="hog", field="cpu_s", op="approx",
                             value=5, tolerance="5%"), "4.9")
    assert c.passed and c.message == "expected cpu_s approx 5 ±5%, observed 4.9"


# --- skipped -----------------------------------------------------------------------------------

def test_nothing_observed_is_skipped_with_the_callers_reason() -> None:
    e = metric("approx", "32M", "10%", target="swap_peak")
    c = evaluate(e, None, "memory.swap.peak does not exist on 6.1.0-56-amd64")
    assert c.status == "skip" and not c.passed
    assert c.skipped_reason == "memory.swap.peak does not exist on 6.1.0-56-amd64"
    assert c.message == "skipped: memory.swap.peak does not exist on 6.1.0-56-amd64"
    assert c.observed == ""
    assert c.expected == "swap_peak approx 32M ±10%"
    assert evaluate(e, None).skipped_reason == "nothing was observed"


def test_skip_for_an_expectation_that_does_not_apply() -> None:
    c = skip(file("==", 1, target="memory.events", key="oom_group_kill"),
             "when: hierarchy v2 (this is v1)")
    assert c.status == "skip"
    assert c.description == "file memory.events oom_group_kill of hog == 1"


def test_zero_and_empty_observations_are_not_skips() -> None:
    assert evaluate(metric("==", 0, target="oom_kill"), 0).status == "pass"
    assert evaluate(file("==", ""), "").status == "pass"
