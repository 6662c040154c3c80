"""results.jsonl as a format: what older kharness versions wrote still reads, into the typed
results, and writes back byte for byte; a result read and written again is the same line.

tests/golden/results/ holds files written by the dict-based results (see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.capture import BreakpointSpec, GdbCapture, Hit, Planned
from harness.events import EventBus
from harness.frames import Frame, parse_gdb_backtrace
from harness.results import (
    CapturedBacktrace,
    Check,
    ResultsWriter,
    Sample,
    ScenarioResult,
    Status,
    StepOutcome,
    WriteOutcome,
    junit_xml,
)
from harness.rundir import RunDirError, read_run
from harness.scenario import GdbBreakpoint

GOLDEN = Path(__file__).resolve().parent / "golden" / "results"
BACKTRACES = GOLDEN.parent / "backtraces"
FILES = ["synthetic.results.jsonl", "memory-pids-6.1.results.jsonl"]


def _capture(bp: GdbBreakpoint, text: str) -> GdbCapture:
    """A capture that got one hit with gdb's `text`, without gdb."""
    cap = GdbCapture([], Path("/nonexistent/vmlinux"), 1, "6.12.117+deb12-amd64", EventBus())
    spec = BreakpointSpec(bp.location, comm="memhog")
    hit = Hit(spec, "try_charge_memcg at mm/memcontrol.c:2229", text, parse_gdb_backtrace(text),
              {"nr_pages": "1"}, "memhog", 321, 0.25)
    cap.planned = [Planned(bp, spec, None, [hit])]
    return cap


