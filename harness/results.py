"""Results are data first: one JSON line per finished scenario, written as it finishes (a crash
keeps what finished), a run.json with the environment, then JUnit rendered from that data."""

from __future__ import annotations

import json
import platform
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from .output import OutputError, append_line, atomic_write

PASS, FAIL, SKIP, ERROR = "pass", "fail", "skip", "error"


@dataclass
class ScenarioResult:
    scenario: str
    kernel: str  # release, e.g. 6.1.0-56-amd64
    kernel_spec: str
    hierarchy: str
    status: str  # pass, fail, skip, error
    reason: str = ""  # why it was skipped, or what the error was
    description: str = ""
    checks: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    samples: dict[str, list] = field(default_factory=dict)  # cgroup -> [[t, usage, swap], ...]
    # the scenario's byte limits per cgroup ("." its own), version-neutral knob names:
    # {"hog": {"memory.max": 33554432, "memory.swap.max": 0}}; `max` (no limit) is left out
    limits: dict[str, dict[str, int]] = field(default_factory=dict)
    # boots that failed before this scenario's steps started and were retried (the reason and
    # the console directory of each): the environment's failures, kept on record
    retries: list[str] = field(default_factory=list)
    backtraces: list[dict] = field(default_factory=list)  # gdb hits: frames, text (capture.py)
    console_excerpt: str = ""
    failure_kind: str | None = None  # panic, oops, bug, warning, lockup, hang, taint
    duration: float = 0.0
    machine: str = ""  # which boot ran it (console log name)
    started_at: str = ""

    @property
    def key(self) -> str:
        return f"{self.scenario} [{self.kernel} {self.hierarchy}]"

    def failed_checks(self) -> list[dict]:
        return [c for c in self.checks if not c.get("passed") and not c.get("skipped_reason")]


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
        line = json.dumps(asdict(result), sort_keys=True)
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


def load_results(directory: Path) -> list[ScenarioResult]:
    out = []
    path = directory / "results.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(ScenarioResult(**json.loads(line)))
    return out


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
    """One testcase per scenario x kernel x hierarchy; a suite per kernel x hierarchy."""
    suites: dict[str, list[TestCase]] = {}
    for r in results:
        suite = f"{r.kernel}.{r.hierarchy}"
        stdout = "\n".join(f"gdb #{b['breakpoint']} {b['location']} hit {b['hit']} in "
                            f"{b['comm']}[{b['pid']}]:\n{b['text']}" for b in r.backtraces)
        tc = TestCase(name=r.scenario, classname=f"kharness.{r.kernel}.{r.hierarchy}",
                      elapsed_sec=r.duration, file=r.scenario, stdout=stdout or None)
        if r.status == SKIP:
            tc.add_skipped_info(message=r.reason)
        elif r.status == FAIL:
            lines = [f"{c['description']}: expected {c['expected']}, observed {c['observed']}"
                     for c in r.failed_checks()]
            tc.add_failure_info(
                message=f"{r.scenario} on {r.kernel} {r.hierarchy}: " + "; ".join(lines),
                output="\n".join(lines))
        elif r.status == ERROR:
            tc.add_error_info(message=f"{r.failure_kind or 'error'}: {r.reason}",
                              output=r.console_excerpt or r.reason)
        suites.setdefault(suite, []).append(tc)
    return to_xml_report_string([TestSuite(name, cases) for name, cases in sorted(suites.items())])
