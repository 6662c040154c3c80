"""Parsing the kernel cgroup selftests' output (harness/selftest/parse.py), on what they
printed in a Debian 6.1 guest."""

from __future__ import annotations

from harness.selftest.parse import parse

PIDS_61 = """\
TAP version 13
1..2
ok 1 test_pids_max
not ok 2 test_pids_events
# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0
"""

CORE_61 = """\
ok 1 test_cgcore_internal_process_constraint
ok 11 test_cgcore_lesser_euid_open
ok 12 # SKIP test_cgcore_lesser_ns_open
"""


def test_tap_with_a_plan():
    out = parse(PIDS_61)
    assert out.plan == 2 and out.missing() == 0 and out.skipped is None
    assert [(s.number, s.name, s.status) for s in out.subtests] == [
        (1, "test_pids_max", "pass"), (2, "test_pids_events", "fail")]


def test_bare_lines_and_a_skip_named_after_the_directive():
    out = parse(CORE_61)
    assert out.plan is None
    assert [(s.name, s.status) for s in out.subtests] == [
        ("test_cgcore_internal_process_constraint", "pass"),
        ("test_cgcore_lesser_euid_open", "pass"), ("test_cgcore_lesser_ns_open", "skip")]


def test_what_a_subtest_printed_is_its_reason():
    out = parse("ok 1 test_a\n# memory.swap.peak: No such file or directory\n"
                "current_peak: cg_read failed\nok 2 # SKIP test_b\r\n")
    b = out.subtests[1]
    assert b.name == "test_b" and b.status == "skip"
    assert b.reason == "memory.swap.peak: No such file or directory; current_peak: cg_read failed"


def test_the_whole_binary_skipped():
    out = parse("TAP version 13\n1..0 # SKIP memory controller isn't available\n")
    assert out.skipped == "memory controller isn't available" and out.subtests == []


def test_exit_skip_after_some_results_is_a_reason_not_a_name():
    out = parse("ok 1 test_a\nok 2 # SKIP Failed to set memory controller\n")
    assert out.subtests[1].name == "subtest2"
    assert out.subtests[1].reason == "Failed to set memory controller"


def test_a_binary_that_died_before_its_plan_was_done():
    out = parse("TAP version 13\n1..3\nok 1 a\n[crash output]\n")
    assert out.missing() == 2 and out.trailing == ["[crash output]"]


def test_a_result_after_a_message_without_its_newline():
    """test_zswap on 6.12 printed `...while wb is enablednot ok 4 test_zswap_writeback_enabled`."""
    out = parse("ok 3 test_zswapin\nzswpwb_after is 0 while wb is enablednot ok 4 "
                "test_zswap_writeback_enabled\nok 5 test_b\n")
    s = out.subtests[1]
    assert (s.number, s.name, s.status) == (4, "test_zswap_writeback_enabled", "fail")
    assert s.reason == "zswpwb_after is 0 while wb is enabled"
    assert [t.name for t in out.subtests] == ["test_zswapin", "test_zswap_writeback_enabled",
                                              "test_b"]
