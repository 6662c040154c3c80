"""`kharness backtrace`'s one-off scenario and the capture checks, without a guest: the
scenario goes through the same loader as every file; the checks are fed real gdb text."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import backtrace
from harness.capture import BreakpointSpec, GdbCapture, Hit, Planned
from harness.events import EventBus
from harness.frames import diff_chains, format_diff, format_gdb, parse_gdb_backtrace
from harness.results import ScenarioResult, Status
from harness.scenario import GdbBreakpoint, load

GOLDEN = Path(__file__).resolve().parent / "golden" / "backtraces"


def test_the_one_off_scenario_is_valid_and_asks_for_the_fault_charge(tmp_path):
    req = backtrace.Request("try_charge_memcg", ["debian:6.1"], swap="128M",
                            knobs=("memory.max=32M", "memory.swap.max=0"), count=2)
    path = backtrace.write_scenario(req, tmp_path)
    (sc,), problems = load([path])
    assert problems == []
    (bp,) = sc.gdb
    assert (bp.location, bp.comm, bp.count) == ("try_charge_memcg", "memhog", 2)
    assert bp.callers == ("__mem_cgroup_charge", "do_anonymous_page")
    assert sc.machine.swap == "128M"
    assert list(sc.hierarchies) == ["v2"]


def test_comm_and_callers_defaults_can_be_overridden():
    req = backtrace.Request("try_charge_memcg", [], workload="sh -c 'memhog 64'",
                            callers=("none",))
    assert req.effective_comm is None and req.effective_callers == ()
    assert backtrace.Request("x", [], workload="/bin/memhog 8").effective_comm == "memhog"
    assert backtrace.Request("x", [], comm="").effective_comm is None


def test_a_bad_knob_setting_is_refused():
    with pytest.raises(ValueError, match="KNOB=VALUE"):
        backtrace.knob_values(("memory.max",))


def test_a_bad_knob_name_is_a_scenario_problem_before_boot(tmp_path):
    req = backtrace.Request("try_charge_memcg", [], knobs=("memory.maxx=1M",))
    _, problems = load([backtrace.write_scenario(req, tmp_path)])
    assert problems and "memory.maxx" in str(problems[0])


def test_the_script_replays_the_same_command(tmp_path):
    req = backtrace.Request("mem_cgroup_out_of_memory", ["debian:6.12"], workload="memhog 64")
    backtrace.write_script(req, tmp_path / "s.sh")
    text = (tmp_path / "s.sh").read_text()
    assert text.startswith("#!/bin/sh")
    assert ("backtrace mem_cgroup_out_of_memory --kernel debian:6.12 --hierarchy v2 "
            "--set memory.max=32M --workload 'memhog 64' --count 1") in text
    assert (tmp_path / "s.sh").stat().st_mode & 0o111


def _capture_with(bp: GdbBreakpoint, traces: list[str], skip: str | None = None) -> GdbCapture:
    cap = GdbCapture([], Path("/nonexistent/vmlinux"), 1, "6.1.0-57-amd64", EventBus())
    spec = None if skip else BreakpointSpec(bp.location, comm="memhog")
    hits = [Hit(spec, "try_charge_memcg at mm/memcontrol.c:2629", t, parse_gdb_backtrace(t),
                {}, "memhog", 100 + i, 0.5) for i, t in enumerate(traces)]
    cap.planned = [Planned(bp, spec, skip, hits)]
    return cap


def test_frames_in_order_pass_and_a_missing_frame_fails_showing_the_trace():
    text = (GOLDEN / "charge-6.1.handmade.gdb").read_text()
    good = GdbBreakpoint(0, "try_charge_memcg", frames=("try_charge_memcg", "do_anonymous_page",
                                                         "handle_mm_fault"))
    assert all(c.passed for c in _capture_with(good, [text]).checks())
    bad = GdbBreakpoint(0, "try_charge_memcg", frames=("try_charge_memcg", "do_swap_page"))
    hits, frames = _capture_with(bad, [text]).checks()
    assert hits.passed and not frames.passed
    assert "lacks do_swap_page" in frames.observed and "#0  try_charge_memcg (" in frames.observed
    # order matters: handle_mm_fault is an outer frame of do_anonymous_page
    wrong_order = GdbBreakpoint(0, "try_charge_memcg",
                                frames=("handle_mm_fault", "do_anonymous_page"))
    assert not _capture_with(wrong_order, [text]).checks()[1].passed


def test_not_frames_hit_counts_and_absent_functions():
    text = (GOLDEN / "charge-6.1.handmade.gdb").read_text()
    bp = GdbBreakpoint(0, "try_charge_memcg", not_frames=("do_anonymous_page",), count=3,
                       hits=(2, 3))
    hits, not_frames = _capture_with(bp, [text]).checks()
    assert not hits.passed and hits.observed == "1"
    assert not not_frames.passed and "has do_anonymous_page" in not_frames.observed
    none = GdbBreakpoint(0, "try_charge_memcg", frames=("try_charge_memcg",))
    hits, frames = _capture_with(none, []).checks()
    assert not hits.passed and not frames.passed and frames.observed == "no hit was captured"
    absent = _capture_with(none, [], skip="function x does not exist in 6.12")
    assert all(c.skipped_reason == "function x does not exist in 6.12" for c in absent.checks())


def test_gdb_commands_go_into_the_scenario_and_the_script(tmp_path):
    req = backtrace.Request("try_charge_memcg", ["build:v612-debug"],
                            capture=("$lx_current().comm",), commands=("lx-dmesg",))
    (sc,), problems = load([backtrace.write_scenario(req, tmp_path)])
    assert problems == []
    (bp,) = sc.gdb
    assert bp.commands == ("lx-dmesg",) and bp.capture == ("$lx_current().comm",)
    argv = backtrace.command_line(req)
    assert argv[argv.index("--gdb-command") + 1] == "lx-dmesg"


def test_the_report_is_text_for_the_command_line_to_print(capsys):
    """What `kharness backtrace` prints, from the results of two kernels and a failed one; the
    report itself prints nothing (cli.cmd_backtrace does)."""
    bp = GdbBreakpoint(0, "try_charge_memcg", capture=("nr_pages",))
    traces = {release: (GOLDEN / f"charge-{release}.handmade.gdb").read_text()
              for release in ("6.1", "6.12")}

    def result(release: str, backtraces: list, reason: str = "") -> ScenarioResult:
        return ScenarioResult("backtrace/try_charge_memcg", release, f"debian:{release}", "v2",
                              Status.PASS if backtraces else Status.ERROR, reason=reason,
                              backtraces=backtraces)
    spec = BreakpointSpec(bp.location, comm="memhog")
    results = []
    for release, text in traces.items():
        cap = GdbCapture([], Path("/nonexistent/vmlinux"), 1, release, EventBus())
        cap.planned = [Planned(bp, spec, None, [Hit(
            spec, "try_charge_memcg at mm/memcontrol.c:2629", text, parse_gdb_backtrace(text),
            {"nr_pages": "1"}, "memhog", 100, 0.5, {"lx-dmesg": "[    0.000000] Linux version"})])]
        results.append(result(release, cap.backtraces()))
    results.append(result("6.6", [], reason="the machine did not boot"))
    req = backtrace.Request("try_charge_memcg", ["debian:6.1", "debian:6.12", "debian:6.6"])
    text, doc, ok = backtrace.report(results, req)
    assert capsys.readouterr() == ("", "")
    bts = {r: parse_gdb_backtrace(t) for r, t in traces.items()}
    expected = "".join(
        f"== try_charge_memcg on {release} (v2), hit 1 of 1 in memhog[100] after 0.50s\n"
        f"   nr_pages = 1\n{format_gdb(bts[release])}\n"
        "(gdb) lx-dmesg\n[    0.000000] Linux version\n" for release in ("6.1", "6.12"))
    expected += "== try_charge_memcg on 6.6 (v2): no backtrace: the machine did not boot\n"
    expected += format_diff(diff_chains(bts["6.1"], bts["6.12"]), "6.1", "6.12") + "\n"
    assert text == expected
    assert not ok
    assert [k["kernel"] for k in doc["kernels"]] == ["6.1", "6.12", "6.6"]
    assert doc["differences"][0]["from"] == "6.1" and doc["differences"][0]["to"] == "6.12"
