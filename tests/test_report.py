"""`kharness report` on a small synthetic run directory: the model, what differs and why, the
three renderers, the command line; and the `limits` the runner records for it."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness import report
from harness.cli import main
from harness.results import Sample, ScenarioResult
from harness.rundir import load_results
from harness.runner import scenario_limits
from harness.scenario import load

K61, K612 = "6.1.0-56-amd64", "6.12.117+deb12-amd64"
SPEC = {K61: "debian:6.1", K612: "debian:6.12"}
MEMCG_V1_SKIP = (f"memory controller unavailable on v1: CONFIG_MEMCG_V1 is not set in {K612} "
                 "(mount -t cgroup -o memory: Invalid argument)")
HOG_SAMPLES = [[3.7, 0, 0], [3.8, 20 << 20, 0], [3.9, 32 << 20, 1 << 20],
               [4.0, 32 << 20, 12 << 20]]


def check(description: str, observed: str = "", passed: bool = True,
          skipped: str | None = None, expected: str = "") -> dict:
    return {"description": description, "expected": expected or description.split(" ", 1)[1],
            "observed": observed, "passed": passed, "skipped_reason": skipped}


def result(scenario: str, kernel: str, hierarchy: str, status: str = "pass",
           **kw: object) -> dict:
    data = {"scenario": scenario, "kernel": kernel, "kernel_spec": SPEC[kernel],
            "hierarchy": hierarchy, "status": status,
            "description": f"{scenario}: what it shows"}
    if status in ("pass", "fail"):
        data["machine"] = f"m01-{kernel}-{hierarchy}-boot1"
    data.update(kw)
    return data


def oom(kernel: str, hierarchy: str, kills: int = 1) -> dict:
    return result("memory/oom-kill", kernel, hierarchy, checks=[
        check("step hog signal == SIGKILL", "SIGKILL"),
        check("metric oom_kill of hog >= 1", str(kills)),
        check("metric peak of hog approx 32M ±5%", "33554432 (32M)")],
        samples={"hog": HOG_SAMPLES}, limits={"hog": {"memory.max": 32 << 20}})


def peak(kernel: str, hierarchy: str) -> dict:
    if hierarchy == "v1":
        swap = check("metric swap_peak of hog in [16M, 64M]", passed=False,
                     skipped="swap_peak has no v1 counterpart")
    elif kernel == K61:
        swap = check("metric swap_peak of hog in [16M, 64M]", passed=False,
                     skipped=f"swap_peak: memory.swap.peak does not exist on {K61} (v2)")
    else:
        swap = check("metric swap_peak of hog in [16M, 64M]", "31457280 (30M)")
    return result("memory/peak", kernel, hierarchy, checks=[
        check("metric peak of hog approx 32M ±5%", "33554432 (32M)"), swap],
        samples={"hog": HOG_SAMPLES},
        limits={"hog": {"memory.max": 32 << 20}, ".": {"memory.high": 1 << 30}})


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "r1"
    lines = [
        oom(K61, "v1"), oom(K61, "v2"),
        result("memory/oom-kill", K612, "v1", "skip", reason=MEMCG_V1_SKIP),
        oom(K612, "v2"),
        peak(K61, "v1"), peak(K61, "v2"),
        result("memory/peak", K612, "v1", "skip", reason=MEMCG_V1_SKIP),
        peak(K612, "v2"),
        # v2 only: the v1 skips are the scenario's design, not a difference to explain
        *(result("memory/oom-group", k, "v1", "skip", reason="the scenario applies to v2 only")
          for k in (K61, K612)),
        result("memory/oom-group", K61, "v2",
               checks=[check("metric oom_kill of grp >= 1", "3")]),
        result("memory/oom-group", K612, "v2",
               checks=[check("metric oom_kill of grp >= 1", "1")]),
        # figures within the tolerance or below the unit's floor: no difference
        *(result("cpu/max-quota", k, h, checks=[
            check("metric cpu_usage of busy approx 2 ±20%", cpu),
            check("metric peak of busy < 1M", peak_)])
          for k, h, cpu, peak_ in ((K61, "v1", "2.0", "100000"), (K61, "v2", "2.05", "200000"),
                                   (K612, "v1", "1.95", "150000"),
                                   (K612, "v2", "2.12", "900000"))),
        # fails on 6.1 v2 only
        result("rules/rmdir", K61, "v2", "fail", checks=[
            check("step rmdir error == EBUSY", "ENOENT", passed=False,
                  expected="error == EBUSY")]),
        *(result("rules/rmdir", k, h, checks=[check("step rmdir error == EBUSY", "EBUSY")])
          for k, h in ((K61, "v1"), (K612, "v1"), (K612, "v2"))),
    ]
    d.mkdir()
    (d / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    flags = {K61: {"MEMCG": "y", "MEMCG_V1": "-", "SWAP": "y"},
             K612: {"MEMCG": "y", "MEMCG_V1": "n", "SWAP": "y"}}
    run = {"accel": "tcg", "qemu": "QEMU emulator version 7.2.22", "host": "vm",
           "host_kernel": "6.18", "python": "3.11", "started_at": "2026-01-01T00:00:00Z",
           "argv": ["kharness", "run", "scenarios/"],
           "scenarios": ["memory/peak", "memory/oom-kill", "memory/oom-group", "cpu/max-quota",
                         "rules/rmdir"],
           "kernels": [{"spec": SPEC[k], "release": k, "package": f"linux-image-{k}",
                        "package_version": "1", "config_sha256": "ab" * 32, "flags": flags[k]}
                       for k in (K61, K612)]}
    run["kernels"][1]["build"] = {"source": "debian:6.12", "key": "8d1b8acf",
                                  "fragments": [{"path": "kconfig/base.config",
                                                 "sha256": "78db" * 16}],
                                  "reproducer": "kharness kernel build --source debian:6.12"}
    (d / "run.json").write_text(json.dumps(run))
    for x in lines:
        if x.get("machine"):
            log = d / "machines" / x["machine"] / "console.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("KHARNESS:init\n")
    return d


def row(model: report.Report, name: str) -> report.Row:
    (found,) = [r for r in model.rows if r.scenario == name]
    return found


# --- the model --------------------------------------------------------------------------------

def test_matrix_columns_rows_and_counts(run_dir):
    model = report.build(run_dir)
    assert [c.label for c in model.columns] == [f"{K61} v1", f"{K61} v2", f"{K612} v1",
                                                f"{K612} v2"]
    # run.json's order of scenarios
    assert [r.scenario for r in model.rows] == ["memory/peak", "memory/oom-kill",
                                                "memory/oom-group", "cpu/max-quota",
                                                "rules/rmdir"]
    assert model.counts == {"pass": 15, "fail": 1, "skip": 4, "error": 0}
    cell = row(model, "memory/oom-kill").cells[f"{K61} v2"]
    assert cell.console == f"machines/m01-{K61}-v2-boot1/console.log"
    assert {f.label: f.text for f in cell.figures}["oom_kill(hog)"] == "1"
    assert {f.label: f.text for f in cell.figures}["peak(hog)"] == "32M"
    assert cell.limits == {"hog": {"memory.max": 32 << 20}}
    assert row(model, "memory/oom-kill").cells[f"{K612} v1"].console is None


def test_v1_memcg_missing_on_612_is_a_difference_on_both_axes_with_the_config_flag(run_dir):
    r = row(report.build(run_dir), "memory/oom-kill")
    assert r.axes == ["v1/v2", "kernels"]
    outcome = [d for d in r.differences if d.kind == "outcome"]
    assert {(d.axis, d.scope) for d in outcome} == {("hierarchy", K612), ("kernel", "v1")}
    (across,) = [d for d in outcome if d.axis == "kernel"]
    assert across.values == {f"{K61} v1": "pass", f"{K612} v1": f"skip: {MEMCG_V1_SKIP}"}
    assert across.config == [f"CONFIG_MEMCG_V1: {K61} -, {K612} n"]
    assert not across.by_design
    assert f"{K61} vs {K612} on v1: outcome" in across.text
    assert "CONFIG_MEMCG_V1 is not set" in across.text


def test_swap_peak_skipped_on_61_is_a_check_difference_between_kernels(run_dir):
    r = row(report.build(run_dir), "memory/peak")
    (d,) = [d for d in r.differences if d.kind == "check"]
    assert (d.axis, d.scope) == ("kernel", "v2")
    assert d.subject == "metric swap_peak of hog in [16M, 64M]"
    assert d.values[f"{K61} v2"].startswith("skip (swap_peak: memory.swap.peak does not exist")
    assert d.values[f"{K612} v2"] == "pass (observed 31457280 (30M))"
    # both skip on 6.1 (for different reasons): not a v1/v2 difference of the check
    assert not [x for x in r.differences if x.kind == "check" and x.axis == "hierarchy"]


def test_a_v2_only_scenario_is_not_marked_but_its_figures_are(run_dir):
    r = row(report.build(run_dir), "memory/oom-group")
    design = [d for d in r.differences if d.by_design]
    assert {(d.axis, d.scope) for d in design} == {("hierarchy", K61), ("hierarchy", K612)}
    (fig,) = [d for d in r.differences if d.kind == "figure"]
    assert fig.subject == "metric oom_kill of grp"
    assert fig.values == {f"{K61} v2": "3", f"{K612} v2": "1"}
    assert r.axes == ["kernels"]


def test_figures_within_tolerance_or_below_the_floor_do_not_differ(run_dir):
    assert row(report.build(run_dir), "cpu/max-quota").differences == []
    # a tolerance of 0 still keeps the byte floor (1M): only the cpu seconds differ
    (d,) = row(report.build(run_dir, tolerance=0), "cpu/max-quota").differences
    assert (d.subject, d.axis, d.scope) == ("metric cpu_usage of busy", "hierarchy", K612)
    assert d.values == {f"{K612} v1": "1.95 s", f"{K612} v2": "2.12 s"}
    assert row(report.build(run_dir, tolerance=300), "memory/oom-group").axes == []


def test_a_failure_names_the_expectation_and_the_values(run_dir):
    r = row(report.build(run_dir), "rules/rmdir")
    (d, c) = [d for d in r.differences if d.axis == "hierarchy"]
    assert d.kind == "outcome" and d.scope == K61
    assert d.values[f"{K61} v2"] == ("fail: step rmdir error == EBUSY: expected error == EBUSY, "
                                     "observed ENOENT")
    assert d.values[f"{K61} v1"] == "pass"
    assert c.kind == "check" and c.subject == "step rmdir error == EBUSY"
    assert c.values == {f"{K61} v1": "pass (observed EBUSY)",
                        f"{K61} v2": "fail (expected error == EBUSY, observed ENOENT)"}


def test_environment_from_run_json(run_dir):
    env = report.build(run_dir).environment
    assert env.accel == "tcg" and env.qemu.startswith("QEMU emulator")
    assert env.differing_flags == {"MEMCG_V1": {K61: "-", K612: "n"}}
    assert env.kernels[1].build["key"] == "8d1b8acf"


def test_a_run_without_run_json_still_reports(run_dir):
    (run_dir / "run.json").unlink()
    model = report.build(run_dir)
    assert not model.environment.run_json
    assert model.rows[0].scenario == "cpu/max-quota"  # alphabetical
    assert "no run.json" in report.render_markdown(model, run_dir)


def test_unreadable_run_directories_name_the_file(tmp_path, run_dir):
    with pytest.raises(report.ReportError, match=r"no results\.jsonl"):
        report.build(tmp_path)
    with pytest.raises(report.ReportError, match="not a directory"):
        report.build(tmp_path / "nope")
    (tmp_path / "results.jsonl").write_text("\n")
    with pytest.raises(report.ReportError, match=r"results\.jsonl: no results in it"):
        report.build(tmp_path)
    jsonl = run_dir / "results.jsonl"
    lines = jsonl.read_text()
    jsonl.write_text(lines + "{not json\n")
    with pytest.raises(report.ReportError, match=r"results\.jsonl:21: not JSON"):
        report.build(run_dir)
    jsonl.write_text(lines + json.dumps(result("rules/rmdir", K61, "v2")) + "\n")
    with pytest.raises(report.ReportError, match=r"results\.jsonl:21: .* twice \(also line"):
        report.build(run_dir)
    jsonl.write_text(json.dumps({"scenario": "x"}) + "\n")
    with pytest.raises(report.ReportError, match=r"results\.jsonl:1: not a result"):
        report.build(run_dir)


def test_old_results_without_limits_still_load(tmp_path):
    old = result("memory/oom-kill", K61, "v2")
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n")
    (loaded,) = load_results(tmp_path)
    assert loaded.limits == {}
    assert report.build(tmp_path).rows[0].cells[f"{K61} v2"].limits == {}


# --- renderers --------------------------------------------------------------------------------

class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_one_self_contained_file_with_the_matrix_plots_and_links(run_dir):
    text = report.render(report.build(run_dir), "html", run_dir)
    page = _Collect()
    page.feed(text)
    assert page.stack == []  # every element closed, in order
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags
    assert not [a for _, a in page.tags if "src" in a]
    assert [a for t, a in page.tags if t == "table" and a.get("id") == "matrix"]
    differs = [a for t, a in page.tags if t == "tr" and a.get("class") == "differs"]
    assert len(differs) == 4  # peak, oom-kill, oom-group, rmdir
    assert tags.count("svg") == 6  # oom-kill and peak on the three columns that ran
    words = " ".join(page.text)
    assert "memory.max hog 32M" in words  # the limit drawn in the plot
    assert "above the plot: memory.high 1G" in words  # far above the usage: named, not drawn
    assert MEMCG_V1_SKIP in words
    assert "CONFIG_MEMCG_V1" in words and "kconfig/base.config" in words
    hrefs = {a["href"] for t, a in page.tags if t == "a"}
    assert f"machines/m01-{K61}-v1-boot1/console.log" in hrefs
    assert "#memory-oom-kill" in hrefs


def test_console_links_are_relative_to_where_the_report_goes(run_dir, tmp_path):
    out = tmp_path / "elsewhere"
    out.mkdir()
    text = report.render(report.build(run_dir), "html", out)
    assert f'href="../r1/machines/m01-{K61}-v1-boot1/console.log"' in text


def test_markdown_matrix_and_differences(run_dir):
    text = report.render(report.build(run_dir), "md", run_dir)
    header = f"| scenario | differs | {K61} v1 | {K61} v2 | {K612} v1 | {K612} v2 |"
    assert header in text
    (oom_row,) = [x for x in text.splitlines() if x.startswith("| memory/oom-kill |")]
    assert "| v1/v2, kernels |" in oom_row and f"**skip**: {MEMCG_V1_SKIP}" in oom_row
    assert f"[console](machines/m01-{K61}-v1-boot1/console.log)" in oom_row
    assert "### memory/peak" in text
    assert f"- {K61} vs {K612} on v2: expectation `metric swap_peak of hog in [16M, 64M]`" \
        in text
    assert f"  - config: CONFIG_MEMCG_V1: {K61} -, {K612} n" in text
    assert "| CONFIG_MEMCG_V1 (differs) | - | n |" in text


def test_json_is_the_model_as_data(run_dir):
    data = json.loads(report.render(report.build(run_dir), "json", run_dir))
    assert data["environment"]["accel"] == "tcg"
    assert [c["hierarchy"] for c in data["columns"]] == ["v1", "v2", "v1", "v2"]
    peak_row = next(r for r in data["rows"] if r["scenario"] == "memory/peak")
    assert peak_row["axes"] == ["v1/v2", "kernels"]
    assert any("memory.swap.peak does not exist" in d["text"] for d in peak_row["differences"])
    assert peak_row["cells"][f"{K612} v2"]["samples"]["hog"] == HOG_SAMPLES


def test_usage_plot_scales_to_the_data_and_draws_the_limits():
    svg = report.usage_svg({"a": [Sample(0, 0, 0), Sample(1, 8 << 20, 2 << 20)],
                            "a/b": [Sample(0, 0, None)]},
                           {".": {"memory.max": 16 << 20}, "a": {"memory.swap.max": 0},
                            "other": {"memory.max": 1 << 20}})
    assert svg.count("<polyline") == 3  # usage of a and a/b, swap of a (a/b has none)
    assert "memory.max 16M" in svg and "memory.swap.max a 0" in svg
    assert "other" not in svg  # not an ancestor of a sampled cgroup
    assert ">16M</text>" in svg  # gridlines at exact sizes


# --- the command line -------------------------------------------------------------------------

def test_cli_writes_report_html_into_the_run_dir(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").read_text().startswith("<!DOCTYPE html>")
    err = capsys.readouterr().err
    assert f"wrote {run_dir / 'report.html'}" in err and "4 differ" in err
    assert main(["report", str(run_dir), "--format", "md", "--out", "-"]) == 0
    assert capsys.readouterr().out.startswith(f"# kharness report: {run_dir}")
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    assert json.loads((run_dir / "report.json").read_text())["rows"]


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"kharness: {tmp_path}: no results.jsonl (not a kharness results "
                   "directory)")
    assert main(["report", str(tmp_path), "--format", "pdf"]) == 2
    assert "invalid choice: 'pdf'" in capsys.readouterr().err


# --- the limits the runner records ------------------------------------------------------------

def test_scenario_limits_are_bytes_per_cgroup_without_max(tmp_path):
    (tmp_path / "s.yaml").write_text("""\
