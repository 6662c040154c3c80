"""Scenarios: load YAML files (docs/scenarios.md), validate them, and freeze them into dataclasses.

Validation is two passes over the same document, and both always run so that a file's problems
are all listed at once, each with its file and key path (`steps[2].write`):
- the JSON Schema (`harness/schema/scenario.schema.json`): structure, types, allowed keys;
- the rules the schema cannot say: knob, metric and feature names (from `harness.cgroups.knobs`),
  sizes and numbers, operators and their values, programs the guest image has, references
  between steps, cgroups and expectations, `when` blocks and kernel constraints.

Nothing here boots anything; `validate_command` is `kharness validate`.
"""

from __future__ import annotations

import difflib
import errno
import functools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml

from .cgroups.knobs import (
    BYTE_METRICS,
    CONTROLLERS,
    FEATURES,
    KNOBS,
    METRICS,
    SAMPLED_METRICS,
    VERSIONS,
)
from .units import format_size, parse_size, parse_tolerance, parse_value
from .workloads import WORKLOADS_DIR

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "scenario.schema.json"

HIERARCHIES = VERSIONS
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "approx", "range")
ORDERING_OPERATORS = ("<", "<=", ">", ">=")
STEP_FIELDS = ("exit_status", "signal")  # besides keys of the step's `key=value` stdout
DEFAULT_TIMEOUT = 60.0
ROOT = ""  # the scenario's own cgroup; "." in a file means the same

# Programs of the guest image besides the workloads and busybox's applets (images.py).
GUEST_BINARIES = ("rdma", "ibv_devices", "ibv_devinfo", "dropbear", "dropbearkey")
# Used only when the host has no /bin/busybox to ask for its applets.
FALLBACK_APPLETS = (
    "[", "[[", "ash", "awk", "base64", "basename", "cat", "chmod", "chown", "cmp", "cp",
    "cut", "date", "dd", "df", "diff", "dirname", "dmesg", "du", "echo", "env", "expr",
    "false", "fallocate", "find", "free", "grep", "head", "hexdump", "id", "ionice", "ip",
    "kill", "killall", "ln", "ls", "mkdir", "mkfifo", "mknod", "mktemp", "mount", "mv",
    "nproc", "od", "pidof", "printf", "ps", "pwd", "readlink", "realpath", "rm", "rmdir",
    "sed", "seq", "setsid", "sh", "sha256sum", "sleep", "sort", "stat", "swapoff", "swapon",
    "sync", "sysctl", "tail", "tar", "taskset", "tee", "test", "time", "timeout", "top",
    "touch", "tr", "true", "truncate", "umount", "uname", "uniq", "unshare", "usleep", "wc",
    "xargs", "yes"
)
# Shell words that are not programs: builtins are fine as they are; after `exec`/`command` the
# next word is the program; a compound command (if, for, { ...) is not looked into.
_SHELL_BUILTINS = frozenset((
    ".", ":", "alias", "break", "cd", "continue", "eval", "exit", "export", "getopts",
    "hash", "local", "read", "readonly", "return", "set", "shift", "trap", "type", "ulimit",
    "umask", "unalias", "unset", "wait"
))
_SHELL_COMPOUND = frozenset((
    "if", "for", "while", "until", "case", "{", "(", "!", "[[", "function", "select"
))
_SHELL_PREFIX = frozenset({"exec", "command"})
_BIN_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/")

Path_ = tuple[str | int, ...]  # a key path as parts: ("steps", 2, "write")

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PLACEHOLDER = re.compile(r"\{(disk|rdma|cgroup:[^{}]*)\}")
_CONSTRAINT = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(\d+(?:\.\d+){0,2})\s*$")
_RELEASE = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")
_INT = re.compile(r"^[+-]?\d+$")


# --- dataclasses ------------------------------------------------------------------------------

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


