"""The check of a scenario file (docs/scenarios.md): every problem at once, each with its file,
key path (`steps[2].write`) and line, before anything boots.

Two passes over the same document, and both always run so that a file's problems are all
listed at once:
- the JSON Schema (harness/scenario_schema.py): structure, types, allowed keys;
- the rules the schema cannot say: knob, metric and feature names and each knob's value kind
  (all from harness.cgroups.knobs), sizes and numbers, operators and their values, programs the
  guest image has (harness/guest_programs.py), references between steps, cgroups and
  expectations, `when` blocks and kernel constraints.

`check(display, text)` gives the document and its problems; harness/scenario.py loads files
and builds the dataclasses from a document without problems. Nothing here prints.

Slightly over ~600 lines: one rule method per section of the document, sharing what the
earlier ones learnt (hierarchies, cgroups, steps); the tables they check against live elsewhere
(knobs, guest programs, selftest cases).
"""

from __future__ import annotations

import errno
import math
import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from . import scenario_schema
from .cgroups.knobs import BYTE_METRICS, FEATURES, KNOBS, METRICS, SAMPLED_METRICS, VERSIONS
from .guest_programs import command_program, guest_programs
from .scenario_schema import OPERATORS, ORDERING_OPERATORS, Path_, describe, did_you_mean
from .selftest.cases import parse_case
from .units import parse_size, parse_tolerance, parse_value

HIERARCHIES = VERSIONS
ROOT = ""  # the scenario's own cgroup; "." in a file means the same

_PLACEHOLDER = re.compile(r"\{(disk|rdma|cgroup:[^{}]*)\}")
_CONSTRAINT = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(\d+(?:\.\d+){0,2}(?:-\d+)?)\s*$")
_INT = re.compile(r"^[+-]?\d+$")


# --- problems ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file. `line` is where in the file, when known."""

    file: str
    key_path: str  # "steps[2].write", "expect[0].op"; "" for the file as a whole
    message: str
    line: int | None = None

    def __str__(self) -> str:
        if self.key_path:
            return f"{self.file}: {self.key_path}: {self.message}"
        return f"{self.file}: {self.message}"


def key_path(path: Iterable[str | int]) -> str:
    """("steps", 2, "write") -> "steps[2].write"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_kernel_constraint(constraint: str) -> list[tuple[str, tuple[int, ...]]]:
    """`">=6.1,<6.13"` -> [(">=", (6, 1)), ("<", (6, 13))]; ValueError when malformed."""
    parts = []
    for part in str(constraint).split(","):
        m = _CONSTRAINT.match(part)
        if not m:
            raise ValueError(
                f"malformed kernel constraint {constraint!r}: give comparisons separated by "
                'commas, such as ">=6.1,<6.13" (operators >=, <=, >, <, ==, !=)')
        version, _, abi = m.group(2).partition("-")
        numbers = [int(x) for x in version.split(".")]
        if abi:  # 6.1.0-53: Debian's ABI number, a fourth after a full version
            numbers += [0] * (3 - len(numbers)) + [int(abi)]
        parts.append((m.group(1) or "==", tuple(numbers)))
    return parts



def normalize_cgroup(path: str) -> str:
    """A cgroup as a scenario names it -> its path below the scenario's own cgroup; "" and "."
    are that cgroup itself (ROOT)."""
    path = path.strip()
    return ROOT if path in ("", ".") else path


# --- reading the file ------------------------------------------------------------------------

def check(display: str, text: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """(the document, every problem of it) for a scenario file's text; `display` is the file
    as problems name it. The document is None when it could not be parsed; it is only fit to
    build a Scenario from when there are no problems."""
    try:
        doc = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        return None, [_yaml_problem(display, exc)]
    except yaml.YAMLError as exc:
        return None, [Problem(display, "", f"YAML error: {exc}")]
    if doc is None:
        return None, [Problem(display, "", "empty file: a scenario is a mapping with at least "
                              "a description (see docs/scenarios.md)", 1)]
    lines, duplicates = _node_lines(node)
    checker = _Checker(display, lines)
    for dup in duplicates:
        checker.problem(dup, f"duplicate key {dup[-1]!r}: YAML keeps only the last one")
    for path, message in scenario_schema.problems(doc):
        checker.problem(path, message)
    if isinstance(doc, dict):
        checker.rules(doc)
    return doc, checker.sorted_problems()


def _yaml_problem(display: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A syntax error at the line where the broken construct starts (PyYAML's context mark:
    the `[` never closed, the quote never ended), the place the parser gave up named after it
    (often a later line: the next key, the end of the file)."""
    problem, context = exc.problem or str(exc), exc.context
    found, start = exc.problem_mark, exc.context_mark
    at = f"line {found.line + 1}, column {found.column + 1}" if found else ""
    # An unclosed construct (a `[`, `{` or quote; a key without its colon) is broken where it
    # starts; in a block mapping or sequence the line the parser stopped at is the bad one (an
    # indentation slip), so the context is not used there.
    unclosed = context and ("flow" in context or "scanning" in context)
    if start is not None and unclosed and (found is None or start.line < found.line):
        what = context.removeprefix("while ").replace("parsing a", "a").replace(
            "scanning a", "a").replace("scanning an", "an")
        line = start.line + 1
        text = (f"YAML syntax error: {what} that starts here (column {start.column + 1}) is "
                f"broken: {problem}" + (f" at {at}" if at else ""))
    else:
        line = found.line + 1 if found else None
        text = f"YAML syntax error: {problem}" + (f" (column {found.column + 1})" if found
                                                   else "")
    return Problem(display, f"line {line}" if line else "", text, line)


