"""kharness bisect without machines: the search over releases with a fake step runner (the
real one boots: tests/test_bisect_integration.py)."""

from __future__ import annotations

import math

import pytest

from harness import bisect
from harness.events import EventBus
from harness.results import FAIL, PASS, SKIP, Check, ScenarioResult

R61 = [f"6.1.0-{n}-amd64" for n in (47, 50, 53, 54, 55, 56, 57)]
R612 = [f"6.12.{n}+deb12-amd64" for n in (107, 111, 113, 115, 117, 118)]


def fake(verdicts: dict[str, list[str | None]]):
    calls: list[str] = []

    def run(release: str) -> bisect.Step:
        calls.append(release)
        return bisect.Step(release, list(verdicts[release]))
    return run, calls


def by_release(flip_at: str, releases: list[str], before="fail", after="pass"):
    i = releases.index(flip_at)
    return {r: [before if k < i else after] for k, r in enumerate(releases)}


@pytest.mark.parametrize("flip", R61[1:])
def test_it_finds_the_first_bad_release_in_log2_n_plus_2_boots(flip):
    run, calls = fake(by_release(flip, R61))
    b = bisect.Bisection(bisect.Target("s"), R61, run, EventBus())
    answer = b.run()
    assert answer["first_bad"] == flip
    assert answer["last_good"] == R61[R61.index(flip) - 1]
    assert calls[:2] == [R61[0], R61[-1]]  # both ends first
    assert len(calls) <= math.ceil(math.log2(len(R61))) + 2
    assert b.to_dict()["boots"] == len(calls)
    assert not answer["boundary"]


def test_the_same_verdict_at_both_ends_is_no_change_after_two_boots():
    run, calls = fake({r: ["fail"] for r in R61})
    answer = bisect.Bisection(bisect.Target("s"), R61, run, EventBus()).run()
    assert answer["no_change"] and calls == [R61[0], R61[-1]]
    assert answer["summary"].startswith("no change between 6.1.0-47-amd64 and 6.1.0-57-amd64")


def test_a_change_at_the_series_boundary_says_so():
    releases = R61 + R612
    run, _ = fake(by_release(R612[0], releases))
    answer = bisect.Bisection(bisect.Target("s"), releases, run, EventBus()).run()
    assert (answer["last_good"], answer["first_bad"]) == (R61[-1], R612[0])
    assert answer["boundary"] and "series boundary 6.1 -> 6.12" in answer["summary"]


def test_a_flaky_step_is_reported_and_never_taken_as_good_or_bad():
    verdicts = by_release("6.1.0-55-amd64", R61)
    verdicts["6.1.0-54-amd64"] = ["pass", "fail", "pass"]
    run, _ = fake(verdicts)
    b = bisect.Bisection(bisect.Target("s"), R61, run, EventBus())
    answer = b.run()
    assert answer["flaky"] == "6.1.0-54-amd64" and "first_bad" not in answer
    step = b.steps["6.1.0-54-amd64"]
    assert step.status == bisect.FLAKY and step.why == "flaky: fail 1/3, pass 2/3"


def test_an_untestable_step_is_skipped_and_named():
    verdicts = by_release("6.1.0-55-amd64", R61)
    verdicts["6.1.0-54-amd64"] = [None]
    run, _ = fake(verdicts)
    answer = bisect.Bisection(bisect.Target("s"), R61, run, EventBus()).run()
    assert answer["first_bad"] == "6.1.0-55-amd64"
    verdicts["6.1.0-55-amd64"] = [None]  # now the answer lies beyond an untestable release
    run, _ = fake(verdicts)
    answer = bisect.Bisection(bisect.Target("s"), R61, run, EventBus()).run()
    assert (answer["last_good"], answer["first_bad"]) == ("6.1.0-53-amd64", "6.1.0-56-amd64")
    assert "untestable in between: 6.1.0-54-amd64, 6.1.0-55-amd64" in answer["summary"]


def test_an_end_without_a_verdict_stops_with_why():
    verdicts = by_release("6.1.0-53-amd64", R61)
    verdicts[R61[0]] = [None]
    run, calls = fake(verdicts)
    answer = bisect.Bisection(bisect.Target("s"), R61, run, EventBus()).run()
    assert "good end" in answer["summary"] and calls == [R61[0]]


