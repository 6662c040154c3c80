"""`kharness backtrace FUNCTION`: reproduce a backtrace.

The command writes a one-off scenario (a cgroup with the knobs asked for, the workload in it, a
breakpoint at FUNCTION) into its results directory and runs it through the scenario runner on
each kernel, so it boots, captures and cleans up exactly as `kharness run` does, and the
scenario file stays behind to rerun or to edit. `report()` gives the text of the captured
backtraces, the way gdb prints them, and for several kernels how the call chains differ; the
command line (harness/cli.py) prints it.
"""

from __future__ import annotations

import io
import itertools
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .frames import Backtrace, diff_chains, format_diff
from .results import ScenarioResult

# Without --caller, the first try_charge_memcg a fresh memhog reaches is exec's page-table
# charge: the page fault's anonymous folio charge is what people chase.
DEFAULT_CALLERS = {"try_charge_memcg": ("__mem_cgroup_charge", "do_anonymous_page")}
DEFAULT_WORKLOAD = "memhog 64"
DEFAULT_KNOBS = ("memory.max=32M",)
CGROUP = "bt"


@dataclass
class Request:
    function: str
    kernels: list[str]
    hierarchy: str = "v2"
    knobs: tuple[str, ...] = DEFAULT_KNOBS
    swap: str | None = None
    workload: str = DEFAULT_WORKLOAD
    count: int = 1
    comm: str | None = None
    callers: tuple[str, ...] | None = None  # None: DEFAULT_CALLERS
    capture: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()  # gdb commands at each hit (lx-dmesg on a debug build)
    timeout: float = 120.0

    @property
    def effective_comm(self) -> str | None:
        """--comm, else the workload's program name (not for a shell: its children vary)."""
        if self.comm is not None:
            return self.comm or None
        words = shlex.split(self.workload)
        prog = Path(words[0]).name if words else ""
        return None if prog in ("sh", "ash", "bash", "env", "") else prog[:15]

    @property
    def effective_callers(self) -> tuple[str, ...]:
        if self.callers is None:
            return DEFAULT_CALLERS.get(self.function, ())
        return tuple(c for c in self.callers if c != "none")


def knob_values(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--set {item!r}: expected KNOB=VALUE, e.g. memory.max=32M")
        out[name.strip()] = value.strip()
    return out


def scenario_doc(req: Request) -> dict[str, Any]:
    """The one-off scenario: validated by the same loader as every scenario file."""
    knobs = knob_values(req.knobs)
    controllers = sorted({"memory"} | {k.split(".", 1)[0] for k in knobs})
    bp: dict[str, Any] = ({"location": req.function} if ":" in req.function
                          else {"function": req.function})
    bp["count"] = req.count
    bp["hits"] = [1, req.count]
    if req.effective_comm:
        bp["comm"] = req.effective_comm
    if req.effective_callers:
        bp["callers"] = list(req.effective_callers)
    if req.capture:
        bp["capture"] = list(req.capture)
    if req.commands:
        bp["commands"] = list(req.commands)
    return {
        "description": f"kharness backtrace {req.function}: {req.workload!r} in a cgroup with "
                       + (", ".join(f"{k}={v}" for k, v in knobs.items()) or "no knobs"),
        "hierarchies": [req.hierarchy],
        "requires": {"controllers": controllers},
        "machine": {"swap": req.swap or "none"},
        "cgroups": {CGROUP: knobs},
        "steps": [{"name": "workload", "run": req.workload, "cgroup": CGROUP,
                   "timeout": req.timeout}],
        "gdb": [bp],
    }


def command_line(req: Request) -> list[str]:
    """The `kharness backtrace` argv that makes this request (for --script)."""
    argv = ["backtrace", req.function]
    for k in req.kernels:
        argv += ["--kernel", k]
    argv += ["--hierarchy", req.hierarchy]
    for item in req.knobs:
        argv += ["--set", item]
    if req.swap:
        argv += ["--swap", req.swap]
    argv += ["--workload", req.workload, "--count", str(req.count)]
    if req.comm is not None:
        argv += ["--comm", req.comm]
    for c in req.callers or ():
        argv += ["--caller", c]
    for e in req.capture:
        argv += ["--capture", e]
    for c in req.commands:
        argv += ["--gdb-command", c]
    return argv


def write_script(req: Request, path: Path) -> None:
    argv = " ".join(shlex.quote(a) for a in command_line(req))
    path.write_text(
        "#!/bin/sh\n"
        f"# Reproduces a {req.function} backtrace with kharness (written by `kharness "
        "backtrace --script`).\n"
        "# Needs kharness on PATH, or KHARNESS=/path/to/kharness-checkout/kh; extra arguments\n"
        "# (--json FILE, -q...) are passed on.\n"
        'set -e\n'
        f'exec ${{KHARNESS:-kharness}} {argv} "$@"\n')
    path.chmod(0o755)


def write_scenario(req: Request, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "backtrace.yaml"
    path.write_text("# written by kharness backtrace; rerun with `kharness run "
                    f"{path}`\n" + yaml.safe_dump(scenario_doc(req), sort_keys=False))
    return path


def report(results: list[ScenarioResult], req: Request) -> tuple[str, dict, bool]:
    """The backtraces per kernel and the chain differences as text (what `kharness backtrace`
    prints), the JSON document, and whether every kernel gave its backtraces."""
    out = io.StringIO()
    doc: dict[str, Any] = {"function": req.function, "request": command_line(req),
                           "kernels": [], "differences": []}
    firsts: list[tuple[str, Backtrace]] = []
    ok = True
    for r in results:
        entry = {"kernel": r.kernel, "kernel_spec": r.kernel_spec, "hierarchy": r.hierarchy,
                 "status": r.status.value, "reason": r.reason,
                 "backtraces": [b.to_dict() for b in r.backtraces]}
        doc["kernels"].append(entry)
        head = f"== {req.function} on {r.kernel} ({r.hierarchy})"
        if not r.backtraces:
            ok = False
            why = r.reason or "; ".join(
                f"{c.description}: {c.skipped_reason or c.observed}"
                for c in r.checks if not c.passed) or "no hit"
            print(f"{head}: no backtrace: {why}", file=out)
            if r.console_excerpt:
                print(r.console_excerpt[-2000:], file=out)
            continue
        for b in r.backtraces:
            print(f"{head}, hit {b.hit + 1} of {len(r.backtraces)} in {b.comm}[{b.pid}] "
                  f"after {b.elapsed:.2f}s", file=out)
            if b.values:
                print("   " + ", ".join(f"{k} = {v}" for k, v in b.values.items()), file=out)
            print(b.text, file=out)
            for command, output in b.outputs.items():
                print(f"(gdb) {command}\n{output}", file=out)
        firsts.append((r.kernel, r.backtraces[0].chain()))
    for (ka, a), (kb, b) in itertools.pairwise(firsts):
        d = diff_chains(a, b)
        print(format_diff(d, ka, kb), file=out)
        doc["differences"].append({
            "from": ka, "to": kb,
            "added": [f.function for f in d.added], "removed": [f.function for f in d.removed],
            "inlined_changed": [{"function": x.function, "from": x.inlined, "to": y.inlined}
                                for x, y in d.inlined_changed]})
    return out.getvalue(), doc, ok


def write_json(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
