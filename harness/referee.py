"""The catalogue checked against the kernel's own tests: `kharness run --referee`.

A scenario's `refs:` names the cgroup selftest cases that test the same behaviour. With
`--referee` the run also runs those cases (harness/selftest, on the same kernels; the selftest
cells are recorded with role "referee") and then judges, per scenario x case x kernel, whether
the two verdicts agree. Each judgement is a result of its own,
`referee/<scenario>/<binary>:<subtest>` on (kernel, v2), so the terminal, results.jsonl,
JUnit, `report` and `compare` all show it:

- pass: they agree: the scenario passes and the selftest is ok, or the scenario passes where
  its ref says `fails_on` this kernel (it pins the kernel's defect) and the selftest is not ok;
- fail, a **disagreement**: the scenario passes where the kernel's own test says the behaviour
  is broken, or the reverse (a scenario that fails says the behaviour is not what it claims);
- skip: no verdict on one side (the scenario or the selftest skipped; the scenario errored,
  which its own result counts);
- error: the selftest could not give a verdict (it crashed, hung, took the kernel down).

Only v2 cells are judged: the selftests test cgroup v2.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .events import EventBus
from .results import ERROR, FAIL, PASS, SKIP, Check, ScenarioResult
from .runner import Runner
from .scenario import Scenario, SelftestRef
from .selftest.run import Selection, SelftestRunner, cell_name

PREFIX = "referee/"
ROLE = "referee"


def selections(scenarios: Sequence[Scenario]) -> list[Selection]:
    """The selftest cases the scenarios name, each once, in the order they are named."""
    out: dict[tuple[str, str], Selection] = {}
    for sc in scenarios:
        for ref in sc.refs:
            out.setdefault((ref.binary, ref.subtest), Selection(ref.binary, ref.subtest))
    return list(out.values())


def referee_name(scenario: str, ref: SelftestRef) -> str:
    return f"{PREFIX}{scenario}/{ref.case}"


def _verdict(r: ScenarioResult) -> str:
    """A selftest cell's verdict as the test printed it."""
    if r.status == PASS:
        return "ok"
    return r.reason if r.reason.startswith("not ok") or r.reason.startswith("flaky") \
        else f"not ok ({r.reason})" if r.reason else "not ok"


def judge(scenarios: Sequence[Scenario], results: Sequence[ScenarioResult]
          ) -> list[ScenarioResult]:
    """One referee result per scenario x ref x kernel that has both the scenario's v2 cell
    and the selftest's (or its binary's) result."""
    cells = {(r.scenario, r.kernel, r.hierarchy): r for r in results}
    kernels = list(dict.fromkeys(r.kernel for r in results))
    out = []
    for sc in scenarios:
        for kernel in kernels:
            s = cells.get((sc.name, kernel, "v2"))
            if s is None:
                continue
            for ref in sc.refs:
                t = cells.get((cell_name(ref.binary, ref.subtest), kernel, "v2")) or \
                    cells.get((cell_name(ref.binary), kernel, "v2"))
                if t is not None:
                    out.append(_judge_one(sc, ref, s, t))
    return out


def _judge_one(sc: Scenario, ref: SelftestRef, s: ScenarioResult,
               t: ScenarioResult) -> ScenarioResult:
    kernel = s.kernel
    expects_ok = ref.expects_ok(kernel)
    pinned = "" if expects_ok else f" (its ref: fails_on {ref.fails_on})"
    why = f" ({ref.why})" if ref.why else ""
    checks: list[Check] = []
    if s.status == SKIP:
        status, reason = SKIP, f"no verdict: the scenario skipped: {s.reason}"
    elif s.status == ERROR:
        status, reason = SKIP, (f"no verdict: the scenario errored "
                                f"({s.failure_kind or 'error'}), see its own result")
    elif t.status == SKIP:
        status, reason = SKIP, f"no verdict: the selftest skipped: {t.reason}"
    elif t.status == ERROR:
        status, reason = ERROR, f"the selftest gave no verdict: {t.reason}"
    else:
        # What the scenario's verdict says of the selftest: a pass says "as the scenario
        # claims" (ok, or not ok where it pins the kernel's defect), a fail the opposite.
        says_ok = (s.status == PASS) == expects_ok
        is_ok = t.status == PASS
        expected = "ok" if says_ok else "not ok"
        observed = _verdict(t)
        checks.append(Check(
            description=(f"{ref.case} on {kernel}, by the scenario's {s.status}{pinned}"),
            expected=expected, observed=observed, passed=says_ok == is_ok))
        if says_ok == is_ok:
            status, reason = PASS, ""
        else:
            status = FAIL
            claim = "works" if says_ok else "is broken"
            reason = (f"disagreement: {sc.name} {s.status.upper()}{pinned}, so the behaviour "
                      f"{claim} on {kernel}; the kernel's own {ref.case} says {observed}{why}")
    said = _verdict(t) if t.status in (PASS, FAIL) else f"{t.status}: {t.reason}"
    return ScenarioResult(
        scenario=referee_name(sc.name, ref), kernel=kernel, kernel_spec=s.kernel_spec,
        hierarchy="v2", status=status, reason=reason,
        description=(f"the referee: scenario {sc.name} ({s.status}) next to the kernel's own "
                     f"selftest {ref.case} ({said}){why}"),
        checks=checks, started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


class RefereedRun:
    """A scenario run, then the selftest cases its scenarios name, then the judgements.

    Quacks as the runners do for the command line (run, counts, not_run): `counts` are the
    scenarios' and the judgements' (the run's verdict), the selftest cells' own are
    `selftests.counts`."""

    def __init__(self, runner: Runner, selftests: SelftestRunner | None,
                 scenarios: Sequence[Scenario], bus: EventBus) -> None:
        self.runner = runner
        self.selftests = selftests
        self.scenarios = list(scenarios)
        self.bus = bus
        self.judged: list[ScenarioResult] = []

    @property
    def counts(self) -> dict:
        return self.runner.counts

    def not_run(self) -> list[str]:
        return self.runner.not_run() + (self.selftests.not_run() if self.selftests else [])

    def run(self) -> list[ScenarioResult]:
        self.runner.run()
        if self.selftests is not None:
            self.bus.emit("referee.start", "the referee: running the selftest cases the "
                          "scenarios name (refs:)")
            self.selftests.run()
        self.judged = judge(self.scenarios, self.runner.writer.results)
        for r in self.judged:
            self.runner.write(r)
            what = "AGREE" if r.status == PASS else "DISAGREE" if r.status == FAIL else \
                r.status.upper()
            text = r.reason or (r.checks[0].description + f": both say {r.checks[0].observed}"
                                if r.checks else "")
            self.bus.emit(f"referee.{r.status}", f"{what:8} {r.key}: {text}",
                          result=r.key, status=r.status)
        self.bus.emit("referee.done", summary(self.judged))
        return self.runner.writer.results


def summary(judged: Sequence[ScenarioResult]) -> str:
    """`referee: 24 judgements on 2 kernels: 22 agree, 1 disagreement, 1 without a verdict`."""
    n = {s: sum(r.status == s for r in judged) for s in (PASS, FAIL, SKIP, ERROR)}
    kernels = len({r.kernel for r in judged})
    text = (f"referee: {len(judged)} judgement(s) on {kernels} kernel(s): {n[PASS]} agree, "
            f"{n[FAIL]} disagreement(s), {n[SKIP]} without a verdict")
    if n[ERROR]:
        text += f", {n[ERROR]} selftest error(s)"
    disagreements = [r.key for r in judged if r.status == FAIL]
    if disagreements:
        text += ": " + "; ".join(disagreements)
    return text