description: limits
requires: {controllers: [memory]}
cgroups:
  .:
    memory.max: 256M
  hog:
    memory.max: 32M
    memory.swap.max: max
    memory.high: 24M
  other:
    pids.max: 10
steps:
  - run: memhog 16
    cgroup: hog
expect:
  - step: hog
    field: exit_status
    op: "=="
    value: 0
""".replace("  - run: memhog 16", "  - name: hog\n    run: memhog 16"))
    (sc,), problems = load([tmp_path / "s.yaml"])
    assert problems == []
    assert scenario_limits(sc, "v2", K612) == {".": {"memory.max": 256 << 20},
                                                "hog": {"memory.max": 32 << 20,
                                                        "memory.high": 24 << 20}}
    fields = ScenarioResult("s", K61, "debian:6.1", "v2", "pass").limits
    assert fields == {}


def test_selftest_differences_are_explained_and_the_referee_has_its_section(tmp_path):
    """A selftest verdict that changed between kernels running the same binary is the kernels'
    difference; `run --referee` judgements get a section, disagreements first."""
    d = tmp_path / "ref"
    d.mkdir()
    st = "selftest/test_memcontrol/test_memcg_min"
    lines = [
        result(st, K61, "v2", "fail", reason="not ok", role="referee"),
        result(st, K612, "v2", "pass", role="referee"),
        result("referee/memory/min/test_memcontrol:test_memcg_min", K61, "v2", checks=[check(
            "test_memcontrol:test_memcg_min on 6.1, by the scenario's pass", "not ok",
            expected="not ok")]),
        result("referee/memory/min/test_memcontrol:test_memcg_min", K612, "v2", checks=[check(
            "test_memcontrol:test_memcg_min on 6.12, by the scenario's pass", "ok",
            expected="ok")]),
        result("referee/memory/low/test_memcontrol:test_memcg_low", K612, "v2", "fail",
               reason="disagreement: memory/low PASS, so the behaviour works on 6.12; the "
               "kernel's own test_memcontrol:test_memcg_low says not ok"),
    ]
    (d / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    same = {"source": "debian:6.12", "identity": "linux-source-6.12 6.12.118-1~deb12u1"}
    (d / "run.json").write_text(json.dumps({
        "kernels": [{"spec": SPEC[k], "release": k} for k in (K61, K612)],
        "referee": [{"kernel": k, **same} for k in (K61, K612)]}))
    model = report.build(d)
    (diff,) = [x for x in row(model, st).differences if x.axis == "kernel"]
    assert diff.explanation.startswith("a kernel difference: the same test binary, built from "
                                       "linux-source-6.12 6.12.118-1~deb12u1, ran on each kernel")
    assert len(model.referee) == 2 and len(model.disagreements) == 1
    md = report.render(model, "md", d)
    section = md.split("## Referee", 1)[1]
    assert "1 disagreement(s) in 3 judgement(s)." in section
    first = next(x for x in section.splitlines() if x.startswith("| memory/"))
    assert first.startswith("| memory/low/test_memcontrol:test_memcg_low | — | **DISAGREE**")
    assert "agree: test_memcontrol:test_memcg_min on 6.1, by the scenario's pass: selftest " \
        "not ok" in section
    html_text = report.render(model, "html", d)
    assert 'id="referee-table"' in html_text and "DISAGREE" in html_text
    assert "a kernel difference: the same test binary" in html_text