class ScenarioError(Exception):
    """Scenarios that failed validation; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class When:
    """Where a step, a cgroup entry or an expectation applies; None = everywhere."""

    hierarchies: tuple[str, ...] | None = None  # ("v2",)
    kernel: str | None = None  # ">=6.1,<6.13"


@dataclass(frozen=True)
class Requires:
    controllers: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    kernel: str | None = None


@dataclass(frozen=True)
class MachineSpec:
    """The machine a scenario runs on. Hashable: scenarios with equal specs share one boot,
    except those with `fresh_boot`, which get a machine of their own. Sizes are normalized
    strings for MachineConfig (`"512M"`, swap/disk None when absent)."""

    memory: str = "512M"
    cpus: int = 2
    swap: str | None = None
    disk: str | None = None
    rdma: bool = False
    fresh_boot: bool = False
    gdb: bool = False  # QEMU's gdbstub and nokaslr: set when the scenario has a gdb section


@dataclass(frozen=True)
class GdbBreakpoint:
    """A breakpoint captured while the steps run, with what its backtraces must show."""

    index: int
    location: str  # a function, or file:line
    comm: str | None = None  # only hits in a task of this name
    cgroup: str | None = None  # only hits charging this cgroup's memcg (best effort)
    count: int = 1  # hits to capture
    capture: tuple[str, ...] = ()  # expressions printed at each hit
    # gdb commands run at each hit, their output kept (lx-dmesg, lx-ps: the kernel's gdb
    # scripts, loaded for kernels built with kconfig/debug.config)
    commands: tuple[str, ...] = ()
    frames: tuple[str, ...] = ()  # must appear in every captured trace, in this order
    not_frames: tuple[str, ...] = ()  # must appear in none
    # a filter, not an expectation: stop only when these are on the call chain (memhog's first
    # charges are exec's page tables; ("__mem_cgroup_charge", "do_anonymous_page") is the
    # anonymous folio's charge from a page fault)
    callers: tuple[str, ...] = ()
    # the run step at whose start the breakpoints are set (default: before the first step). A
    # hot function (memcg_check_events runs on every charge) stops the guest on every call,
    # ~6 ms each, whatever the filters: set it only where the path of interest begins.
    from_step: str | None = None
    hits: tuple[int, int] | None = None  # range of captured hits (default: at least one)
    when: When | None = None

    @property
    def is_function(self) -> bool:
        return ":" not in self.location


@dataclass(frozen=True)
class CgroupSpec:
    """One entry of `cgroups`: knob values as written (the knob table converts them), raw files
    per hierarchy (`raw["v1"]["memory.move_charge_at_immigrate"]`)."""

    path: str  # relative to the scenario's cgroup, "parent/child"; ROOT ("") for itself
    knobs: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # "v1"/"v2" -> files
    when: When | None = None


@dataclass(frozen=True)
class RunStep:
    index: int
    name: str | None
    run: str  # the shell command line
    cgroup: str = ROOT
    timeout: float = DEFAULT_TIMEOUT
    background: bool = False
    sample: bool = True  # sampled when the scenario requires memory
    when: When | None = None


@dataclass(frozen=True)
class WriteStep:
    index: int
    name: str | None
    write: str  # the knob
    value: Any
    cgroup: str = ROOT
    expect_error: str | None = None  # errno name: the write must fail with it
    when: When | None = None


@dataclass(frozen=True)
class WriteFileStep:
    index: int
    name: str | None
    write_file: Mapping[str, str | None]  # "v1"/"v2" -> raw file; None: nothing to write there
    value: Any
    cgroup: str = ROOT
    expect_error: str | None = None
    when: When | None = None

    def file_for(self, hierarchy: str) -> str | None:
        return self.write_file.get(hierarchy)


@dataclass(frozen=True)
class SleepStep:
    index: int
    name: str | None
    sleep: float  # seconds
    when: When | None = None


@dataclass(frozen=True)
class WaitStep:
    index: int
    name: str | None
    wait: str  # name of a background run step
    timeout: float | None = None  # None: the target's own timeout
    when: When | None = None


@dataclass(frozen=True)
class KillStep:
    index: int
    name: str | None
    kill: str  # name of a background run step, SIGKILLed
    when: When | None = None


Step = RunStep | WriteStep | WriteFileStep | SleepStep | WaitStep | KillStep


@dataclass(frozen=True)
class Expectation:
    """One entry of `expect`. `target` is the step name, the metric or the raw file name.

    `value` and `tolerance` are kept as written (`"32M"`, `10`, `"SIGKILL"`, `[1, 3]`, `"10%"`);
    harness/checks.py interprets them."""

    index: int
    kind: Literal["step", "metric", "file"]
    target: str
    op: str
    value: Any
    field: str | None = None  # kind step: exit_status, signal or a stdout key
    key: str | None = None  # kind file: the "key value" line to pick; None: the whole file
    cgroup: str | None = None  # kind metric/file: ROOT by default; kind step: None
    tolerance: Any = None
    when: When | None = None


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str  # "memory/oom-kill": relative to the directory it was found in, no suffix
    description: str
    hierarchies: tuple[str, ...] = HIERARCHIES
    requires: Requires = Requires()
    machine: MachineSpec = MachineSpec()
    cgroups: tuple[CgroupSpec, ...] = ()
    steps: tuple[Step, ...] = ()
    expect: tuple[Expectation, ...] = ()
    gdb: tuple[GdbBreakpoint, ...] = ()

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


# --- kernel constraints and `when` -------------------------------------------------------------

def parse_kernel_constraint(constraint: str) -> list[tuple[str, tuple[int, ...]]]:
    """`">=6.1,<6.13"` -> [(">=", (6, 1)), ("<", (6, 13))]; ValueError when malformed."""
    parts = []
    for part in str(constraint).split(","):
        m = _CONSTRAINT.match(part)
        if not m:
            raise ValueError(
                f"malformed kernel constraint {constraint!r}: give comparisons separated by "
                'commas, such as ">=6.1,<6.13" (operators >=, <=, >, <, ==, !=)')
        parts.append((m.group(1) or "==", tuple(int(x) for x in m.group(2).split("."))))
    return parts


def release_version(release: str) -> tuple[int, int, int]:
    """`"6.12.117+deb12-amd64"` -> (6, 12, 117); `"6.1.0-56-amd64"` -> (6, 1, 0)."""
    m = _RELEASE.match(release)
    if not m:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def kernel_matches(constraint: str, release: str) -> bool:
    """Whether kernel `release` satisfies every comparison of `constraint`.

    `<`, `<=`, `>`, `>=` compare versions with missing parts as 0 (6.1.112 > 6.1);
    `==` and `!=` compare only the parts given (`==6.1` is the whole 6.1 series).
    Debian's 6.1 releases are named 6.1.0-N: their third number is the ABI's 0, not the
    upstream stable version."""
    have = release_version(release)
    for op, want in parse_kernel_constraint(constraint):
        if op in ("==", "!="):
            equal = have[:len(want)] == want
            ok = equal if op == "==" else not equal
        else:
            padded = want + (0,) * (3 - len(want))
            ok = {"<": have < padded, "<=": have <= padded,
                  ">": have > padded, ">=": have >= padded}[op]
        if not ok:
            return False
    return True


def when_matches(when: When | None, hierarchy: str, release: str) -> bool:
    if when is None:
        return True
    if when.hierarchies is not None and hierarchy not in when.hierarchies:
        return False
    return when.kernel is None or kernel_matches(when.kernel, release)


# --- the guest's programs ------------------------------------------------------------------------

@functools.cache
def busybox_applets() -> frozenset[str]:
    """The applets of the host's busybox, which is the guest's; a fallback list without one."""
    if os.path.exists("/bin/busybox"):
        try:
            out = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                                 timeout=10, check=True, stdin=subprocess.DEVNULL).stdout
            applets = frozenset(out.split())
            if applets:
                return applets
        except (OSError, subprocess.SubprocessError):
            pass
    return frozenset(FALLBACK_APPLETS)


@functools.cache
def guest_programs() -> frozenset[str]:
    """What a `run` step may start: the workloads, busybox applets, the image's binaries."""
    workload_names = {p.stem for p in WORKLOADS_DIR.glob("*.c")}
    return frozenset({*workload_names, *busybox_applets(), *GUEST_BINARIES, "busybox"})