def test_between_keeps_the_good_ends_flavour_from_good_to_bad():
    archive = R61 + R612 + ["6.1.0-50-rt-amd64", "6.1.0-9-amd64"]
    assert bisect.between(R61[0], R612[1], archive) == R61 + R612[:2]
    assert bisect.between(R612[1], R61[-1], archive) == [R612[1], R612[0], R61[-1]]
    assert bisect.between("6.1.0-50-rt-amd64", "6.1.0-50-rt-amd64", archive) == [
        "6.1.0-50-rt-amd64"]


def result(status, checks=()):
    return ScenarioResult(scenario="s", kernel="k", kernel_spec="debian:k", hierarchy="v2",
                          status=status,
                          checks=list(checks))


def test_a_target_judges_the_scenario_or_one_check():
    checks = [Check("step probe exit_status == 0", "0", "0", True),
              Check("metric pids_max_events of parent >= 1", ">= 1", "0", False),
              Check("only on 6.12", "", "", False, skipped_reason="does not apply")]
    r = result(FAIL, checks)
    assert bisect.Target("s").verdict(r) == "fail"
    assert bisect.Target("s", "1").verdict(r) == "pass"
    assert bisect.Target("s", "pids_max_events").verdict(r) == "fail"
    assert bisect.Target("s", "only on").verdict(r) is None
    assert bisect.Target("s", "9").verdict(r) is None
    assert bisect.Target("s").verdict(result(SKIP)) is None
    assert bisect.Target("s").verdict(result(PASS)) == "pass"
    assert bisect.Target.parse("pids/x:2") == bisect.Target("pids/x", "2")


def test_a_finished_step_is_read_back(tmp_path):
    from harness.results import ResultsWriter
    w = ResultsWriter(tmp_path / "r1")
    w.add(result(PASS))
    got = bisect.finished(tmp_path / "r1", "s")
    assert got is not None and got.status == PASS
    assert bisect.finished(tmp_path / "r1", "other") is None
    assert bisect.finished(tmp_path / "none", "s") is None


def test_a_figure_is_bisected_by_its_move_from_the_good_end():
    values = dict(zip(R61, [100.0, 104.0, 108.0, 130.0, 131.0, 129.0, 135.0], strict=True))

    def run(release):
        return bisect.Step(release, values=[values[release]])
    b = bisect.Bisection(bisect.Target("s", "hog.swap_peak"), R61, run, EventBus(),
                         threshold=bisect.Threshold("percent", 20))
    answer = b.run()
    assert answer["first_bad"] == "6.1.0-54-amd64" and b.reference == 100.0
    assert "threshold 20%" in answer["summary"]
    flat = bisect.Bisection(bisect.Target("s", "x"), R61,
                            lambda r: bisect.Step(r, values=[100.0]), EventBus(),
                            threshold=bisect.Threshold("absolute", 4))
    assert flat.run()["no_change"]
    noisy = bisect.Bisection(bisect.Target("s", "x"), R61,
                             lambda r: bisect.Step(r, values=[100.0, 100.0, 150.0]), EventBus(),
                             threshold=bisect.Threshold("percent", 20))
    assert "good end 6.1.0-47-amd64 gives no usable verdict: flaky: moved 1/3, same 2/3" in \
        noisy.run()["summary"]


def test_figure_names_take_the_report_name_or_a_short_form():
    names = ["sampled swap peak of hog", "metric oom_kill of hog", "step probe release"]
    assert bisect.figure_name("hog.swap_peak", names) == "sampled swap peak of hog"
    assert bisect.figure_name("hog.oom_kill", names) == "metric oom_kill of hog"
    assert bisect.figure_name("probe.release", names) == "step probe release"
    assert bisect.figure_name("metric oom_kill of hog", names) == "metric oom_kill of hog"
    assert bisect.figure_name("hog.nothing", names) is None


