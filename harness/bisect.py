"""`kharness bisect SCENARIO[:CHECK] --good SPEC --bad SPEC`: the packaged release where a
behaviour changed.

The candidates are the archive's releases of the good end's flavour between the two ends,
oldest first (harness/kernels/debian.py `available`): no kernel is built. Both ends are run
first: the same verdict at both is "no change between GOOD and BAD" and nothing else boots.
Otherwise the midpoints are run until the last good and the first bad release are neighbours
in the list; "bad" is a verdict other than the good end's, so a behaviour that started
failing and one that started passing bisect the same way. With `--repeat N` each step runs N
times: different verdicts make the step **flaky**, reported as such and never taken as good or
bad (the bisection stops there: its answer would be a coin's). A step that cannot give a
verdict (the scenario skipped there, a machine that did not come up) is **untestable** and the
search goes on with its neighbours, as `git bisect skip` does.

Every step is an ordinary run: `steps/<release>/r<K>/` holds its results.jsonl, run.json and
machine logs; `bisect.json` the steps, their verdicts and the answer. The default directory is
named after the arguments, so a rerun with the same arguments reuses the steps that finished
(a step is finished when its results.jsonl has the scenario's cell).

An answer that falls on a series boundary (the last good is a 6.1, the first bad a 6.12) is said
as such: the packaged releases cannot narrow it further.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import EventBus
from .kernels import Kernel, debian
from .output import atomic_write
from .results import ScenarioResult
from .scenario import release_series

GOOD, BAD, FLAKY, UNTESTABLE = "good", "bad", "flaky", "untestable"


class BisectError(ValueError):
    """Bad input, said before anything boots."""


@dataclass(frozen=True)
class Target:
    """What is judged: a scenario's verdict, or one of its checks (`check`: a 1-based index
    or a piece of the check's description)."""

    scenario: str
    check: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        name, _, check = text.partition(":")
        return cls(name, check or None)

    def verdict(self, result: ScenarioResult) -> str | None:
        """"pass" / "fail" of the scenario or of the check; None when there is none (the
        scenario skipped or errored, the check did not apply)."""
        if result.status.value not in ("pass", "fail"):
            return None
        if self.check is None:
            return result.status.value
        checks = list(result.checks)
        if self.check.isdigit():
            i = int(self.check) - 1
            chosen = checks[i] if 0 <= i < len(checks) else None
        else:
            chosen = next((c for c in checks if self.check in c.description), None)
        if chosen is None or chosen.skipped_reason:
            return None
        return "pass" if chosen.passed else "fail"


def figure_name(metric: str, names: Sequence[str]) -> str | None:
    """The figure `--metric` names: a figure as `report` shows it (`sampled swap peak of
    hog`), or the short forms `hog.swap_peak`, `hog.usage_peak`, `hog.METRIC` (a checked
    metric of cgroup hog), `STEP.FIELD` (a checked step field)."""
    if metric in names:
        return metric
    head, _, tail = metric.rpartition(".")
    candidates = [f"sampled {tail.removesuffix('_peak')} peak of {head}",
                  f"metric {tail} of {head}", f"step {head} {tail}"]
    return next((c for c in candidates if c in names), None)


@dataclass(frozen=True)
class Threshold:
    """`--threshold 20%` or an amount (`4M`, 0.5): a value further than this from the good
    end's is bad."""

    kind: str  # percent | absolute
    amount: float

    def moved(self, value: float, reference: float) -> bool:
        limit = abs(reference) * self.amount / 100 if self.kind == "percent" else self.amount
        return abs(value - reference) > limit

    def __str__(self) -> str:
        return f"{self.amount:g}%" if self.kind == "percent" else f"{self.amount:g}"


@dataclass
class Step:
    release: str
    verdicts: list[str | None] = field(default_factory=list)  # one per repeat
    values: list[float | None] = field(default_factory=list)  # --metric: one per repeat
    status: str | None = None  # GOOD | BAD | FLAKY | UNTESTABLE
    why: str | None = None
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release, "spec": debian.spec_of(self.release),
                "verdicts": self.verdicts, "values": self.values, "status": self.status, "why": self.why,
                "seconds": round(self.seconds, 1), "figures": self.figures}


def between(good: str, bad: str, releases: Sequence[str]) -> list[str]:
    """The releases from `good` to `bad` inclusive, of good's flavour, oldest first (either
    end may be the older one: the list runs from good to bad)."""
    flavour = debian.split_release(good)[1]
    key = debian.release_key
    lo, hi = sorted((good, bad), key=lambda r: key(debian.split_release(r)[0]))
    out = [r for r in releases if debian.split_release(r)[1] == flavour
           and key(debian.split_release(lo)[0]) <= key(debian.split_release(r)[0])
           <= key(debian.split_release(hi)[0])]
    out = sorted(set(out) | {good, bad}, key=lambda r: key(debian.split_release(r)[0]))
    return out if out[0] == good else out[::-1]


