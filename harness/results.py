"""Results are data first: one JSON line per finished scenario, written as it finishes (a crash
keeps what finished), a run.json with the environment, then JUnit rendered from that data.

A result is typed from the runner to the readers: a ScenarioResult holds its Status, its Checks,
its steps' outcomes (StepOutcome for a `run` step, WriteOutcome for a `write`), its memory
Samples and its CapturedBacktraces (frames as harness.frames.Frame). It becomes JSON in one
place, `ScenarioResult.to_dict()` (ResultsWriter.add writes it as a line of results.jsonl), and
comes back from it in one, `ScenarioResult.from_dict()` (harness/rundir.py reads results.jsonl
with it). The format is the one results.jsonl has always had: the same keys and values, keys
sorted, so that older results directories read and a read result writes back byte for byte.
"""

from __future__ import annotations

import json
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from junit_xml import TestCase, TestSuite, to_xml_report_string

from .frames import GDB, Backtrace, Frame
from .output import OutputError, append_line, atomic_write


class Status(StrEnum):
    """A cell's outcome; a str, so it is written (and compares) as "pass", "fail"..."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"


PASS, FAIL, SKIP, ERROR = Status.PASS, Status.FAIL, Status.SKIP, Status.ERROR


class ResultFormatError(ValueError):
    """A JSON record that is not a result; the message names the field (`checks[2]`)."""


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ResultFormatError(f"{where}: not a JSON object")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise ResultFormatError(f"{where}: not a JSON list")
    return value


@dataclass(frozen=True)
class Check:
    """The outcome of one expectation. A skipped check has `skipped_reason` and `passed` False:
    it is neither a pass nor a failure."""

    description: str  # "metric oom_kill of hog >= 1"
    expected: str  # "oom_kill >= 1", "peak approx 32M ±10%"
    observed: str  # "0", "33554432 (32M)"; "" when skipped
    passed: bool
    skipped_reason: str | None = None

    @property
    def status(self) -> Status:
        """pass, fail or skip."""
        if self.skipped_reason is not None:
            return SKIP
        return PASS if self.passed else FAIL

    @property
    def failed(self) -> bool:
        """Neither passed nor skipped (an empty reason counts as none, as it always has)."""
        return not self.passed and not self.skipped_reason

    @property
    def message(self) -> str:
        """One line for a report or a JUnit failure."""
        if self.skipped_reason is not None:
            return f"skipped: {self.skipped_reason}"
        return f"expected {self.expected}, observed {self.observed}"

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "expected": self.expected,
                "observed": self.observed, "passed": self.passed,
                "skipped_reason": self.skipped_reason}

    @classmethod
    def from_dict(cls, data: Any, where: str = "check") -> Check:
        data = _object(data, where)
        return cls(description=data.get("description", ""), expected=data.get("expected", ""),
                   observed=data.get("observed", ""), passed=data.get("passed", False),
                   skipped_reason=data.get("skipped_reason"))


@dataclass(frozen=True)
class StepOutcome:
    """What a `run` step did: its exit status (-1 without one: it timed out, or the guest
    went away), the signal that ended it, its output's tail and the KEY=VALUE words it
    printed (`fields`, what `expect: step` entries read)."""

    name: str
    command: str  # as the scenario wrote it
    cgroup: str  # "." for the scenario's own
    exit_status: int
    signal: str | None  # "SIGKILL"; None when no signal ended it
    timed_out: bool
    timeout: float
    duration: float  # seconds, rounded to ms
    stdout: str  # the last 4000 characters
    stderr: str  # the last 2000
    fields: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "command": self.command, "cgroup": self.cgroup,
                "exit_status": self.exit_status, "signal": self.signal,
                "timed_out": self.timed_out, "timeout": self.timeout,
                "duration": self.duration, "stdout": self.stdout, "stderr": self.stderr,
                "fields": dict(self.fields)}

    @classmethod
    def from_dict(cls, data: dict, where: str = "step") -> StepOutcome:
        return cls(name=data.get("name", ""), command=data.get("command", ""),
                   cgroup=data.get("cgroup", "."), exit_status=data.get("exit_status", -1),
                   signal=data.get("signal"), timed_out=data.get("timed_out", False),
                   timeout=data.get("timeout", 0.0), duration=data.get("duration", 0.0),
                   stdout=data.get("stdout", ""), stderr=data.get("stderr", ""),
                   fields=dict(_object(data.get("fields", {}), f"{where}.fields")))


@dataclass(frozen=True)
class WriteOutcome:
    """What a `write` / `write_file` step did: the knob or file, the value, and the errno
    name of the write that failed (None: every write succeeded)."""

    name: str
    write: str  # the knob (memory.max) or the raw file name
    value: str
    errno: str | None
    file: str | None  # the guest path last written; None when nothing was

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "write": self.write, "value": self.value,
                "errno": self.errno, "file": self.file}

    @classmethod
    def from_dict(cls, data: dict, where: str = "step") -> WriteOutcome:
        return cls(name=data.get("name", ""), write=data.get("write", ""),
                   value=data.get("value", ""), errno=data.get("errno"),
                   file=data.get("file"))


Step = StepOutcome | WriteOutcome


def step_from_dict(data: Any, where: str = "step") -> Step:
    """A run step has its `command`, a write step its `write`."""
    data = _object(data, where)
    if "write" in data:
        return WriteOutcome.from_dict(data, where)
    return StepOutcome.from_dict(data, where)


@dataclass(frozen=True)
class Sample:
    """One reading of the memory sampler while a step ran; JSON: [t, usage, swap]."""

    t: float  # guest uptime, seconds
    usage: int | None  # bytes
    swap: int | None  # bytes; None where the hierarchy has no swap counter

    def to_list(self) -> list:
        return [self.t, self.usage, self.swap]

    @classmethod
    def from_list(cls, data: Any, where: str = "sample") -> Sample:
        if not isinstance(data, list) or len(data) not in (2, 3):
            raise ResultFormatError(f"{where}: not a [t, usage, swap] list")
        return cls(data[0], data[1], data[2] if len(data) > 2 else None)


@dataclass(frozen=True)
class CapturedBacktrace:
    """One hit of a scenario's gdb breakpoint: which breakpoint (`index` in the scenario's
    gdb: list, its location), the how-many-th hit, where it stopped, the task, the values of
    the captured expressions, the output of the gdb commands, and the call chain: `frames`
    (empty when gdb's text could not be parsed: `raw` is what gdb printed) and `text`
    (formatted the way gdb prints it)."""

    breakpoint: int
    location: str
    hit: int  # 0 for the first
    stopped_at: str  # "try_charge_memcg at mm/memcontrol.c:2632"
    comm: str | None
    pid: int | None
    elapsed: float  # seconds since the capture started
    values: dict[str, str]
    outputs: dict[str, str]  # gdb command -> what it printed
    text: str
    raw: str
    frames: tuple[Frame, ...] = ()
    truncated_at: str | None = None  # the entry function past which frames were dropped

    def chain(self) -> Backtrace:
        """The call chain as harness.frames compares it (diff_chains)."""
        return Backtrace(self.frames, GDB, comm=self.comm, pid=self.pid,
                         values=dict(self.values), truncated_at=self.truncated_at)

    def to_dict(self) -> dict[str, Any]:
        return {"breakpoint": self.breakpoint, "location": self.location, "hit": self.hit,
                "stopped_at": self.stopped_at, "comm": self.comm, "pid": self.pid,
                "elapsed": self.elapsed, "values": dict(self.values),
                "outputs": dict(self.outputs), "text": self.text, "raw": self.raw,
                "frames": [f.to_dict() for f in self.frames],
                "truncated_at": self.truncated_at}

    @classmethod
    def from_dict(cls, data: Any, where: str = "backtrace") -> CapturedBacktrace:
        data = _object(data, where)
        frames = []
        for i, f in enumerate(_list(data.get("frames", []), f"{where}.frames")):
            try:
                frames.append(Frame.from_dict(_object(f, f"{where}.frames[{i}]")))
            except (KeyError, TypeError, ValueError) as exc:
                raise ResultFormatError(f"{where}.frames[{i}]: not a frame ({exc})") from None
        return cls(breakpoint=data.get("breakpoint", 0), location=data.get("location", ""),
                   hit=data.get("hit", 0), stopped_at=data.get("stopped_at", ""),
                   comm=data.get("comm"), pid=data.get("pid"),
                   elapsed=data.get("elapsed", 0.0),
                   values=dict(_object(data.get("values", {}), f"{where}.values")),
                   outputs=dict(_object(data.get("outputs", {}), f"{where}.outputs")),
                   text=data.get("text", ""), raw=data.get("raw", ""), frames=tuple(frames),
                   truncated_at=data.get("truncated_at"))


@dataclass
class ScenarioResult:
    scenario: str
    kernel: str  # release, e.g. 6.1.0-56-amd64
    kernel_spec: str
    hierarchy: str
    status: Status
    reason: str = ""  # why it was skipped, or what the error was
    description: str = ""
    checks: list[Check] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # cgroup -> samples
    # the scenario's byte limits per cgroup ("." its own), version-neutral knob names:
    # {"hog": {"memory.max": 33554432, "memory.swap.max": 0}}; `max` (no limit) is left out
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    # boots that failed before this scenario's steps started and were retried (the reason and
    # the console directory of each): the environment's failures, kept on record
    retries: list[str] = field(default_factory=list)
    backtraces: list[CapturedBacktrace] = field(default_factory=list)  # gdb hits (capture.py)
    console_excerpt: str = ""
    failure_kind: str | None = None  # panic, oops, bug, warning, lockup, hang, taint
    duration: float = 0.0
    machine: str = ""  # which boot ran it (console log name)
    started_at: str = ""
    # "referee": a selftest cell `kharness run --referee` ran to judge scenarios by; its
    # verdict is in the referee/ cells, which are the run's JUnit cases (harness/referee.py)
    role: str = ""
    # Fields of results.jsonl this version does not know (a newer kharness wrote them): kept
    # to be written back as they were (`kharness merge`), never read here.
    unknown: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def key(self) -> str:
        return f"{self.scenario} [{self.kernel} {self.hierarchy}]"

    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    def run_steps(self) -> list[StepOutcome]:
        return [s for s in self.steps if isinstance(s, StepOutcome)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of results.jsonl: the one place a result becomes JSON."""
        return {
            **self.unknown,
            "scenario": self.scenario, "kernel": self.kernel, "kernel_spec": self.kernel_spec,
            "hierarchy": self.hierarchy, "status": self.status.value, "reason": self.reason,
            "description": self.description,
            "checks": [c.to_dict() for c in self.checks],
            "steps": [s.to_dict() for s in self.steps],
            "samples": {cg: [s.to_list() for s in points] for cg, points in self.samples.items()},
            "limits": {cg: dict(limits) for cg, limits in self.limits.items()},
            "retries": list(self.retries),
            "backtraces": [b.to_dict() for b in self.backtraces],
            "console_excerpt": self.console_excerpt, "failure_kind": self.failure_kind,
            "duration": self.duration, "machine": self.machine, "started_at": self.started_at,
            **({"role": self.role} if self.role else {}),
        }

    def to_json(self) -> str:
        """One line of results.jsonl (keys sorted, as they always were)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ScenarioResult:
        """A record of results.jsonl, as to_dict wrote it, or an older version did (fields
        that came later take their defaults). ResultFormatError names what is wrong; the
        caller adds the file and line (harness/rundir.py)."""
        data = _object(data, "result")
        for name in ("scenario", "kernel", "hierarchy", "status"):
            if not isinstance(data.get(name), str):
                raise ResultFormatError(f"no {name}")
        try:
            status = Status(data["status"])
        except ValueError:
            raise ResultFormatError(f"unknown status {data['status']!r}") from None
        samples = {}
        for cg, points in _object(data.get("samples", {}), "samples").items():
            samples[cg] = [Sample.from_list(p, f"samples[{cg!r}][{i}]")
                           for i, p in enumerate(_list(points, f"samples[{cg!r}]"))]
        known = {f.name for f in fields(cls)} - {"unknown"}
        return cls(
            scenario=data["scenario"], kernel=data["kernel"],
            kernel_spec=data.get("kernel_spec", ""), hierarchy=data["hierarchy"],
            status=status, reason=data.get("reason", ""),
            description=data.get("description", ""),
            checks=[Check.from_dict(c, f"checks[{i}]")
                    for i, c in enumerate(_list(data.get("checks", []), "checks"))],
            steps=[step_from_dict(s, f"steps[{i}]")
                   for i, s in enumerate(_list(data.get("steps", []), "steps"))],
            samples=samples,
            limits={cg: dict(_object(v, f"limits[{cg!r}]"))
                    for cg, v in _object(data.get("limits", {}), "limits").items()},
            retries=list(_list(data.get("retries", []), "retries")),
            backtraces=[CapturedBacktrace.from_dict(b, f"backtraces[{i}]")
                        for i, b in enumerate(_list(data.get("backtraces", []), "backtraces"))],
            console_excerpt=data.get("console_excerpt", ""),
            failure_kind=data.get("failure_kind"), duration=data.get("duration", 0.0),
            machine=data.get("machine", ""), started_at=data.get("started_at", ""),
            role=str(data.get("role") or ""),
            unknown={k: v for k, v in data.items() if k not in known},
        )


class ResultsWriter:
    """`results/<run-id>/`: results.jsonl (appended per scenario), run.json, junit.xml, and
    machines/<boot>/ with each boot's console.log, qemu.argv and qemu.stderr."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.dir, exc) from exc
        self.jsonl = self.dir / "results.jsonl"
        self._lock = threading.Lock()
        self.results: list[ScenarioResult] = []

    def add(self, result: ScenarioResult) -> None:
        """Append the result as one fsynced line. A write that fails (a full disk) raises
        OutputError and leaves the file with its earlier lines only, this result not kept."""
        line = result.to_json()
        with self._lock:
            append_line(self.jsonl, line)
            self.results.append(result)

    def write_run_info(self, info: dict) -> None:
        """run.json, replaced whole (a failed write keeps the previous one)."""
        atomic_write(self.dir / "run.json", json.dumps(info, indent=2, sort_keys=True) + "\n")

    def write_junit(self, *copies: Path) -> None:
        """junit.xml (and copies elsewhere, e.g. --junit) from the results so far."""
        text = junit_xml(self.results)
        atomic_write(self.dir / "junit.xml", text)
        for path in copies:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text)