def _run_dir(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name.split(".")[0]
    d.mkdir()
    (d / "results.jsonl").write_bytes((GOLDEN / name).read_bytes())
    return d


@pytest.mark.parametrize("name", FILES)
def test_an_older_results_jsonl_reads_typed_and_writes_back_byte_for_byte(tmp_path, name):
    run = read_run(_run_dir(tmp_path, name))
    lines = (GOLDEN / name).read_text().splitlines()
    assert [r.line for r in run.records] == list(range(1, len(lines) + 1))
    for record, line in zip(run.records, lines):
        assert record.result.to_json() == line, f"line {record.line}"
    writer = ResultsWriter(tmp_path / "again")
    for r in run.results():
        writer.add(r)
    assert writer.jsonl.read_bytes() == (GOLDEN / name).read_bytes()


def test_every_part_of_a_result_is_typed():
    run_lines = (GOLDEN / "synthetic.results.jsonl").read_text().splitlines()
    results = [ScenarioResult.from_dict(json.loads(line)) for line in run_lines]
    ok, _, skipped, error, gdb = results
    assert [r.status for r in results] == [Status.PASS, Status.FAIL, Status.SKIP, Status.ERROR,
                                          Status.FAIL]
    assert all(isinstance(c, Check) for r in results for c in r.checks)
    write, run, bad_write, timed_out = ok.steps
    assert isinstance(write, WriteOutcome) and write.errno is None
    assert isinstance(bad_write, WriteOutcome) and bad_write.errno == "EINVAL"
    assert isinstance(run, StepOutcome) and run.signal == "SIGKILL"
    assert run.fields["cpu_s"] == "0.5" and ok.run_steps() == [run, timed_out]
    assert timed_out.timed_out and timed_out.exit_status == -1
    assert ok.samples["hog"][-1] == Sample(3.9, 33554432, 1048576)
    assert ok.samples["."][0].swap is None
    assert [c.description for c in ok.failed_checks()] == []
    assert ok.checks[2].status == Status.SKIP
    assert skipped.reason and error.failure_kind == "panic"
    parsed, other, unparsed = gdb.backtraces
    assert all(isinstance(b, CapturedBacktrace) for b in gdb.backtraces)
    assert all(isinstance(f, Frame) for f in parsed.frames)
    assert parsed.frames[0].function == "try_charge_memcg" and parsed.values
    assert parsed.truncated_at == "asm_exc_page_fault"
    assert other.outputs == {"lx-dmesg": "[ 1.0] hello"}
    assert unparsed.frames == () and unparsed.text == unparsed.raw
    chain = parsed.chain()
    assert chain.source == "gdb" and chain.functions()[:2] == ["try_charge_memcg", "try_charge"]


def test_the_junit_of_older_results_is_unchanged(tmp_path):
    run = read_run(_run_dir(tmp_path, "synthetic.results.jsonl"))
    assert junit_xml(run.results()) == (GOLDEN / "synthetic.junit.xml").read_text()


def test_a_result_made_now_goes_write_read_write_unchanged(tmp_path):
    bp = GdbBreakpoint(0, "try_charge_memcg", frames=("try_charge_memcg", "do_anonymous_page"))
    cap = _capture(bp, (BACKTRACES / "charge-6.12.handmade.gdb").read_text())
    result = ScenarioResult(
        scenario="backtraces/charge-fault", kernel="6.12.117+deb12-amd64",
        kernel_spec="debian:6.12.117+deb12", hierarchy="v2", status=Status.PASS,
        checks=cap.checks(), backtraces=cap.backtraces(),
        steps=[WriteOutcome("step0", "memory.max", "32M", None, "/sys/fs/cgroup/x/memory.max"),
               StepOutcome("hog", "memhog 64", "hog", 0, None, False, 60.0, 1.5, "ok\n", "",
                           {"reached_mib": "64"})],
        samples={"hog": [Sample(1.0, 4096, 0), Sample(1.1, 8192, None)]},
        limits={"hog": {"memory.max": 32 << 20}}, retries=["m01-boot1: oops"], duration=2.5)
    first = ResultsWriter(tmp_path / "a")
    first.add(result)
    (back,) = read_run(tmp_path / "a").results()
    assert back == result
    second = ResultsWriter(tmp_path / "b")
    second.add(back)
    assert second.jsonl.read_bytes() == first.jsonl.read_bytes()
    data = json.loads(first.jsonl.read_text())
    assert data["status"] == "pass" and data["samples"]["hog"] == [[1.0, 4096, 0], [1.1, 8192,
                                                                                    None]]
    assert data["backtraces"][0]["frames"][0]["function"] == "try_charge_memcg"
    assert set(data["steps"][0]) == {"name", "write", "value", "errno", "file"}
    assert set(data["steps"][1]) == {"name", "command", "cgroup", "exit_status", "signal",
                                     "timed_out", "timeout", "duration", "stdout", "stderr",
                                     "fields"}


def test_fields_a_newer_kharness_wrote_are_kept_and_older_ones_default(tmp_path):
    newer = {"scenario": "x", "kernel": "6.1.0-57-amd64", "kernel_spec": "debian:6.1",
             "hierarchy": "v2", "status": "pass", "energy_joules": 12.5}
    r = ScenarioResult.from_dict(newer)
    assert json.loads(r.to_json())["energy_joules"] == 12.5
    assert r.limits == {} and r.retries == [] and r.backtraces == []  # older: not written


def test_a_record_whose_parts_are_not_results_is_named_with_its_line(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    good = (GOLDEN / "synthetic.results.jsonl").read_text().splitlines()[0]
    broken = json.loads(good)
    broken["checks"] = {"description": "not a list"}
    (d / "results.jsonl").write_text(good + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(RunDirError, match=r"results\.jsonl:2: not a result: checks: not a "
                       "JSON list"):
        read_run(d)
    broken = json.loads(good)
    broken["samples"]["hog"][1] = 7
    (d / "results.jsonl").write_text(json.dumps(broken) + "\n")
    with pytest.raises(RunDirError, match=r"results\.jsonl:1: not a result: "
                       r"samples\['hog'\]\[1\]: not a \[t, usage, swap\] list"):
        read_run(d)