@dataclass
class Bisection:
    """The search over `releases` (good end first). `run(release) -> Step` runs one step
    (all its repeats) and is given by the command (it boots); tests give a fake."""

    target: Target
    releases: list[str]
    run_step: Callable[[str], Step]
    bus: EventBus
    threshold: Threshold | None = None  # --metric: steps give values, judged by this
    steps: dict[str, Step] = field(default_factory=dict)
    reference: float | None = None  # --metric: the good end's value (median of its runs)
    answer: dict[str, Any] = field(default_factory=dict)

    def _step(self, release: str) -> Step:
        if release not in self.steps:
            index = self.releases.index(release) + 1
            self.bus.emit("bisect.step", f"step {len(self.steps) + 1}: {release} "
                          f"({index} of {len(self.releases)})")
            self.steps[release] = self.run_step(release)
        return self.steps[release]

    def _values_to_verdicts(self, step: Step) -> None:
        """--metric: a value within the threshold of the good end's is "same", else "moved";
        the good end's own runs are judged against their median."""
        if self.threshold is None:
            return
        if self.reference is None:
            got = sorted(v for v in step.values if v is not None)
            if not got or len(got) != len(step.values):
                step.verdicts = [None] * max(1, len(step.values))
                return
            self.reference = got[len(got) // 2]
        step.verdicts = [None if v is None else
                         ("moved" if self.threshold.moved(v, self.reference) else "same")
                         for v in step.values] or [None]

    def _judge(self, step: Step, good_verdict: str | None) -> None:
        self._values_to_verdicts(step)
        seen = {v for v in step.verdicts}
        if None in seen or not seen:
            step.status = UNTESTABLE
            step.why = step.why or "no verdict (the scenario skipped or a run errored)"
        elif len(seen) > 1:
            step.status = FLAKY
            n = len(step.verdicts)
            kinds = sorted(seen, key=str)
            step.why = "flaky: " + ", ".join(f"{k} {step.verdicts.count(k)}/{n}" for k in kinds)
            if step.values:
                step.why += f" (values {', '.join(f'{v:g}' for v in step.values if v is not None)})"
        elif good_verdict is None:
            step.status = GOOD
        else:
            step.status = GOOD if step.verdicts[0] == good_verdict else BAD

    def run(self) -> dict[str, Any]:
        good, bad = self.releases[0], self.releases[-1]
        g = self._step(good)
        self._judge(g, None)
        if g.status != GOOD:
            return self._end(f"the good end {good} gives no usable verdict: {g.why}")
        verdict = g.verdicts[0]
        b = self._step(bad)
        self._judge(b, verdict)
        if b.status in (FLAKY, UNTESTABLE):
            return self._end(f"the bad end {bad} gives no usable verdict: {b.why}")
        if b.status == GOOD:
            both = (f"{self.target.check} within {self.threshold} of {self.reference:g}"
                    if self.threshold is not None else f"both {verdict}")
            return self._end(f"no change between {good} and {bad}: {both}", no_change=True)
        lo, hi = 0, len(self.releases) - 1  # releases[lo] good, releases[hi] bad
        skipped: set[int] = set()
        while True:
            inner = [i for i in range(lo + 1, hi) if i not in skipped]
            if not inner:
                break
            mid = min(inner, key=lambda i: abs(i - (lo + hi) / 2))
            s = self._step(self.releases[mid])
            self._judge(s, verdict)
            if s.status == FLAKY:
                return self._end(f"{self.releases[mid]} is flaky ({s.why}): not bisected "
                                 "as good or bad; rerun with a larger --repeat, or fix the "
                                 "scenario's tolerance", flaky=self.releases[mid])
            if s.status == UNTESTABLE:
                skipped.add(mid)
                continue
            if s.status == GOOD:
                lo = mid
            else:
                hi = mid
        last_good, first_bad = self.releases[lo], self.releases[hi]
        untested = [self.releases[i] for i in sorted(skipped) if lo < i < hi]
        if self.threshold is not None:
            vg, vb = self.steps[last_good].values[0], self.steps[first_bad].values[0]
            text = (f"first bad {first_bad}, last good {last_good} ({self.target.scenario} "
                    f"{self.target.check}: {vg:g} on {last_good}, {vb:g} on {first_bad}; the "
                    f"good end's {self.reference:g}, threshold {self.threshold})")
        else:
            text = (f"first bad {first_bad}, last good {last_good} ({self.target.scenario}"
                    f"{':' + self.target.check if self.target.check else ''}: {verdict} on "
                    f"{last_good}, {self.steps[first_bad].verdicts[0]} on {first_bad})")
        if untested:
            text += f"; untestable in between: {', '.join(untested)}"
        was, now = release_series(last_good), release_series(first_bad)
        if was != now:
            text += (f"; at the series boundary {was} -> {now}: {last_good} is the last {was} "
                     f"release and {first_bad} the first {now} one here, so the packaged "
                     f"releases cannot narrow it further (the change is upstream between v{was} "
                     f"and v{now})")
        return self._end(text, last_good=last_good, first_bad=first_bad, boundary=was != now)

    def _end(self, text: str, **answer: Any) -> dict[str, Any]:
        self.answer = {"summary": text, **answer}
        self.bus.emit("bisect.done", text)
        return self.answer

    def to_dict(self) -> dict[str, Any]:
        """The steps in the order they ran (`releases` gives their order in the range)."""
        return {"target": {"scenario": self.target.scenario, "check": self.target.check},
                "releases": self.releases, "boots": sum(len(s.verdicts) for s in
                                                        self.steps.values()),
                "steps": [s.to_dict() for s in self.steps.values()],
                **self.answer}


def changes(last_good: Kernel, first_bad: Kernel, most: int = 40) -> dict[str, Any] | None:
    """What Debian's changelog lists between the two packages of one series: the items
    touching mm, memcg, cgroup, sched, blk-throttle... first. None when there is no
    changelog to read (not a Debian package, or two series: separate changelogs)."""
    from .kernels import changelog

    if release_series(last_good.release) != release_series(first_bad.release):
        return None
    after = (last_good.origin or {}).get("package_version")
    upto = (first_bad.origin or {}).get("package_version")
    path = changelog.changelog_of(first_bad.vmlinux.parent / "root")
    if not (after and upto and path):
        return None
    found = changelog.items(changelog.read(path), after, upto)
    relevant = [i for i in found if i.relevant]
    return {"from": after, "to": upto, "changelog": str(path), "items": len(found),
            "relevant": [{"stable": i.stable, "text": i.text} for i in relevant[:most]],
            "relevant_count": len(relevant),
            "stable_releases": sorted({i.stable for i in found if i.stable},
                                      key=lambda v: tuple(int(x) for x in v.split(".")))}


def format_changes(c: dict[str, Any]) -> str:
    lines = [f"changes {c['from']} -> {c['to']}: {c['items']} items in Debian's changelog "
             f"(upstream stable {', '.join(c['stable_releases']) or 'none'}); "
             f"{c['relevant_count']} touch mm/memcg/cgroup/sched/blk-throttle..."
             + (f", the first {len(c['relevant'])}:" if c["relevant"] else "")]
    lines += [f"  {i['stable'] or '':9} {i['text']}" for i in c["relevant"]]
    lines.append(f"  (all of them: {c['changelog']})")
    return "\n".join(lines)


@dataclass
class Stepper:
    """One bisection step: `repeat` runs of the scenario on a release, each in its own
    directory (`step_dir`), reused when it finished before; the verdicts (or with `metric`
    the figure's values) of the runs. `run_once(release, directory, k)` does a run (the
    command line gives it: it boots)."""

    target: Target
    root: Path
    repeat: int
    run_once: Callable[[str, Path, int], None]
    bus: EventBus
    metric: str | None = None

    def __call__(self, release: str) -> Step:
        from .figures import figures

        step = Step(release)
        start = time.monotonic()
        for k in range(1, self.repeat + 1):
            directory = step_dir(self.root, release, k)
            result = finished(directory, self.target.scenario)
            if result is None:
                self.run_once(release, directory, k)
                result = finished(directory, self.target.scenario)
            else:
                self.bus.emit("bisect.reuse", f"{release} run {k}: reusing {directory}")
            if result is not None:
                step.figures = figures(result)
            if self.metric is not None:
                name = figure_name(self.metric, list(step.figures)) if result else None
                step.values.append(step.figures[name] if name else None)
                if name is None:
                    step.why = (f"no figure {self.metric!r} in this run (its figures: "
                                f"{', '.join(step.figures) or 'none'})")
                continue
            verdict = self.target.verdict(result) if result is not None else None
            step.verdicts.append(verdict)
            if verdict is None:
                step.why = (f"no result in {directory}" if result is None else
                            result.reason or f"the scenario's cell is {result.status.value}")
        step.seconds = time.monotonic() - start
        return step


def step_dir(root: Path, release: str, repeat: int) -> Path:
    return root / "steps" / release / f"r{repeat}"


def finished(directory: Path, scenario: str) -> ScenarioResult | None:
    """The scenario's cell of a finished step run, or None."""
    path = directory / "results.jsonl"
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if data.get("scenario") == scenario:
            return ScenarioResult.from_dict(data)
    return None


def default_dir(target: Target, good: str, bad: str, hierarchy: str, repeat: int) -> Path:
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", f"{target.scenario}-{target.check or 'all'}")
    return Path("results") / f"bisect-{name}-{good}-{bad}-{hierarchy}-x{repeat}"


def write(directory: Path, bisection: Bisection, started: float) -> Path:
    path = directory / "bisect.json"
    doc = bisection.to_dict()
    doc["seconds"] = round(time.monotonic() - started, 1)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(doc, indent=2) + "\n")
    return path