def environment(kernels: list, accel: str) -> dict:
    """What explains differences between runs: kernels and their configs, QEMU, accelerator."""
    import hashlib

    def qemu_version() -> str:
        try:
            out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                                 text=True, check=False).stdout
            return out.splitlines()[0] if out else "unknown"
        except OSError:
            return "missing"

    ks = []
    for k in kernels:
        cfg = k.config.read_bytes() if k.config else b""
        ks.append({
            "spec": k.spec, "release": k.release, "package": k.origin.get("package", ""),
            "package_version": k.origin.get("package_version", ""),
            "config_sha256": hashlib.sha256(cfg).hexdigest() if cfg else None,
            "flags": k.flags(),
            **({"build": k.origin["build"]} if k.origin.get("build") else {}),
        })
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(), "host_kernel": platform.release(),
        "python": platform.python_version(), "qemu": qemu_version(), "accel": accel,
        "kernels": ks,
    }


def junit_xml(results: list[ScenarioResult]) -> str:
    """One testcase per scenario x kernel x hierarchy; a suite per kernel x hierarchy. The
    selftest cells a referee ran are not cases of their own: the referee/ cells judging the
    scenarios by them are (a selftest's not ok that the scenario agrees with is no failure of
    the run)."""
    suites: dict[str, list[TestCase]] = {}
    for r in results:
        if r.role == "referee":
            continue
        suite = f"{r.kernel}.{r.hierarchy}"
        stdout = "\n".join(f"gdb #{b.breakpoint} {b.location} hit {b.hit} in "
                            f"{b.comm}[{b.pid}]:\n{b.text}" for b in r.backtraces)
        tc = TestCase(name=r.scenario, classname=f"kharness.{r.kernel}.{r.hierarchy}",
                      elapsed_sec=r.duration, file=r.scenario, stdout=stdout or None)
        if r.status == SKIP:
            tc.add_skipped_info(message=r.reason)
        elif r.status == FAIL:
            lines = [f"{c.description}: expected {c.expected}, observed {c.observed}"
                     for c in r.failed_checks()]
            # a failure's reason, when it has one, says it best (a selftest's not ok, the
            # referee's disagreement); scenario failures have only their checks
            tc.add_failure_info(
                message=f"{r.scenario} on {r.kernel} {r.hierarchy}: "
                + (r.reason or "; ".join(lines)),
                output="\n".join([r.reason, *lines] if r.reason else lines))
        elif r.status == ERROR:
            tc.add_error_info(message=f"{r.failure_kind or 'error'}: {r.reason}",
                              output=r.console_excerpt or r.reason)
        suites.setdefault(suite, []).append(tc)
    return to_xml_report_string([TestSuite(name, cases) for name, cases in sorted(suites.items())])
