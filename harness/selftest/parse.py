"""The output of one kernel selftest binary, as results.

The cgroup selftests print kselftest's format (tools/testing/selftests/kselftest.h): test_pids a
TAP header and plan (`TAP version 13`, `1..2`), the others bare result lines:

    ok 1 test_memcg_subtree_control
    not ok 4 test_memcg_min
    ok 12 # SKIP test_cgcore_lesser_ns_open
    1..0 # SKIP memory controller isn't available      (the whole binary skipped)
    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0

A subtest says why it skipped or failed only in what it printed before its result line
(`# ...` messages on stdout, perror lines on stderr: run it on a terminal, so both arrive in
order), so the lines since the previous result are kept as that subtest's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RESULT = re.compile(r"^(not ok|ok)\s+(\d+)\s*(.*?)\s*$")
_DIRECTIVE = re.compile(r"^(.*?)\s*#\s*(SKIP|TODO|XFAIL|XPASS|ERROR)\b\s*(.*)$", re.IGNORECASE)
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*SKIP\b\s*(.*))?$", re.IGNORECASE)
_TOTALS = re.compile(r"^#\s*Totals:")
_LATE_RESULT = re.compile(r"(?:not ok|ok) \d+ (?:test_\w+|#\s*SKIP\b.*)$")


@dataclass(frozen=True)
class Subtest:
    number: int
    name: str
    status: str  # pass, fail, skip
    output: tuple[str, ...] = ()  # what it printed before its result line
    directive: str = ""  # the text after `# SKIP` when it is not just the name

    @property
    def reason(self) -> str:
        """Why it skipped or failed, in its own words ("" when it printed nothing)."""
        said = [line.removeprefix("#").strip() for line in self.output if line.strip()]
        return "; ".join(said[-3:]) if said else self.directive


@dataclass
class BinaryOutput:
    subtests: list[Subtest] = field(default_factory=list)
    plan: int | None = None  # TAP's 1..N
    skipped: str | None = None  # `1..0 # SKIP why`: the whole binary skipped
    trailing: list[str] = field(default_factory=list)  # printed after the last result

    def missing(self) -> int:
        """Subtests the plan announced that never reported (the binary died first)."""
        return max(0, (self.plan or 0) - len(self.subtests))


def parse(text: str) -> BinaryOutput:
    out = BinaryOutput()
    pending: list[str] = []
    for raw in text.replace("\r", "").splitlines():
        line = raw.rstrip()
        if not line.strip() or line.startswith("TAP version"):
            continue
        m = _PLAN.match(line)
        if m:
            out.plan = int(m.group(1))
            if out.plan == 0:
                out.skipped = (m.group(2) or "").strip() or "skipped (no reason given)"
            continue
        m = _RESULT.match(line)
        if m is None and (late := _LATE_RESULT.search(line)):
            # `...while wb is enablednot ok 4 test_x`: a message printed without its newline
            pending.append(line[:late.start()])
            m = _RESULT.match(line[late.start():])
        if m:
            ok, number, rest = m.group(1) == "ok", int(m.group(2)), m.group(3)
            status, name, directive = ("pass" if ok else "fail"), rest, ""
            d = _DIRECTIVE.match(rest)
            if d:
                name, word, directive = d.group(1).strip(), d.group(2).upper(), d.group(3).strip()
                if word == "SKIP":
                    status = "skip"
                elif word == "XFAIL":
                    status = "pass"  # an expected failure is the kernel behaving as known
                elif word == "ERROR":
                    status = "fail"
                if not name and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", directive):
                    # `ok 12 # SKIP test_cgcore_lesser_ns_open`: ksft_test_result_skip puts
                    # the name after the directive; ksft_exit_skip puts a reason there
                    name, directive = directive, ""
            out.subtests.append(Subtest(number, name or f"subtest{number}", status,
                                        tuple(pending), directive))
            pending = []
            continue
        if _TOTALS.match(line):
            continue
        pending.append(line)
    out.trailing = pending
    return out