# --- a source tree: git bisect run ----------------------------------------------------------

GIT_GOOD, GIT_BAD, GIT_SKIP, GIT_ABORT = 0, 1, 125, 255  # what `git bisect run` understands


def git(repo: Path, *args: str, check: bool = True) -> str:
    import subprocess

    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        raise BisectError(f"git {' '.join(args)} in {repo}: "
                          f"{(proc.stderr or proc.stdout).strip()[:300]}")
    return proc.stdout.strip()


def check_tree(repo: Path, good: str, bad: str) -> tuple[str, str]:
    """Both revisions as commits of a clean work tree (bisect checks commits out)."""
    if git(repo, "rev-parse", "--is-inside-work-tree", check=False) != "true":
        raise BisectError(f"{repo} is not a git work tree: --source bisects a git repository")
    if git(repo, "status", "--porcelain", "--untracked-files=no"):
        raise BisectError(f"{repo} has uncommitted changes: git bisect checks commits out, "
                          "commit or stash them first")
    return (git(repo, "rev-parse", "--verify", f"{good}^{{commit}}"),
            git(repo, "rev-parse", "--verify", f"{bad}^{{commit}}"))


def step_exit(verdicts: Sequence[str | None], good_verdict: str) -> int:
    """A step's exit status for git bisect run: flaky aborts, no verdict skips."""
    seen = set(verdicts)
    if not seen or None in seen:
        return GIT_SKIP
    if len(seen) > 1:
        return GIT_ABORT
    return GIT_GOOD if verdicts[0] == good_verdict else GIT_BAD


