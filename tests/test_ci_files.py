"""The CI definitions in ci/: they parse, and every kharness command they run is one the README
documents and the command line accepts, options included."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import UsageError, build_parser

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "ci"
GITHUB = CI / "github" / "kharness.yml"
GITLAB = CI / "gitlab-ci.yml"
REGRESSION = CI / "regression.sh"
DEFINITIONS = [GITHUB, GITLAB, REGRESSION]

# `./kh run`, `kharness merge`, and regression.sh's `"$kh" compare`
SUBCOMMAND = re.compile(r"""(?:\./kh|\bkharness|"\$kh")[ \t]+([a-z][a-z-]*)""")


def _subcommands(text: str) -> set[str]:
    return set(SUBCOMMAND.findall(text))


def _cli_subcommands() -> set[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(action.choices)


def _commands() -> list[tuple[Path, str]]:
    """(file, command line) of every kharness command the CI definitions run."""
    lines: list[tuple[Path, str]] = []
    github = yaml.safe_load(GITHUB.read_text())
    for job in github["jobs"].values():
        for step in job["steps"]:
            lines += [(GITHUB, x) for x in step.get("run", "").splitlines()]
    gitlab = yaml.safe_load(GITLAB.read_text())
    for job in gitlab.values():
        if isinstance(job, dict):
            lines += [(GITLAB, x) for x in job.get("script", [])]
    lines += [(REGRESSION, x) for x in REGRESSION.read_text().splitlines()
              if x.strip().startswith('"$kh"')]
    out = []
    for path, line in lines:
        m = re.search(r"""(?:\./kh|"\$kh")\s.*""", line)
        if m:
            # the command alone: what follows `||`, `&&`, a pipe or a redirection is not it
            out.append((path, re.split(r"\s(?:\|\||&&|\||>>?)\s", m.group(0))[0]))
    return out


def _argv(command: str) -> list[str]:
    """The command's arguments after `./kh`, with CI expressions standing for values."""
    command = re.sub(r"\$\{\{[^}]*\}\}", "debian:6.1", command)  # GitHub's ${{ matrix.kernel }}
    # an array that may expand to nothing (regression.sh's KHARNESS_RUN_OPTS)
    return [w for w in shlex.split(command)[1:] if w != "${opts[@]}"]


def test_the_yaml_files_parse_with_a_matrix_over_kernels_and_shards_and_a_merge():
    github = yaml.safe_load(GITHUB.read_text())
    matrix = github["jobs"]["run"]["strategy"]["matrix"]
    assert matrix["kernel"] == ["debian:6.1", "debian:6.12"]
    assert matrix["shard"] == ["1/2", "2/2"]
    assert github["jobs"]["merge"]["needs"] == "run"
    gitlab = yaml.safe_load(GITLAB.read_text())
    (entry,) = gitlab["kharness-run"]["parallel"]["matrix"]
    assert entry == {"KERNEL": ["debian:6.1", "debian:6.12"], "SHARD": ["1/2", "2/2"]}
    assert gitlab["kharness-merge"]["needs"] == [{"job": "kharness-run", "artifacts": True}]
    assert gitlab["kharness-merge"]["artifacts"]["reports"]["junit"] == \
        "results/merged/junit.xml"


def test_every_shard_count_in_a_matrix_is_the_same():
    github = yaml.safe_load(GITHUB.read_text())["jobs"]["run"]["strategy"]["matrix"]["shard"]
    gitlab = yaml.safe_load(GITLAB.read_text())["kharness-run"]["parallel"]["matrix"][0]["SHARD"]
    for shards in (github, gitlab):
        assert sorted(shards) == [f"{i}/{len(shards)}" for i in range(1, len(shards) + 1)]


def test_the_ci_files_use_only_subcommands_the_readme_documents_and_the_cli_has():
    documented = _subcommands((ROOT / "README.md").read_text())
    cli = _cli_subcommands()
    used: set[str] = set()
    for path in DEFINITIONS:
        found = _subcommands(path.read_text())
        assert found, f"{path}: no kharness command found"
        for sub in found:
            assert sub in documented, f"{path}: `./kh {sub}` is not in README.md"
            assert sub in cli, f"{path}: `./kh {sub}` is not a kharness subcommand"
        used |= found
    assert {"setup", "run", "merge", "compare"} <= used


@pytest.mark.parametrize("path,command", _commands(), ids=lambda x: getattr(x, "name", x))
def test_every_command_parses(path, command):
    try:
        args = build_parser().parse_args(_argv(command))
    except UsageError as exc:
        pytest.fail(f"{path}: {command}: {exc}")
    if args.cmd == "run" and getattr(args, "shard", None):
        assert "--results" in command  # each shard into a directory of its own


def test_the_commands_run_are_the_expected_ones():
    commands = [" ".join(_argv(c)[:1]) for _, c in _commands()]
    assert commands.count("run") == 3  # a shard job in each file, regression.sh's run()
    assert commands.count("merge") == 2 and commands.count("compare") == 1
    assert commands.count("report") == 1  # GitHub's job summary


def test_regression_sh_is_valid_bash_and_says_its_usage():
    syntax = subprocess.run(["bash", "-n", str(REGRESSION)], capture_output=True, text=True,
                            check=False)
    assert syntax.returncode == 0, syntax.stderr
    proc = subprocess.run(["bash", str(REGRESSION), "debian:6.1"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "BASELINE_SPEC CANDIDATE_SPEC" in proc.stderr


def test_regression_sh_exits_with_compare_status(tmp_path):
    """regression.sh against a fake `kh` that writes canned runs: compare's verdict decides."""
    fake = tmp_path / "kh"
    fake.write_text(f"""#!/usr/bin/env bash
# a stand-in for ./kh: `run` writes a one-result run, the rest is the real kharness
if [ "$1" = run ]; then
    out=$(printf '%s\\n' "$@" | sed -n '/^--results$/{{n;p}}')
    kernel=$(printf '%s\\n' "$@" | sed -n '/^--kernel$/{{n;p}}')
    [ "$kernel" = broken ] && exit 2  # as for a bad spec: nothing recorded
    status=pass; [ "$kernel" = bad ] && status=fail
    mkdir -p "$out"
    echo '{{"scenario": "pids/max-fork", "kernel": "'"$kernel"'", "kernel_spec": "'"$kernel"'", "hierarchy": "v2", "status": "'$status'"}}' > "$out/results.jsonl"
    [ $status = pass ]; exit $?
fi
exec {shlex.quote(sys.executable)} -m harness.cli "$@"
""")
    fake.chmod(0o755)

    def regression(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "KH": str(fake), "RESULTS": str(tmp_path / args[1])}
        return subprocess.run(["bash", str(REGRESSION), *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, stdin=subprocess.DEVNULL, check=False)

    good = regression("good", "alsogood")
    assert good.returncode == 0, good.stderr
    assert "matched by (scenario, hierarchy)" in good.stdout
    bad = regression("good", "bad")
    assert bad.returncode == 1, bad.stderr
    assert "pids/max-fork [good -> bad v2]: pass -> fail" in bad.stdout
    assert (tmp_path / "bad" / "compare.json").exists()
    none = regression("good", "broken")
    assert none.returncode == 2 and "recorded no results" in none.stderr