def _node_lines(node: yaml.Node | None) -> tuple[dict[Path_, int], list[Path_]]:
    """Line of every key and list item, and the keys given twice in one mapping."""
    lines: dict[Path_, int] = {}
    duplicates: list[Path_] = []
    seen_nodes: set[int] = set()

    def walk(n: yaml.Node, path: Path_) -> None:
        if id(n) in seen_nodes:
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            keys: set[str] = set()
            for k, v in n.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue
                p = (*path, k.value)
                if k.value in keys:
                    duplicates.append(p)
                keys.add(k.value)
                lines.setdefault(p, k.start_mark.line + 1)
                walk(v, p)
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                p = (*path, i)
                lines[p] = v.start_mark.line + 1
                walk(v, p)

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return lines, duplicates


# --- value shapes ----------------------------------------------------------------------------

def _size(v: Any) -> int | None:
    """Bytes of a size (`32M`, `1G`, `4096`), None when `v` is not one."""
    try:
        return parse_size(v.strip() if isinstance(v, str) else v)
    except (ValueError, TypeError):
        return None


def _numeric(v: Any) -> float | None:
    """A number, a numeric string or a size as a number (bytes); None otherwise."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    parsed = parse_value(v)
    if isinstance(parsed, (int, float)) and math.isfinite(parsed):
        return float(parsed)
    return None


def _int_value(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _INT.match(v.strip()):
        return int(v)
    return None


def _is_signal(v: Any) -> bool:
    if isinstance(v, int) and not isinstance(v, bool):
        return 0 <= v < signal.NSIG
    if not isinstance(v, str):
        return False
    name = v.strip().upper()
    if name in ("NONE", "0"):
        return True
    if not name.startswith("SIG"):
        name = "SIG" + name
    return name in signal.Signals.__members__


# --- the rules ------------------------------------------------------------------------------

class _Checker:
    """Collects the problems of one file, with the line of each key path."""

    def __init__(self, file: str, lines: dict[Path_, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[Problem] = []
        # What `rules` learns from the document, used by the rules after it.
        self.hierarchies: list[str] = list(HIERARCHIES)
        self.has_disk = False
        self.has_rdma = False
        self.cgroups: set[str] = {ROOT}
        self.all_step_names: set[str] = set()
        self.step_kinds: dict[str, tuple[int, dict[str, Any]]] = {}
        self.sampled_cgroups: set[str] = set()

    def problem(self, path: Path_, message: str) -> None:
        line = None
        for i in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:i]))
            if line is not None:
                break
        self.problems.append(Problem(self.file, key_path(path), message, line))

    def sorted_problems(self) -> list[Problem]:
        unique = list(dict.fromkeys(self.problems))
        return sorted(unique, key=lambda p: p.line or 0)

    # The rules the schema cannot express. Written defensively: the document may be malformed
    # anywhere (the schema has said so already), and every rule still runs on what is usable.

    def rules(self, doc: dict[str, Any]) -> None:
        hierarchies = doc.get("hierarchies")
        if not (isinstance(hierarchies, list) and hierarchies
                and all(h in HIERARCHIES for h in hierarchies)):
            hierarchies = list(HIERARCHIES)
        self.hierarchies = hierarchies
        machine = doc.get("machine") if isinstance(doc.get("machine"), dict) else {}
        self.has_disk = self._machine(machine)
        self.has_rdma = machine.get("rdma") is True
        self.cgroups = self._cgroups(doc.get("cgroups"))
        self._requires(doc.get("requires"))
        self._refs(doc.get("refs"))
        steps = doc.get("steps") if isinstance(doc.get("steps"), list) else []
        self.step_kinds = self._steps(steps)
        self.sampled_cgroups = {normalize_cgroup(s.get("cgroup", ROOT)) for s in steps
                                if isinstance(s, dict) and "run" in s
                                and s.get("sample", True) is True
                                and isinstance(s.get("cgroup", ROOT), str)}
        expect = doc.get("expect") if isinstance(doc.get("expect"), list) else []
        for i, exp in enumerate(expect):
            if isinstance(exp, dict):
                self._expectation(("expect", i), exp)
        gdb_list = doc.get("gdb") if isinstance(doc.get("gdb"), list) else []
        run_names = {s.get("name") for s in steps if isinstance(s, dict) and "run" in s}
        froms = {bp.get("from_step") for bp in gdb_list if isinstance(bp, dict)}
        for i, bp in enumerate(gdb_list):
            if not isinstance(bp, dict):
                continue
            if "from_step" in bp and isinstance(bp["from_step"], str):
                if bp["from_step"] not in run_names:
                    self.problem(("gdb", i, "from_step"),
                                 f"no run step is named {bp['from_step']!r} (run steps: "
                                 f"{', '.join(sorted(n for n in run_names if n)) or 'none named'})")
                elif len(froms) > 1:
                    self.problem(("gdb", i, "from_step"), "every breakpoint of a scenario is "
                                 "set at the same moment: give them all the same from_step")
            if "cgroup" in bp:
                self._cgroup_ref(("gdb", i, "cgroup"), bp["cgroup"])
            if "when" in bp:
                self._when(("gdb", i, "when"), bp["when"])
            hits = bp.get("hits")
            if isinstance(hits, list) and len(hits) == 2 and all(
                    isinstance(h, int) for h in hits) and hits[0] > hits[1]:
                self.problem(("gdb", i, "hits"), f"empty range {hits}: low above high")
            count = bp.get("count", 1)
            if isinstance(hits, list) and len(hits) == 2 and isinstance(count, int) \
                    and isinstance(hits[0], int) and hits[0] > count:
                self.problem(("gdb", i, "hits"), f"at most count={count} hits are captured, "
                             f"so {hits[0]} can never be reached")

    def _refs(self, refs: Any) -> None:
        """`refs:` names real selftest cases, each once, on a scenario that runs on v2 (the
        selftests test cgroup v2 only)."""
        if not isinstance(refs, list):
            return
        if refs and "v2" not in self.hierarchies:
            self.problem(("refs",), "the kernel's cgroup selftests test v2 only, and this "
                         "scenario runs on v1 only: a referee would have nothing to compare")
        seen: dict[str, int] = {}
        for i, ref in enumerate(refs):
            case, path = (ref, ("refs", i)) if isinstance(ref, str) else (
                ref.get("case") if isinstance(ref, dict) else None, ("refs", i, "case"))
            if not isinstance(case, str):
                continue
            try:
                parse_case(case)
            except ValueError as exc:
                self.problem(path, str(exc))
                continue
            if case in seen:
                self.problem(path, f"{case} is already refs[{seen[case]}]")
            seen.setdefault(case, i)
            if isinstance(ref, dict) and isinstance(ref.get("fails_on"), dict) \
                    and isinstance(ref["fails_on"].get("kernel"), str):
                self._kernel(("refs", i, "fails_on", "kernel"), ref["fails_on"]["kernel"])

    def _machine(self, machine: dict[str, Any]) -> bool:
        for key in ("memory", "swap", "disk"):
            if key not in machine:
                continue
            v = machine[key]
            if key != "memory" and (v is None or v == "none" or v == 0):
                continue
            if isinstance(v, int) and not isinstance(v, bool):
                self.problem(("machine", key), f"{v!r} has no unit: give a size such as 512M")
            elif isinstance(v, str) and (_size(v) is None or _INT.match(v.strip())):
                self.problem(("machine", key), f"{v!r} is not a size with a unit (512M, 1G)"
                             + ("" if key == "memory" else " or none"))
            elif isinstance(v, str) and (_size(v) or 0) <= 0:
                self.problem(("machine", key), f"{v!r}: must be more than 0")
        numa, cpus = machine.get("numa", 1), machine.get("cpus", 2)
        if (isinstance(numa, int) and isinstance(cpus, int) and not isinstance(numa, bool)
                and numa > 1 and cpus % numa):
            self.problem(("machine", "numa"), f"{numa} NUMA nodes need a multiple of {numa} "
                         f"CPUs (cpus is {cpus}): each node gets the same number")
        disk = machine.get("disk")
        return disk not in (None, "none", 0)

    def _requires(self, req: Any) -> None:
        if not isinstance(req, dict):
            return
        features = req.get("features")
        if isinstance(features, list):
            for i, f in enumerate(features):
                if isinstance(f, str) and f not in FEATURES:
                    self.problem(("requires", "features", i),
                                 f"unknown feature {f!r}{did_you_mean(f, FEATURES)}; known: "
                                 f"{', '.join(FEATURES)}")
                if f == "rdma" and not self.has_rdma:
                    self.problem(("requires", "features", i),
                                 "feature rdma needs `machine: {rdma: true}`; without it the "
                                 "scenario would always skip")
        if "kernel" in req and isinstance(req["kernel"], str):
            self._kernel(("requires", "kernel"), req["kernel"])

    def _kernel(self, path: Path_, constraint: str) -> None:
        try:
            parse_kernel_constraint(constraint)
        except ValueError as exc:
            self.problem(path, str(exc))

    def _when(self, path: Path_, when: Any) -> None:
        if not isinstance(when, dict):
            return
        hier = when.get("hierarchy")
        values = hier if isinstance(hier, list) else [hier] if isinstance(hier, str) else []
        for v in values:
            if not isinstance(v, str):
                continue
            if v not in HIERARCHIES:
                self.problem((*path, "hierarchy"), f"unknown hierarchy {v!r}"
                             f"{did_you_mean(v, HIERARCHIES)}; allowed: v1, v2")
        usable = [v for v in values if v in HIERARCHIES]
        if usable and not set(usable) & set(self.hierarchies):
            self.problem((*path, "hierarchy"),
                         f"never applies: the scenario runs on {', '.join(self.hierarchies)} "
                         "only (see `hierarchies`)")
        if isinstance(when.get("kernel"), str):
            self._kernel((*path, "kernel"), when["kernel"])

    def _placeholders(self, path: Path_, value: Any) -> None:
        if not isinstance(value, str):
            return
        for m in _PLACEHOLDER.finditer(value):
            word = m.group(1)
            if word == "disk" and not self.has_disk:
                self.problem(path, "{disk} needs a disk: set `machine: {disk: 64M}`")
            elif word == "rdma" and not self.has_rdma:
                self.problem(path, "{rdma} needs `machine: {rdma: true}`")
            elif word.startswith("cgroup:"):
                self._cgroup_ref(path, word.removeprefix("cgroup:"), "{cgroup:NAME} names")

    def _cgroup_ref(self, path: Path_, ref: Any, what: str = "names") -> None:
        if not isinstance(ref, str) or normalize_cgroup(ref) in self.cgroups:
            return
        declared = sorted(c for c in self.cgroups if c)
        hint = did_you_mean(ref, declared) or (
            f" (declared: {', '.join(declared)})" if declared else " (no cgroups are declared)")
        self.problem(path, f"{what} cgroup {ref!r}, which `cgroups` does not declare{hint}")

    def _cgroups(self, cgroups: Any) -> set[str]:
        declared = {ROOT}
        if not isinstance(cgroups, dict):
            return declared
        for name, entry in cgroups.items():
            if not isinstance(name, str):
                continue
            path = normalize_cgroup(name)
            parent = path.rpartition("/")[0]
            if "/" in path and parent not in declared:
                self.problem(("cgroups", name), f"parent cgroup {parent!r} must be declared "
                             "before its child (cgroups are created in order)")
            declared.add(path)
        self.cgroups = declared
        for name, entry in cgroups.items():
            if not isinstance(entry, dict):
                continue
            for key, value in entry.items():
                p: Path_ = ("cgroups", str(name), key)
                if key == "when":
                    self._when(p, value)
                elif key in HIERARCHIES:
                    if isinstance(value, dict):
                        for file, raw in value.items():
                            self._placeholders((*p, file), raw)
                elif key not in KNOBS:
                    self.problem(p, f"unknown knob {key!r}{_knob_hint(key)}")
                else:
                    self._knob_value(p, key, value)
        return declared

    def _knob_value(self, path: Path_, knob: str, value: Any) -> None:
        kind = KNOBS[knob].value
        if isinstance(value, (str, int, float)) and not kind.check(value):
            self.problem(path, f"{knob}: {value!r} is not {kind.text}")
        self._placeholders(path, value)

    def _steps(self, steps: list[Any]) -> dict[str, tuple[int, dict[str, Any]]]:
        named: dict[str, tuple[int, dict[str, Any]]] = {}
        self.all_step_names = {s["name"] for s in steps
                               if isinstance(s, dict) and isinstance(s.get("name"), str)}
        for i, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            p: Path_ = ("steps", i)
            name = step.get("name")
            if isinstance(name, str):
                if name in named:
                    self.problem((*p, "name"), f"duplicate step name {name!r} (also "
                                 f"steps[{named[name][0]}])")
                else:
                    named[name] = (i, step)
            if "when" in step:
                self._when((*p, "when"), step["when"])
            if "cgroup" in step:
                self._cgroup_ref((*p, "cgroup"), step["cgroup"])
            kinds = [k for k in ("run", "write", "write_file", "sleep", "wait", "kill")
                     if k in step]
            if len(kinds) != 1:
                continue
            kind = kinds[0]
            if kind == "run" and isinstance(step["run"], str):
                self._run_command((*p, "run"), step["run"])
            elif kind == "write" and isinstance(step["write"], str):
                knob = step["write"]
                if knob not in KNOBS:
                    self.problem((*p, "write"), f"unknown knob {knob!r}{_knob_hint(knob)}")
                elif "expect_error" not in step:
                    self._knob_value((*p, "value"), knob, step.get("value"))
                else:
                    self._placeholders((*p, "value"), step.get("value"))
            elif kind == "write_file":
                self._placeholders((*p, "value"), step.get("value"))
                files = step["write_file"]
                if isinstance(files, dict) and files and all(v is None for v in files.values()):
                    self.problem((*p, "write_file"), "names no file on any hierarchy")
            elif kind in ("wait", "kill") and isinstance(step[kind], str):
                self._background_ref((*p, kind), kind, step[kind], named, i)
            err = step.get("expect_error")
            if (isinstance(err, str) and re.fullmatch(r"E[A-Z0-9]+", err)
                    and err not in errno.errorcode.values()):
                self.problem((*p, "expect_error"), f"unknown errno {err!r}"
                             f"{did_you_mean(err, errno.errorcode.values())}")
        return named

    def _background_ref(self, path: Path_, kind: str, target: str,
                        named: dict[str, tuple[int, dict[str, Any]]], index: int) -> None:
        if target not in named:
            if target in self.all_step_names:
                self.problem(path, f"step {target!r} comes after this one; {kind} needs an "
                             "earlier background run step")
            else:
                self.problem(path, f"no step is named {target!r}"
                             f"{did_you_mean(target, named)}")
            return
        step = named[target][1]
        if "run" not in step or step.get("background") is not True:
            self.problem(path, f"step {target!r} is not a background run step "
                         "(give it `background: true`)")

    def _run_command(self, path: Path_, command: str) -> None:
        self._placeholders(path, command)
        try:
            program = command_program(command)
        except ValueError as exc:
            self.problem(path, f"cannot parse the command: {exc}")
            return
        if program is None or program in guest_programs():
            return
        self.problem(path, f"missing workload {program!r}"
                     f"{did_you_mean(program, guest_programs(), cutoff=0.8)}: not a program of "
                     "the guest image (it has the workloads of images/workloads/, busybox "
                     "applets, rdma, ibv_devices, ibv_devinfo, dropbear)")

    def _expectation(self, p: Path_, exp: dict[str, Any]) -> None:
        if "when" in exp:
            self._when((*p, "when"), exp["when"])
        kinds = [k for k in ("step", "metric", "file") if k in exp]
        kind = kinds[0] if len(kinds) == 1 else None
        if kind in ("metric", "file") and "cgroup" in exp:
            self._cgroup_ref((*p, "cgroup"), exp["cgroup"])
        metric = None
        if kind == "step" and isinstance(exp["step"], str):
            target = exp["step"]
            if target not in self.step_kinds:
                self.problem((*p, "step"), f"no step is named {target!r}"
                             f"{did_you_mean(target, self.step_kinds)}")
            elif "run" not in self.step_kinds[target][1]:
                self.problem((*p, "step"), f"step {target!r} is not a run step; only run steps "
                             "have an outcome (a write checks itself with expect_error)")
        elif kind == "metric" and isinstance(exp["metric"], str):
            metric = exp["metric"]
            known = [*METRICS, *SAMPLED_METRICS]
            if metric not in known:
                self.problem((*p, "metric"), f"unknown metric {metric!r}"
                             f"{did_you_mean(metric, known)}; known: {', '.join(known)}")
                metric = None
            elif metric in SAMPLED_METRICS:
                cgroup = exp.get("cgroup", ROOT)
                if (isinstance(cgroup, str)
                        and normalize_cgroup(cgroup) not in self.sampled_cgroups):
                    self.problem((*p, "metric"), f"{metric} needs a run step with `sample: "
                                 f"true` in cgroup {cgroup or '.'!r}")
        op = exp.get("op")
        if op not in OPERATORS or "value" not in exp:
            return
        value, tol = exp["value"], exp.get("tolerance")
        vp: Path_ = (*p, "value")
        if isinstance(value, str):
            self._placeholders(vp, value)
        if "tolerance" in exp and op != "approx":
            self.problem((*p, "tolerance"), f"tolerance only goes with op approx (this is {op})")
        if op == "range":
            if not isinstance(value, list) or len(value) != 2:
                self.problem(vp, f"range needs value: [low, high], got {describe(value)}")
                return
            low, high = (_numeric(x) for x in value)
            if low is None or high is None:
                bad = value[0] if low is None else value[1]
                self.problem(vp, f"range bounds are numbers or sizes; {bad!r} is neither")
            elif low > high:
                self.problem(vp, f"range [{value[0]}, {value[1]}]: low is above high")
            return
        if isinstance(value, list):
            self.problem(vp, f"a list value only goes with op range (this is {op})")
            return
        numeric = _numeric(value)
        if op == "approx":
            if numeric is None:
                self.problem(vp, f"approx compares numbers; {value!r} is not a number or a size")
            if tol is None:
                self.problem(p, "approx needs a tolerance: 10% or an amount such as 4M")
            elif not _tolerance_ok(tol):
                self.problem((*p, "tolerance"), f"{tol!r} is not a tolerance: give a "
                             "percentage (10%) or an amount (4M, 100)")
        elif op in ORDERING_OPERATORS and numeric is None and value != "max":
            self.problem(vp, f"{op} compares numbers; {value!r} is not a number, a size or max")
        if metric is not None and numeric is None:
            self.problem(vp, f"metric {metric} is a number; {value!r} is not a number or size")
        elif (metric is not None and metric not in BYTE_METRICS and isinstance(value, str)
              and _size(value) is not None and not _INT.match(value.strip())):
            self.problem(vp, f"metric {metric} is not counted in bytes; give a plain number, "
                         f"not the size {value!r}")
        if kind == "step":
            fld = exp.get("field", "exit_status")
            if fld == "exit_status" and op != "approx" and _int_value(value) is None:
                self.problem(vp, f"exit_status is a whole number; got {value!r}")
            elif fld == "signal" and not _is_signal(value):
                self.problem(vp, f"{value!r} is not a signal (SIGKILL, SIGTERM, 9, none)")


def _tolerance_ok(tol: Any) -> bool:
    try:
        parse_tolerance(tol)
    except (ValueError, TypeError):
        return False
    return True


# v1 file names people write as knobs, and the knob that covers them (docs/scenarios.md).
_V1_FILES = {
    "memory.limit_in_bytes": "memory.max",
    "memory.memsw.limit_in_bytes": "memory.swap.max",
    "cpu.cfs_quota_us": "cpu.max",
    "cpu.cfs_period_us": "cpu.max",
    "cpu.shares": "cpu.weight",
    "freezer.state": "cgroup.freeze",
    "blkio.throttle.read_bps_device": "io.max",
    "blkio.throttle.write_bps_device": "io.max",
    "blkio.throttle.read_iops_device": "io.max",
    "blkio.throttle.write_iops_device": "io.max",
}


def _knob_hint(knob: str) -> str:
    if _V1_FILES.get(knob) in KNOBS:
        return (f" (it is the v1 file of knob {_V1_FILES[knob]}: use that knob, or write the "
                "file raw under v1:)")
    hint = did_you_mean(knob, KNOBS)
    return hint or (" (not in the knob table of docs/scenarios.md; a raw file goes under "
                    "v1: or v2:)")