def command_program(command: str) -> str | None:
    """The program a shell command line starts, or None when it cannot be told statically
    (a compound command, a variable, a path outside the bin directories). ValueError when the
    line does not parse (unbalanced quotes)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        i += 1
    while i < len(words) and words[i] in _SHELL_PREFIX:
        i += 1
    if i >= len(words):
        return None
    word = words[i]
    if (word in _SHELL_BUILTINS or word in _SHELL_COMPOUND or "$" in word or "`" in word
            or not word or word[0] in "(){};&|<>"):
        return None
    if "/" in word:
        if not word.startswith(_BIN_DIRS):
            return None  # e.g. a script an earlier step wrote to /tmp
        word = word.rsplit("/", 1)[1]
    return word


# --- loading ---------------------------------------------------------------------------------

# The schema's enums that are generated when it is loaded, from the lists they must equal: the
# file holds no copy of them, so the two cannot disagree.
_GENERATED_ENUMS: dict[str, tuple[str, ...]] = {
    "hierarchy": VERSIONS,
    "controller": CONTROLLERS,
    "operator": OPERATORS,
}


@functools.cache
def schema() -> dict[str, Any]:
    """The scenario schema: the file with its enums filled in (see _GENERATED_ENUMS)."""
    doc = json.loads(SCHEMA_PATH.read_text())
    for name, values in _GENERATED_ENUMS.items():
        definition = doc["$defs"][name]
        if "enum" in definition:
            raise ValueError(f"{SCHEMA_PATH}: $defs.{name} has an enum of its own; it is "
                             "generated when the schema is loaded (remove it from the file)")
        definition["enum"] = list(values)
    return doc


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema())


def load(paths: Sequence[Path | str]) -> tuple[list[Scenario], list[Problem]]:
    """Load every scenario under `paths` (files, or directories walked for *.yaml / *.yml).

    Returns the valid scenarios and every problem of the others; a scenario with any problem
    is not returned. A scenario's name is its path relative to the directory given, without
    the suffix ("memory/oom-kill"); for a file given directly, relative to the nearest enclosing
    directory named `scenarios`, else its stem."""
    scenarios: list[Scenario] = []
    problems: list[Problem] = []
    seen: dict[Path, str] = {}
    names: dict[str, Path] = {}
    for arg in paths:
        for file, name, display, problem in _expand(Path(arg)):
            if problem is not None:
                problems.append(problem)
                continue
            real = file.resolve()
            if real in seen:
                continue
            seen[real] = name
            scenario, found = _load_file(file, name, display)
            problems.extend(found)
            if scenario is None:
                continue
            if name in names:
                problems.append(Problem(display, "", f"scenario name {name!r} is also the name "
                                        f"of {names[name]}; rename one of them"))
                continue
            names[name] = file
            scenarios.append(scenario)
    return scenarios, problems


def load_or_raise(paths: Sequence[Path | str]) -> list[Scenario]:
    """`load`, raising ScenarioError when any file has a problem."""
    scenarios, problems = load(paths)
    if problems:
        raise ScenarioError(problems)
    return scenarios


def validate_command(paths: list[str]) -> int:
    """`kharness validate PATH...`: every problem on stderr, one a line; exit status 2 if any."""
    scenarios, problems = load([Path(p) for p in paths])
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found",
              file=sys.stderr)
        return 2
    print(f"{len(scenarios)} scenario{'s' if len(scenarios) != 1 else ''} OK")
    return 0


def _expand(arg: Path) -> Iterator[tuple[Path, str, str, Problem | None]]:
    """(file, scenario name, file as shown, problem) for one command-line path."""
    if arg.is_dir():
        files = sorted((p for p in arg.rglob("*") if p.suffix in (".yaml", ".yml")
                        and p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(arg).parts)),
                       key=lambda p: p.relative_to(arg).as_posix())
        if not files:
            yield arg, "", str(arg), Problem(str(arg), "", "no *.yaml or *.yml scenario files here")
        for f in files:
            # Named from the catalogue root whatever folder was given: `run scenarios/freezer`
            # and `run scenarios/` both call it freezer/freeze-thaw.
            base = next((d for d in f.resolve().parents if d.name == "scenarios"), None)
            name = (f.resolve().relative_to(base) if base else f.relative_to(arg))
            yield f, name.with_suffix("").as_posix(), str(f), None
    elif arg.is_file():
        if arg.suffix not in (".yaml", ".yml"):
            yield arg, "", str(arg), Problem(str(arg), "", "not a scenario file (*.yaml, *.yml)")
            return
        base = next((d for d in arg.resolve().parents if d.name == "scenarios"), None)
        name = (arg.resolve().relative_to(base).with_suffix("").as_posix() if base
                else arg.stem)
        yield arg, name, str(arg), None
    else:
        yield arg, "", str(arg), Problem(str(arg), "", "no such file or directory")


def _load_file(path: Path, name: str, display: str) -> tuple[Scenario | None, list[Problem]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(display, "", f"cannot read: {exc}")]
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
    checker.schema(doc)
    if isinstance(doc, dict):
        checker.rules(doc)
    problems = checker.sorted_problems()
    if problems:
        return None, problems
    return _build(path, name, doc), []


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


def key_path(path: Iterable[str | int]) -> str:
    """("steps", 2, "write") -> "steps[2].write"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _did_you_mean(word: Any, choices: Iterable[str], cutoff: float = 0.6) -> str:
    choices = list(choices)
    text = str(word)
    if text[::-1] in choices and len(text) > 1:  # "=>" for ">="
        return f" (did you mean {text[::-1]}?)"
    dotted = [c for c in choices if c.endswith("." + text)]  # "swap" for "memory.swap"
    if len(dotted) == 1:
        return f" (did you mean {dotted[0]}?)"
    close = difflib.get_close_matches(text, choices, n=1, cutoff=cutoff)
    return f" (did you mean {close[0]}?)" if close else ""


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_TYPE_WORDS = {"string": "a string", "number": "a number", "integer": "a whole number",
               "object": "a mapping", "array": "a list", "boolean": "true or false",
               "null": "nothing"}


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


