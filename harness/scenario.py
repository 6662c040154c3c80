"""Scenarios: load YAML files (docs/scenarios.md), check them, and freeze them into dataclasses.

The check, with every problem of a file at once, is harness/scenario_check.py's; this module
walks the paths given, names the scenarios, and builds the frozen dataclasses the runner and
the checks use from the documents without problems. It also says where a `when` block or a
kernel constraint applies. Nothing here boots anything or prints: `kharness validate`
(harness/cli.py) prints the problems `load` returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .scenario_check import (
    HIERARCHIES,
    ROOT,
    Problem,
    check,
    normalize_cgroup,
    parse_kernel_constraint,
)
from .selftest.cases import parse_case
from .units import format_size, parse_size

STEP_FIELDS = ("exit_status", "signal")  # besides keys of the step's `key=value` stdout
DEFAULT_TIMEOUT = 60.0
# result names kharness gives its own cells: the selftests' and the referee's judgements
RESERVED_PREFIXES = ("selftest/", "referee/")
_RELEASE = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+)(?:-(\d+)(?=-|$))?)?")


# --- dataclasses ------------------------------------------------------------------------------

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
    numa: int = 1  # NUMA nodes: CPUs and memory split evenly between them
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
class SelftestRef:
    """A kernel selftest that tests the scenario's behaviour (`refs:`): its verdict referees
    the scenario's on each kernel (harness/referee.py)."""

    binary: str  # test_memcontrol
    subtest: str  # test_memcg_min
    # The kernels on which the scenario pins the behaviour this selftest calls broken (it
    # expects the kernel's defect there): the scenario's pass then goes with the selftest's
    # not ok. None: everywhere the two verdicts should be the same.
    fails_on: str | None = None
    why: str = ""

    @property
    def case(self) -> str:
        return f"{self.binary}:{self.subtest}"

    def expects_ok(self, release: str) -> bool:
        """Whether a passing scenario says this selftest passes on kernel `release`."""
        return self.fails_on is None or not kernel_matches(self.fails_on, release)


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
    refs: tuple[SelftestRef, ...] = ()

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


# --- kernel constraints and `when` -------------------------------------------------------------

def release_version(release: str) -> tuple[int, int, int]:
    """`"6.12.117+deb12-amd64"` -> (6, 12, 117); `"6.1.0-56-amd64"` -> (6, 1, 0)."""
    m = _RELEASE.match(release)
    if not m:
        raise ValueError(f"not a kernel release: {release!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def release_series(release: str) -> str:
    """`"6.12.117+deb12-amd64"` -> `"6.12"`; what is not a release comes back as it is."""
    try:
        major, minor, _ = release_version(release)
    except ValueError:
        return release
    return f"{major}.{minor}"


def release_numbers(release: str) -> tuple[int, int, int, int]:
    """The version with Debian's ABI number as a fourth: `"6.1.0-57-amd64"` -> (6, 1, 0, 57),
    `"6.12.117+deb12-amd64"` -> (6, 12, 117, 0), `"6.1.0-57-rt-amd64"` -> (6, 1, 0, 57)."""
    m = _RELEASE.match(release)
    if not m:
        raise ValueError(f"not a kernel release: {release!r}")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), int(m.group(4) or 0))


def kernel_matches(constraint: str, release: str) -> bool:
    """Whether kernel `release` satisfies every comparison of `constraint`.

    `<`, `<=`, `>`, `>=` compare versions with missing parts as 0 (6.1.112 > 6.1);
    `==` and `!=` compare only the parts given (`==6.1` is the whole 6.1 series).
    Debian's 6.1 releases are named 6.1.0-N: their third number is the ABI's 0, not the
    upstream stable version. A constraint that names the ABI (`>=6.1.0-53`, what a bisection
    over Debian's 6.1 releases tells apart) compares it as a fourth number."""
    numbers = release_numbers(release)
    for op, want in parse_kernel_constraint(constraint):
        have = numbers if len(want) == 4 else numbers[:3]  # the ABI only when it is named
        if op in ("==", "!="):
            equal = have[:len(want)] == want
            ok = equal if op == "==" else not equal
        else:
            padded = want + (0,) * (len(have) - len(want))
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


# --- loading ---------------------------------------------------------------------------------

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
            if name.startswith(RESERVED_PREFIXES):
                problems.append(Problem(display, "", f"scenario name {name!r} starts with "
                                        f"{name.split('/')[0]}/, which kharness's own results "
                                        "use (selftest/, referee/); rename its directory"))
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
    doc, problems = check(display, text)
    if problems or not isinstance(doc, dict):
        return None, problems
    return _build(path, name, doc), []


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
            path=normalize_cgroup(cg_path),
            knobs={k: v for k, v in entry.items() if k not in (*HIERARCHIES, "when")},
            raw={h: dict(entry[h] or {}) for h in HIERARCHIES if h in entry},
            when=_when_of(entry.get("when")),
        ))
    steps: list[Step] = []
    for i, s in enumerate(doc.get("steps") or []):
        common: dict[str, Any] = {"index": i, "name": s.get("name"),
                                  "when": _when_of(s.get("when"))}
        cgroup = normalize_cgroup(s.get("cgroup", ROOT))
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
            cgroup=normalize_cgroup(e.get("cgroup", ROOT)) if kind != "step" else None,
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
            numa=mach.get("numa", 1),
            fresh_boot=mach.get("fresh_boot", False),
            gdb=bool(doc.get("gdb")),
        ),
        cgroups=tuple(cgroups),
        steps=tuple(steps),
        expect=tuple(expectations),
        gdb=tuple(_gdb_breakpoint(i, b) for i, b in enumerate(doc.get("gdb") or [])),
        refs=tuple(_selftest_ref(r) for r in doc.get("refs") or []),
    )


def _selftest_ref(raw: str | dict[str, Any]) -> SelftestRef:
    entry = {"case": raw} if isinstance(raw, str) else raw
    binary, subtest = parse_case(entry["case"])
    return SelftestRef(binary, subtest, (entry.get("fails_on") or {}).get("kernel"),
                       entry.get("why", ""))


def _gdb_breakpoint(index: int, b: dict[str, Any]) -> GdbBreakpoint:
    hits = b.get("hits")
    if isinstance(hits, int):
        hits = (hits, hits)
    return GdbBreakpoint(
        index=index, location=b.get("function") or b["location"], comm=b.get("comm"),
        cgroup=normalize_cgroup(b["cgroup"]) if "cgroup" in b else None,
        count=int(b.get("count", 1)), capture=tuple(b.get("capture") or ()),
        commands=tuple(b.get("commands") or ()),
        frames=tuple(b.get("frames") or ()), not_frames=tuple(b.get("not_frames") or ()),
        callers=tuple(b.get("callers") or ()), from_step=b.get("from_step"),
        hits=tuple(hits) if hits is not None else None, when=_when_of(b.get("when")),
    )