def test_a_stepper_runs_each_repeat_once_and_reuses_finished_runs(tmp_path):
    from harness.results import ResultsWriter
    ran = []

    def run_once(release, directory, k):
        ran.append((release, k))
        ResultsWriter(directory).add(result(PASS if k % 2 else FAIL,
                                            [Check("step probe release == 1", "1", "7", True)]))
    stepper = bisect.Stepper(bisect.Target("s"), tmp_path, 3, run_once, EventBus())
    step = stepper("6.1.0-50-amd64")
    assert step.verdicts == ["pass", "fail", "pass"] and len(ran) == 3
    assert step.figures == {"step probe release": 7.0}
    assert stepper("6.1.0-50-amd64").verdicts == ["pass", "fail", "pass"] and len(ran) == 3
    metric = bisect.Stepper(bisect.Target("s"), tmp_path, 2, run_once, EventBus(),
                            metric="probe.release")
    assert metric("6.1.0-50-amd64").values == [7.0, 7.0] and len(ran) == 3
    absent = bisect.Stepper(bisect.Target("s"), tmp_path, 1, lambda *a: None, EventBus())
    s = absent("6.1.0-53-amd64")
    assert s.verdicts == [None] and "no result in" in s.why


def test_a_source_tree_is_bisected_by_git_bisect_run_of_the_script(tmp_path, monkeypatch):
    import subprocess

    from harness import cli

    repo = tmp_path / "linux"
    repo.mkdir()

    def sh(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    sh("init", "-q", "-b", "main")
    commits = []
    for i, behaviour in enumerate(["pass", "pass", "pass", "fail", "fail"]):
        (repo / "behaviour").write_text(f"{behaviour} {i}\n")
        sh("add", "behaviour")
        sh("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", f"change {i}")
        commits.append(subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                      capture_output=True, text=True, check=True)
                       .stdout.strip())
    # the step a real run builds and boots; here it reads the tree git bisect checked out
    fake = tmp_path / "fake-kharness"
    fake.write_text('#!/bin/sh\necho "$@" >> "$FAKE_LOG"\n'
                    'grep -q pass behaviour && exit 0; exit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("KHARNESS", str(fake))
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "calls"))
    scenario = "tests/scenarios/bisect/flips-at-53.yaml"
    out = tmp_path / "b"
    rc = cli.main(["bisect", scenario, "--source", f"path:{repo}", "--good", commits[0],
                   "--bad", commits[-1], "--config", "kconfig/base.config", "--results",
                   str(out), "-q"])
    assert rc == 0
    doc = __import__("json").loads((out / "bisect.json").read_text())
    assert doc["first_bad"] == commits[3] and doc["subject"] == "change 3"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert 1 <= len(calls) <= 3 and all("--git-step" in c and "--good-verdict pass" in c
                                        for c in calls)
    # the tree is back where it was
    head = subprocess.run(["git", "-C", str(repo), "symbolic-ref", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert head == "refs/heads/main"
    assert "git bisect log" in (out / "git-bisect.log").read_text()


def test_a_step_exit_status_is_what_git_bisect_run_understands():
    assert bisect.step_exit(["pass"], "pass") == bisect.GIT_GOOD
    assert bisect.step_exit(["fail", "fail"], "pass") == bisect.GIT_BAD
    assert bisect.step_exit(["fail"], "fail") == bisect.GIT_GOOD
    assert bisect.step_exit([None], "pass") == bisect.GIT_SKIP
    assert bisect.step_exit(["pass", "fail"], "pass") == bisect.GIT_ABORT


def test_a_dirty_tree_or_a_bad_revision_is_refused(tmp_path):
    import subprocess
    repo = tmp_path / "r"
    repo.mkdir()
    subprocess.run(["git", "-C", str(repo), "init", "-q"], check=True)
    (repo / "f").write_text("1")
    subprocess.run(["git", "-C", str(repo), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "-m", "one"], check=True)
    with pytest.raises(bisect.BisectError, match="nosuchrev"):
        bisect.check_tree(repo, "HEAD", "nosuchrev")
    (repo / "f").write_text("2")
    with pytest.raises(bisect.BisectError, match="uncommitted"):
        bisect.check_tree(repo, "HEAD", "HEAD")
    with pytest.raises(bisect.BisectError, match="not a git work tree"):
        bisect.check_tree(tmp_path, "HEAD", "HEAD")