# --- validation ------------------------------------------------------------------------------

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

    # The JSON Schema, its messages reworded for people.

    def schema(self, doc: Any) -> None:
        errors = list(_validator().iter_errors(doc))
        # A step/expectation without exactly one kind key gets that one problem only: the
        # per-kind errors under it would only repeat it.
        ambiguous = [tuple(e.absolute_path) for e in errors
                     if e.validator == "oneOf" and "x-exactly-one" in e.schema]
        for e in errors:
            path = tuple(e.absolute_path)
            is_kind_error = e.validator == "oneOf" and "x-exactly-one" in e.schema
            if not is_kind_error and any(path[:len(a)] == a for a in ambiguous):
                continue
            for p, message in self._schema_messages(e, path):
                self.problem(p, message)

    def _schema_messages(self, e: jsonschema.ValidationError,
                         path: Path_) -> Iterator[tuple[Path_, str]]:
        v, sch, inst = e.validator, e.schema, e.instance
        if "propertyNames" in e.relative_schema_path:
            msg = sch.get("x-pattern-message") if isinstance(sch, dict) else None
            yield (*path, str(inst)), f"bad name {inst!r}: {msg or e.message}"
        elif v == "additionalProperties" and isinstance(inst, dict):
            allowed = list(sch.get("properties", {}))
            for k in inst:
                if k not in allowed:
                    yield (*path, k), (f"unknown key {k!r}{_did_you_mean(k, allowed)}; allowed "
                                       f"here: {', '.join(allowed)}")
        elif v == "required" and isinstance(inst, dict):
            for k in e.validator_value:
                if k not in inst:
                    yield path, f"missing key {k!r}"
        elif v == "type":
            types = e.validator_value if isinstance(e.validator_value, list) else [
                e.validator_value]
            want = " or ".join(_TYPE_WORDS.get(t, t) for t in types if t != "null")
            yield path, f"expected {want}, got {_describe(inst)}"
        elif v == "enum":
            what = sch.get("x-what", "value")
            choices = [str(c) for c in e.validator_value]
            yield path, (f"unknown {what} {inst!r}{_did_you_mean(inst, choices)}; allowed: "
                         f"{', '.join(choices)}")
        elif v == "pattern":
            yield path, f"{inst!r}: {sch.get('x-pattern-message') or e.message}"
        elif v == "oneOf" and "x-exactly-one" in sch:
            kinds = sch["x-exactly-one"]
            what = {"expect": "an expectation", "gdb": "a breakpoint"}.get(
                str(path[0]) if path else "", "a step")
            present = [k for k in kinds if isinstance(inst, dict) and k in inst]
            if present:
                yield path, (f"{' and '.join(present)} in one entry: {what} has exactly one of "
                             f"{', '.join(kinds)}")
            else:
                yield path, f"{what} needs one of {', '.join(kinds)}"
        elif v in ("minimum", "exclusiveMinimum", "maximum"):
            bound = {"minimum": "at least", "exclusiveMinimum": "more than",
                     "maximum": "at most"}[v]
            yield path, f"{inst!r}: must be {bound} {e.validator_value}"
        elif v == "uniqueItems":
            yield path, "has the same entry twice"
        elif v in ("minItems", "minProperties", "minLength"):
            yield path, "must not be empty"
        else:
            yield path, e.message

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
        steps = doc.get("steps") if isinstance(doc.get("steps"), list) else []
        self.step_kinds = self._steps(steps)
        self.sampled_cgroups = {_normalize_cgroup(s.get("cgroup", ROOT)) for s in steps
                                if isinstance(s, dict) and "run" in s and s.get("sample", True) is True
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
                                 f"unknown feature {f!r}{_did_you_mean(f, FEATURES)}; known: "
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
                             f"{_did_you_mean(v, HIERARCHIES)}; allowed: v1, v2")
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
        if not isinstance(ref, str) or _normalize_cgroup(ref) in self.cgroups:
            return
        declared = sorted(c for c in self.cgroups if c)
        hint = _did_you_mean(ref, declared) or (
            f" (declared: {', '.join(declared)})" if declared else " (no cgroups are declared)")
        self.problem(path, f"{what} cgroup {ref!r}, which `cgroups` does not declare{hint}")

    def _cgroups(self, cgroups: Any) -> set[str]:
        declared = {ROOT}
        if not isinstance(cgroups, dict):
            return declared
        for name, entry in cgroups.items():
            if not isinstance(name, str):
                continue
            path = _normalize_cgroup(name)
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
                             f"{_did_you_mean(err, errno.errorcode.values())}")
        return named

    def _background_ref(self, path: Path_, kind: str, target: str,
                        named: dict[str, tuple[int, dict[str, Any]]], index: int) -> None:
        if target not in named:
            if target in self.all_step_names:
                self.problem(path, f"step {target!r} comes after this one; {kind} needs an "
                             "earlier background run step")
            else:
                self.problem(path, f"no step is named {target!r}"
                             f"{_did_you_mean(target, named)}")
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
                     f"{_did_you_mean(program, guest_programs(), cutoff=0.8)}: not a program of the guest "
                     "image (it has the workloads of images/workloads/, busybox applets, rdma, "
                     "ibv_devices, ibv_devinfo, dropbear)")

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
                             f"{_did_you_mean(target, self.step_kinds)}")
            elif "run" not in self.step_kinds[target][1]:
                self.problem((*p, "step"), f"step {target!r} is not a run step; only run steps "
                             "have an outcome (a write checks itself with expect_error)")
        elif kind == "metric" and isinstance(exp["metric"], str):
            metric = exp["metric"]
            known = [*METRICS, *SAMPLED_METRICS]
            if metric not in known:
                self.problem((*p, "metric"), f"unknown metric {metric!r}"
                             f"{_did_you_mean(metric, known)}; known: {', '.join(known)}")
                metric = None
            elif metric in SAMPLED_METRICS:
                cgroup = exp.get("cgroup", ROOT)
                if (isinstance(cgroup, str)
                        and _normalize_cgroup(cgroup) not in self.sampled_cgroups):
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
                self.problem(vp, f"range needs value: [low, high], got {_describe(value)}")
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
    hint = _did_you_mean(knob, KNOBS)
    return hint or (" (not in the knob table of docs/scenarios.md; a raw file goes under "
                    "v1: or v2:)")


