"""Loading and checking scenarios (harness/scenario.py, harness/scenario_check.py,
harness/scenario_schema.py, harness/guest_programs.py) against the fixtures in tests/scenarios/.

Every file in tests/scenarios/invalid/ states the problems it must produce in its header, one
`# problem: KEY_PATH: MESSAGE-START` line each (`-` for the file as a whole): the test checks
that exactly those are reported, so each file is the test of one rule.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest

from harness import guest_programs, scenario, scenario_check, scenario_schema
from harness.cli import main
from harness.guest_programs import command_program
from harness.scenario import (
    CgroupSpec,
    Expectation,
    KillStep,
    MachineSpec,
    Problem,
    Requires,
    RunStep,
    Scenario,
    ScenarioError,
    SleepStep,
    WaitStep,
    When,
    WriteFileStep,
    WriteStep,
    kernel_matches,
    load,
    load_or_raise,
    when_matches,
)

HERE = Path(__file__).resolve().parent
VALID = HERE / "scenarios" / "valid"
INVALID = HERE / "scenarios" / "invalid"
REPO = HERE.parent


def _load_one(path: Path) -> Scenario:
    scenarios, problems = load([path])
    assert problems == []
    assert len(scenarios) == 1
    return scenarios[0]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- valid scenarios ---------------------------------------------------------------------------

def test_valid_directory_loads_every_file_sorted_with_relative_names() -> None:
    scenarios, problems = load([VALID])
    assert problems == []
    # named from the nearest folder called "scenarios", whichever folder was given
    assert [s.name for s in scenarios] == ["valid/gdb/charge-path", "valid/io/throttle",
                                           "valid/memory/oom-kill", "valid/minimal"]
    assert [s.name for s in load([VALID / "memory"])[0]] == ["valid/memory/oom-kill"]


def test_oom_kill_scenario_loads_into_the_dataclasses() -> None:
    s = _load_one(VALID / "memory" / "oom-kill.yaml")
    assert s.path == VALID / "memory" / "oom-kill.yaml"
    assert s.name == "valid/memory/oom-kill"  # a file given directly: relative to "scenarios/"
    assert s.description.startswith("memory.max 32M and a 64 MiB anonymous hog without swap:")
    assert s.hierarchies == ("v1", "v2")
    assert s.requires == Requires(controllers=("memory",), features=(), kernel=">=6.1")
    assert s.machine == MachineSpec(memory="512M", cpus=2, swap=None, disk=None, rdma=False,
                                    fresh_boot=False)
    assert s.cgroups == (CgroupSpec(
        path="hog",
        knobs={"memory.max": "32M", "memory.swap.max": 0},
        raw={"v1": {"memory.move_charge_at_immigrate": 1}, "v2": {"memory.oom.group": 1}},
        when=None),)
    assert list(s.cgroups[0].knobs) == ["memory.max", "memory.swap.max"]  # order kept
    assert s.steps == (
        RunStep(index=0, name="hog", run="memhog 64", cgroup="hog", timeout=60.0,
                background=False, sample=True),
        WriteStep(index=1, name=None, write="memory.oom.group", value=2, cgroup="hog",
                  expect_error="EINVAL"),
        WriteFileStep(index=2, name=None, write_file={"v1": "memory.swappiness", "v2": None},
                      value=201, cgroup="hog", expect_error="EINVAL"),
        RunStep(index=3, name="sleeper", run="sleep 30", background=True),
        SleepStep(index=4, name=None, sleep=0.5),
        WaitStep(index=5, name=None, wait="sleeper", timeout=5.0),
        KillStep(index=6, name=None, kill="sleeper"),
    )
    assert s.steps[2].file_for("v1") == "memory.swappiness"
    assert s.steps[2].file_for("v2") is None
    assert s.step("sleeper") is s.steps[3]
    assert s.expect == (
        Expectation(index=0, kind="step", target="hog", field="signal", op="==",
                    value="SIGKILL"),
        Expectation(index=1, kind="metric", target="oom_kill", cgroup="hog", op=">=", value=1),
        Expectation(index=2, kind="metric", target="peak", cgroup="hog", op="approx",
                    value="32M", tolerance="10%"),
        Expectation(index=3, kind="file", target="memory.events", key="oom_group_kill",
                    cgroup="hog", op="==", value=1,
                    when=When(hierarchies=("v2",), kernel=">=6.1")),
    )


def test_defaults_root_cgroup_and_machine_normalization() -> None:
    minimal = _load_one(VALID / "minimal.yaml")
    assert minimal.hierarchies == ("v1", "v2")
    assert minimal.requires == Requires()
    assert minimal.machine == MachineSpec()
    assert minimal.cgroups == ()
    assert minimal.steps == (RunStep(index=0, name=None, run="true", cgroup=""),)
    assert minimal.expect == ()

    io = _load_one(VALID / "io" / "throttle.yml")
    assert io.hierarchies == ("v2",)
    assert io.machine == MachineSpec(memory="1G", cpus=1, swap="128M", disk="64M",
                                     fresh_boot=True)
    assert [c.path for c in io.cgroups] == ["", "reader", "reader/inner"]  # "." is the root
    assert io.cgroups[2].when == When(hierarchies=None, kernel=">=6.1")
    assert io.steps[3] == WriteFileStep(index=3, name=None,
                                        write_file={"v1": "io.weight", "v2": "io.weight"},
                                        value="default 100", cgroup="reader")
    assert io.steps[4].when == When(hierarchies=("v2",))
    read_status, read_bytes = io.expect[:2]
    assert read_status.field == "exit_status" and read_status.cgroup is None
    assert read_bytes.field == "bytes" and read_bytes.value == ["4M", "4M"]
    assert io.expect[3].cgroup == ""
    assert io.expect[5].cgroup == "" and io.expect[5].key is None


def test_empty_entries_are_allowed(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty-parts.yaml",
                  "description: x\ncgroups:\n  a:\n  a/b: {v1:, when: {hierarchy: v1}}\n"
                  "steps:\nexpect:\n")
    s = _load_one(path)
    assert s.cgroups == (CgroupSpec(path="a"),
                         CgroupSpec(path="a/b", raw={"v1": {}}, when=When(hierarchies=("v1",))))
    assert s.steps == () and s.expect == ()


def test_machine_specs_are_hashable_and_equal_sizes_share_a_boot(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.yaml", "description: a\nmachine: {memory: 1024M, swap: 131072K}\n")
    b = _write(tmp_path, "b.yaml", "description: b\nmachine: {memory: 1G, swap: 128M}\n")
    c = _write(tmp_path, "c.yaml", "description: c\nmachine: {memory: 1G, swap: 128M, "
               "disk: none, rdma: false}\n")
    scenarios, problems = load([a, b, c])
    assert problems == []
    groups: dict[MachineSpec, list[str]] = {}
    for s in scenarios:
        groups.setdefault(s.machine, []).append(s.name)
    assert groups == {MachineSpec(memory="1G", swap="128M"): ["a", "b", "c"]}


# --- the acceptance test: three problems at once ----------------------------------------------

def test_unknown_knob_bad_operator_and_missing_workload_are_all_listed() -> None:
    path = INVALID / "three-problems.yaml"
    scenarios, problems = load([path])
    assert scenarios == []
    f = str(path)
    assert [str(p) for p in problems] == [
        f"{f}: cgroups.hog.memory.maxx: unknown knob 'memory.maxx' (did you mean memory.max?)",
        (f"{f}: steps[0].run: missing workload 'memhogg' (did you mean memhog?): not a program "
         "of the guest image (it has the workloads of images/workloads/, busybox applets, rdma, "
         "ibv_devices, ibv_devinfo, dropbear)"),
        (f"{f}: expect[0].op: unknown operator '=>' (did you mean >=?); allowed: ==, !=, <, <=, "
         ">, >=, approx, range"),
    ]
    lines = path.read_text().splitlines()
    for problem, needle in zip(problems, ("memory.maxx:", "run: memhogg", "op: \"=>\""),
                               strict=True):
        assert problem.file == f
        assert needle in lines[problem.line - 1]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yaml",
                  "description: x\nsteps:\n  - run: memhog 1\n   cgroup: [a\n")
    scenarios, problems = load([path])
    assert scenarios == []
    assert len(problems) == 1
    p = problems[0]
    assert p.key_path == "line 4" and p.line == 4
    assert str(p).startswith(f"{path}: line 4: YAML syntax error: ")


@pytest.mark.parametrize(("text", "line", "found"), [
    # a flow sequence left open on line 3: PyYAML notices on line 4
    ("description: x\nsteps:\n  - run: [memhog, 64\n  - sleep: 1\n", 3,
     "expected ',' or ']', but got ':' at line 4"),
    # a quote never closed on line 1: noticed at the end of the file
    ('description: "abc\nsteps:\n  - run: x\n', 1, "found unexpected end of stream at line 4"),
])
def test_yaml_syntax_error_points_where_the_broken_construct_starts(
        tmp_path: Path, text: str, line: int, found: str) -> None:
    (p,) = load([_write(tmp_path, "broken.yaml", text)])[1]
    assert p.line == line and p.key_path == f"line {line}"
    assert "that starts here" in p.message and found in p.message, p.message


# --- every rule: the invalid fixtures ---------------------------------------------------------

def _expected_problems(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"# problem: (.*?): (.*)$", line)
        if m:
            out.append(("" if m.group(1) == "-" else m.group(1), m.group(2)))
    return out


INVALID_FILES = sorted(INVALID.glob("*.yaml"))


def test_every_invalid_fixture_states_its_problems() -> None:
    assert len(INVALID_FILES) >= 18
    for path in INVALID_FILES:
        assert _expected_problems(path), f"{path.name} has no '# problem:' header"


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_fixture_reports_exactly_its_problems(path: Path) -> None:
    scenarios, problems = load([path])
    assert scenarios == []
    expected = _expected_problems(path)
    got = [(p.key_path, p.message) for p in problems]
    unmatched = list(got)
    for key, start in expected:
        match = next((g for g in unmatched if g[0] == key and g[1].startswith(start)), None)
        assert match is not None, f"no problem {key}: {start}...\ngot:\n" + "\n".join(
            f"{k}: {m}" for k, m in got)
        unmatched.remove(match)
    assert unmatched == [], f"unexpected problems: {unmatched}"
    assert all(p.file == str(path) and p.line for p in problems)


def test_problems_of_one_file_come_in_document_order() -> None:
    _, problems = load([INVALID / "bad-values.yaml"])
    lines = [p.line for p in problems]
    assert lines == sorted(lines)


def test_a_directory_reports_every_file_and_returns_only_valid_ones(tmp_path: Path) -> None:
    _write(tmp_path, "good.yaml", "description: fine\n")
    _write(tmp_path, "sub/bad.yml", "description: bad\nsteps:\n  - run: nosuchprog\n")
    _write(tmp_path, "notes.txt", "not a scenario")
    _write(tmp_path, ".hidden/ci.yaml", "on: push\n")  # hidden directories are not walked
    scenarios, problems = load([tmp_path])
    assert [s.name for s in scenarios] == ["good"]
    assert [(Path(p.file).name, p.key_path) for p in problems] == [("bad.yml", "steps[0].run")]


# --- loading paths -----------------------------------------------------------------------------

def test_missing_path_empty_directory_and_non_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    txt = _write(tmp_path, "x.txt", "description: x\n")
    _, problems = load([tmp_path / "nope", tmp_path / "empty", txt])
    assert [p.message for p in problems] == [
        "no such file or directory",
        "no *.yaml or *.yml scenario files here",
        "not a scenario file (*.yaml, *.yml)",
    ]
    assert str(problems[0]) == f"{tmp_path / 'nope'}: no such file or directory"


def test_a_file_given_twice_loads_once_and_equal_names_clash(tmp_path: Path) -> None:
    one = _write(tmp_path, "one/memory/x.yaml", "description: x\n")
    _write(tmp_path, "two/memory/x.yaml", "description: x again\n")
    scenarios, problems = load([tmp_path / "one", one])
    assert [s.name for s in scenarios] == ["memory/x"]
    assert problems == []
    scenarios, problems = load([tmp_path / "one", tmp_path / "two"])
    assert [s.name for s in scenarios] == ["memory/x"]
    assert len(problems) == 1 and "scenario name 'memory/x' is also the name of" in str(
        problems[0])


def test_name_of_a_file_given_directly(tmp_path: Path) -> None:
    loose = _write(tmp_path, "loose.yaml", "description: x\n")
    nested = _write(tmp_path, "scenarios/cpu/weight.yaml", "description: x\n")
    assert _load_one(loose).name == "loose"
    assert _load_one(nested).name == "cpu/weight"


def test_load_or_raise_carries_every_problem() -> None:
    with pytest.raises(ScenarioError) as info:
        load_or_raise([INVALID / "three-problems.yaml"])
    assert len(info.value.problems) == 3
    assert str(info.value).count("\n") == 2
    assert load_or_raise([VALID / "minimal.yaml"])[0].name == "valid/minimal"


def test_problem_str() -> None:
    assert str(Problem("a.yaml", "steps[2].write", "bad")) == "a.yaml: steps[2].write: bad"
    assert str(Problem("a.yaml", "", "empty file")) == "a.yaml: empty file"


def test_key_path() -> None:
    assert scenario_check.key_path(()) == ""
    assert scenario_check.key_path(("steps", 2, "write")) == "steps[2].write"
    assert scenario_check.key_path(("cgroups", "a/b", "memory.max")) == "cgroups.a/b.memory.max"


# --- kharness validate (harness/cli.py prints what load returns) -------------------------------

def test_validate_command_lists_problems_on_stderr_and_exits_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(INVALID / "three-problems.yaml"), str(VALID)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 4
    assert lines[0].endswith("cgroups.hog.memory.maxx: unknown knob 'memory.maxx' "
                             "(did you mean memory.max?)")
    assert lines[-1] == "3 problems found"


def test_validate_command_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(VALID)]) == 0
    out, err = capsys.readouterr()
    assert out == "4 scenarios OK\n" and err == ""
    assert main(["validate", str(VALID / "minimal.yaml")]) == 0
    assert capsys.readouterr().out == "1 scenario OK\n"


def test_validate_command_one_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{tmp_path / 'nope.yaml'}: no such file or directory\n1 problem found\n"


def test_lower_modules_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    load([INVALID / "three-problems.yaml", VALID])
    assert capsys.readouterr() == ("", "")


def test_the_repository_scenarios_validate() -> None:
    files = [p for p in (REPO / "scenarios").rglob("*") if p.suffix in (".yaml", ".yml")]
    if not files:
        pytest.skip("no scenarios in scenarios/ yet")
    _, problems = load([REPO / "scenarios"])
    assert [str(p) for p in problems] == []


# --- kernel constraints and when ---------------------------------------------------------------

@pytest.mark.parametrize(("constraint", "release", "expected"), [
    (">=6.1", "6.1.0-56-amd64", True),
    (">=6.1", "6.12.117+deb12-amd64", True),
    (">=6.1,<6.13", "6.12.117+deb12-amd64", True),
    (">=6.1,<6.12", "6.12.117+deb12-amd64", False),
    ("<6.12", "6.1.0-56-amd64", True),
    (">6.1", "6.1.0-56-amd64", False),  # 6.1.0 is not above 6.1
    (">6.1", "6.1.112", True),
    ("<=6.12", "6.12.0", True),
    ("<=6.12", "6.12.1", False),
    ("==6.1", "6.1.0-56-amd64", True),  # == compares the parts given: the 6.1 series
    ("6.12", "6.12.117+deb12-amd64", True),
    ("!=6.12", "6.12.117+deb12-amd64", False),
    ("!=6.12", "6.1.0-56-amd64", True),
    ("==6.12.117", "6.12.117+deb12-amd64", True),
    (" >= 6.1 , < 7 ", "6.19.2", True),
    (">=6", "5.15.0", False),
    (">=6.1.0-53", "6.1.0-53-amd64", True),  # Debian's ABI number, when named, is a fourth
    (">=6.1.0-53", "6.1.0-50-amd64", False),
    (">=6.1.0-53", "6.1.0-57-rt-amd64", True),
    ("<6.1.0-53", "6.1.0-9-amd64", True),
    (">=6.1.0-53", "6.12.118+deb12-amd64", True),
    ("==6.1.0-53", "6.1.0-53-cloud-amd64", True),
    ("==6.1.0-53", "6.1.0-54-amd64", False),
])
def test_kernel_matches(constraint: str, release: str, expected: bool) -> None:
    assert kernel_matches(constraint, release) is expected


@pytest.mark.parametrize("constraint", ["", ">=", "6.1+", ">=6.1;<6.13", "~=6.1", ">=6.1.2.3",
                                        ">= six", ">=6.1,"])
def test_malformed_kernel_constraints(constraint: str) -> None:
    with pytest.raises(ValueError, match="malformed kernel constraint"):
        scenario_check.parse_kernel_constraint(constraint)


def test_when_matches() -> None:
    rel = "6.12.117+deb12-amd64"
    assert when_matches(None, "v1", rel)
    assert when_matches(When(hierarchies=("v2",)), "v2", rel)
    assert not when_matches(When(hierarchies=("v2",)), "v1", rel)
    assert when_matches(When(hierarchies=("v1", "v2")), "v1", rel)
    assert when_matches(When(kernel=">=6.12"), "v1", rel)
    assert not when_matches(When(kernel="<6.12"), "v1", rel)
    assert not when_matches(When(hierarchies=("v2",), kernel=">=6.12"), "v1", rel)


# --- the guest's programs ----------------------------------------------------------------------

@pytest.mark.parametrize(("command", "program"), [
    ("memhog 64", "memhog"),
    ("  memhog -s 8 64", "memhog"),
    ("VAR=x OTHER='a b' cpuhog 5", "cpuhog"),
    ("exec forker 10", "forker"),
    ("sh -c 'memhog 64 && nosuch'", "sh"),  # a shell's script is not looked into
    ("memhog 64; echo done", "memhog"),
    ("memhog&&echo", "memhog"),
    ("/bin/memhog 64", "memhog"),
    ("/usr/bin/rdma link", "rdma"),
    ("/tmp/script.sh", None),
    ("./script.sh", None),
    ("$PROG 64", None),
    ("for i in 1 2; do memhog 1; done", None),
    ("{ memhog 1; }", None),
    ("(memhog 1)", None),
    ("cd /tmp && memhog 1", None),
    ("VAR=x", None),
])
def test_command_program(command: str, program: str | None) -> None:
    assert command_program(command) == program


def test_command_program_unbalanced_quotes() -> None:
    with pytest.raises(ValueError):
        command_program("sh -c 'echo")


def test_guest_programs_has_workloads_applets_and_image_binaries() -> None:
    programs = guest_programs.guest_programs()
    stems = {p.stem for p in (REPO / "images" / "workloads").glob("*.c")}
    assert stems and stems <= programs
    assert {"memhog", "cpuhog", "forker", "rdma_open"} <= programs
    assert {"sh", "cat", "sleep", "rdma", "ibv_devices", "ibv_devinfo", "dropbear"} <= programs
    assert "python3" not in programs and "stress-ng" not in programs


def test_busybox_applets_fallback_without_busybox(monkeypatch: pytest.MonkeyPatch) -> None:
    real_exists = guest_programs.os.path.exists
    monkeypatch.setattr(guest_programs.os.path, "exists",
                        lambda p: False if p == "/bin/busybox" else real_exists(p))
    applets = guest_programs.busybox_applets.__wrapped__()
    assert applets == frozenset(guest_programs.FALLBACK_APPLETS)
    assert {"sh", "cat", "echo", "sleep", "dd", "kill"} <= applets


# --- the schema --------------------------------------------------------------------------------

def test_schema_is_valid_draft_2020_12_and_packaged() -> None:
    schema = scenario_schema.schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "schema/*.json" in pyproject["tool"]["setuptools"]["package-data"]["harness"]
    assert any(d.startswith("jsonschema") for d in pyproject["project"]["dependencies"])


def test_schema_enums_are_generated_from_the_tables() -> None:
    from harness.cgroups import knobs

    defs = scenario_schema.schema()["$defs"]
    assert tuple(defs["operator"]["enum"]) == scenario_schema.OPERATORS
    assert tuple(defs["controller"]["enum"]) == knobs.CONTROLLERS
    assert tuple(defs["hierarchy"]["enum"]) == knobs.VERSIONS == scenario.HIERARCHIES
    # the file holds no copy that could disagree
    raw = json.loads(scenario_schema.SCHEMA_PATH.read_text())["$defs"]
    assert not {"enum"} & {*raw["operator"], *raw["controller"], *raw["hierarchy"]}


def test_a_schema_file_with_its_own_copy_of_a_generated_enum_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(scenario_schema.SCHEMA_PATH.read_text())
    doc["$defs"]["controller"]["enum"] = ["memory"]
    path = tmp_path / "scenario.schema.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(scenario_schema, "SCHEMA_PATH", path)
    with pytest.raises(ValueError, match=r"\$defs.controller has an enum of its own"):
        scenario_schema.schema.__wrapped__()


def test_names_come_from_the_knob_table() -> None:
    from harness.cgroups import knobs

    assert scenario_check.KNOBS is knobs.KNOBS
    assert scenario_check.METRICS is knobs.METRICS
    assert scenario_check.FEATURES is knobs.FEATURES
    assert scenario_check.SAMPLED_METRICS is knobs.SAMPLED_METRICS
    assert scenario_check.BYTE_METRICS is knobs.BYTE_METRICS
    assert not set(knobs.SAMPLED_METRICS) & set(knobs.METRICS)


def test_numa_nodes_must_divide_the_cpus(tmp_path: Path) -> None:
    base = ("description: numa\nsteps:\n  - run: \"true\"\nmachine:\n  cpus: {cpus}\n"
            "  numa: {numa}\n")
    ok = _load_one(_write(tmp_path, "ok.yaml", base.format(cpus=2, numa=2)))
    assert ok.machine.numa == 2
    _, problems = load([_write(tmp_path, "bad.yaml", base.format(cpus=3, numa=2))])
    assert [p.key_path for p in problems] == ["machine.numa"]
    assert "multiple of 2" in problems[0].message