def git_script(root: Path, step_args: Sequence[str], kharness_root: Path, python: str) -> Path:
    """The script `git bisect run` runs at each commit: `kharness bisect ... --git-step`
    (KHARNESS, when set, is the command to run instead of this checkout's)."""
    import shlex

    args = " ".join(shlex.quote(a) for a in ["bisect", *step_args])
    path = root / "bisect-run.sh"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        "# Written by `kharness bisect --source`; `git bisect run` runs it at each commit: it\n"
        "# builds HEAD with `kharness kernel build` and runs the scenario. Exit 0 good, 1 bad,\n"
        "# 125 skip (the build failed or no verdict), 255 abort (the step is flaky).\n"
        f'if [ -n "$KHARNESS" ]; then exec $KHARNESS {args}; fi\n'
        f"cd {shlex.quote(str(kharness_root))} && exec {shlex.quote(python)} -m harness.cli "
        f"{args}\n")
    path.chmod(0o755)
    return path


def git_bisect(repo: Path, good: str, bad: str, script: Path, log: Path,
               bus: EventBus) -> dict[str, Any]:
    """`git bisect start BAD GOOD; git bisect run SCRIPT`, its log kept, the tree reset."""
    import subprocess

    git(repo, "bisect", "start", bad, good)
    try:
        bus.emit("bisect.git", f"git bisect run {script} in {repo}")
        proc = subprocess.run(["git", "-C", str(repo), "bisect", "run", str(script)],
                              capture_output=True, text=True, check=False)
        history = git(repo, "bisect", "log", check=False)
    finally:
        git(repo, "bisect", "reset", check=False)
    log.write_text(proc.stdout + proc.stderr + "\n# git bisect log\n" + history + "\n")
    m = re.search(r"^([0-9a-f]{40}) is the first bad commit", proc.stdout, re.MULTILINE)
    if m:
        subject = git(repo, "log", "-1", "--format=%s", m.group(1), check=False)
        text = f"first bad commit {m.group(1)[:12]} ({subject})"
        return {"summary": text, "first_bad": m.group(1), "subject": subject}
    why = "a step was flaky (it aborted)" if "exited with error code 255" in \
        (proc.stdout + proc.stderr) else (proc.stdout + proc.stderr).strip()[-300:]
    return {"summary": f"git bisect found no first bad commit: {why}"}