def _normalize_cgroup(path: str) -> str:
    path = path.strip()
    return ROOT if path in ("", ".") else path


# --- building the dataclasses (from a document without problems) -------------------------------

def _when_of(raw: Any) -> When | None:
    if not isinstance(raw, dict):
        return None
    hier = raw.get("hierarchy")
    hierarchies = (tuple(hier) if isinstance(hier, list) else (hier,) if hier else None)
    return When(hierarchies=hierarchies, kernel=raw.get("kernel"))


def _size_text(v: Any) -> str | None:
    """A machine size as MachineConfig takes it, normalized so that equal sizes compare
    equal (`1024M` and `1G` share a boot); None for none."""
    if v in (None, "none", 0):
        return None
    return format_size(parse_size(str(v).strip()))


def _build(path: Path, name: str, doc: dict[str, Any]) -> Scenario:
    req = doc.get("requires") or {}
    mach = doc.get("machine") or {}
    cgroups = []
    for cg_path, entry in (doc.get("cgroups") or {}).items():
        entry = entry or {}
        cgroups.append(CgroupSpec(
            path=_normalize_cgroup(cg_path),
            knobs={k: v for k, v in entry.items() if k not in (*HIERARCHIES, "when")},
            raw={h: dict(entry[h] or {}) for h in HIERARCHIES if h in entry},
            when=_when_of(entry.get("when")),
        ))
    steps: list[Step] = []
    for i, s in enumerate(doc.get("steps") or []):
        common: dict[str, Any] = {"index": i, "name": s.get("name"),
                                  "when": _when_of(s.get("when"))}
        cgroup = _normalize_cgroup(s.get("cgroup", ROOT))
        if "run" in s:
            steps.append(RunStep(run=s["run"], cgroup=cgroup,
                                 timeout=float(s.get("timeout", DEFAULT_TIMEOUT)),
                                 background=s.get("background", False),
                                 sample=s.get("sample", True), **common))
        elif "write" in s:
            steps.append(WriteStep(write=s["write"], value=s["value"], cgroup=cgroup,
                                   expect_error=s.get("expect_error"), **common))
        elif "write_file" in s:
            files = s["write_file"]
            per = ({h: files for h in HIERARCHIES} if isinstance(files, str)
                   else {h: files.get(h) for h in HIERARCHIES})
            steps.append(WriteFileStep(write_file=per, value=s["value"], cgroup=cgroup,
                                       expect_error=s.get("expect_error"), **common))
        elif "sleep" in s:
            steps.append(SleepStep(sleep=float(s["sleep"]), **common))
        elif "wait" in s:
            timeout = s.get("timeout")
            steps.append(WaitStep(wait=s["wait"], **common,
                                  timeout=float(timeout) if timeout is not None else None))
        else:
            steps.append(KillStep(kill=s["kill"], **common))
    expectations = []
    for i, e in enumerate(doc.get("expect") or []):
        kind = next(k for k in ("step", "metric", "file") if k in e)
        expectations.append(Expectation(
            index=i, kind=kind, target=e[kind], op=e["op"], value=e["value"],
            field=e.get("field", "exit_status") if kind == "step" else None,
            key=e.get("key") if kind == "file" else None,
            cgroup=_normalize_cgroup(e.get("cgroup", ROOT)) if kind != "step" else None,
            tolerance=e.get("tolerance"), when=_when_of(e.get("when")),
        ))
    return Scenario(
        path=path,
        name=name,
        description=doc["description"],
        hierarchies=tuple(doc.get("hierarchies") or HIERARCHIES),
        requires=Requires(controllers=tuple(req.get("controllers") or ()),
                          features=tuple(req.get("features") or ()),
                          kernel=req.get("kernel")),
        machine=MachineSpec(
            memory=_size_text(mach.get("memory")) or "512M",
            cpus=mach.get("cpus", 2),
            swap=_size_text(mach.get("swap")),
            disk=_size_text(mach.get("disk")),
            rdma=mach.get("rdma", False),
            fresh_boot=mach.get("fresh_boot", False),
            gdb=bool(doc.get("gdb")),
        ),
        cgroups=tuple(cgroups),
        steps=tuple(steps),
        expect=tuple(expectations),
        gdb=tuple(_gdb_breakpoint(i, b) for i, b in enumerate(doc.get("gdb") or [])),
    )


def _gdb_breakpoint(index: int, b: dict[str, Any]) -> GdbBreakpoint:
    hits = b.get("hits")
    if isinstance(hits, int):
        hits = (hits, hits)
    return GdbBreakpoint(
        index=index, location=b.get("function") or b["location"], comm=b.get("comm"),
        cgroup=_normalize_cgroup(b["cgroup"]) if "cgroup" in b else None,
        count=int(b.get("count", 1)), capture=tuple(b.get("capture") or ()),
        commands=tuple(b.get("commands") or ()),
        frames=tuple(b.get("frames") or ()), not_frames=tuple(b.get("not_frames") or ()),
        callers=tuple(b.get("callers") or ()), from_step=b.get("from_step"),
        hits=tuple(hits) if hits is not None else None, when=_when_of(b.get("when")),
    )
