"""The guest-shell protocol (harness/cgroups/guest.py): status lines, errno names, samples, and
the generated scripts run by the host's busybox (the same busybox-static the guest runs), with
cgroup paths whose names have a space or a quote: every path sent is quoted.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.cgroups import guest
from harness.cgroups.guest import (
    CgroupError,
    Sample,
    errno_from_message,
    parse_samples,
    parse_status,
)
from harness.channels import CommandResult

M = 1024 * 1024

# --- status lines, errno names, samples --------------------------------------------------------

@pytest.mark.parametrize(("message", "name"), [
    ("sh: write error: Invalid argument", "EINVAL"),
    ("sh: write error: Device or resource busy", "EBUSY"),
    ("sh: write error: No such device", "ENODEV"),
    ("sh: write error: No space left on device", "ENOSPC"),
    ("sh: write error: Resource temporarily unavailable", "EAGAIN"),
    ("sh: write error: Operation not supported", "EOPNOTSUPP"),
    ("sh: write error: Numerical result out of range", "ERANGE"),
    ("sh: write error: Operation not permitted", "EPERM"),
    ("sh: can't create /sys/fs/cgroup/memory.max: Permission denied", "EACCES"),
    ("sh: can't create /sys/fs/cgroup/x/memory.max: nonexistent directory", "ENOENT"),
    ("sh: write error: No such process", "ESRCH"),
    ("something else entirely", None),
])
def test_errno_from_message(message, name):
    assert errno_from_message(message) == name


@pytest.mark.parametrize(("stdout", "expected"), [
    ("out\n\nKH-STATUS=9 Command terminated by signal 9\n", ("out\n", 137, "SIGKILL")),
    ("\nKH-STATUS=0 \n", ("", 0, None)),
    ("done mib=64\n\nKH-STATUS=0 \n", ("done mib=64\n", 0, None)),
    ("x\n\nKH-STATUS=3 Command exited with non-zero status 3\n", ("x\n", 3, None)),
    # a shell that reports its child's death as exit 137 exited; it was not killed
    ("\nKH-STATUS=137 Command exited with non-zero status 137\n", ("", 137, None)),
    ("no newline\nKH-STATUS=15 Command terminated by signal 15\n", ("no newline", 143, "SIGTERM")),
    ("KH-STATUS=x\n\nKH-STATUS=0 \n", ("KH-STATUS=x\n", 0, None)),
    # without `time`'s report: the shell's convention
    ("\nKH-STATUS=137 \n", ("", 137, "SIGKILL")),
])
def test_parse_status(stdout, expected):
    assert parse_status(stdout) == expected


def test_parse_status_errors():
    with pytest.raises(CgroupError, match="could not join its cgroup"):
        parse_status("\nKH-JOIN-FAILED\n\nKH-STATUS=125 Command exited with non-zero status 125\n")
    with pytest.raises(CgroupError, match="no KH-STATUS= line"):
        parse_status("reached_mib=1\n")


def test_parse_samples():
    text = "2.22 0 0\n2.33 13787136 -4096\n2.44 - -\ngarbage\n2.55 33554432 1048576\n"
    assert parse_samples(text) == [Sample(2.22, 0, 0), Sample(2.33, 13787136, 0),
                                   Sample(2.44, None, None), Sample(2.55, 32 * M, M)]


# --- the scripts in busybox sh -----------------------------------------------------------------

BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed on the host")


@pytest.fixture(scope="module")
def bb_path(tmp_path_factory) -> str:
    bindir = tmp_path_factory.mktemp("bb-bin")
    subprocess.run([BUSYBOX, "--install", "-s", str(bindir)], check=True)
    return str(bindir)


class BusyboxChannel:
    """Runs each script with the host's busybox sh and only busybox applets on PATH."""

    def __init__(self, path: str) -> None:
        self.env = {"PATH": path, "HOME": "/tmp"}
        self.commands: list[str] = []

    def run(self, cmd, timeout=60.0, stdin=None, check=False) -> CommandResult:
        self.commands.append(cmd)
        start = time.monotonic()
        p = subprocess.run([BUSYBOX, "sh", "-c", cmd], capture_output=True, text=True,
                           timeout=timeout, env=self.env, input=stdin or "", check=False)
        return CommandResult(cmd, p.returncode, p.stdout, p.stderr, time.monotonic() - start)


# Names no scenario can give (hierarchy.clean_path refuses them), so that what is sent is shown
# to be quoted whatever reaches it: a space, a quote, a `$(...)`.
ODD = ("it's a root", "a b", "c'd", "$(touch pwned)")


@pytest.fixture
def odd_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # where an unquoted $(touch pwned) would leave its file
    root = tmp_path / ODD[0]
    root.mkdir()
    return root


@pytest.fixture
def sh(bb_path):
    ch = BusyboxChannel(bb_path)

    def run(script: str, **kw) -> CommandResult:
        return ch.run(script, **kw)

    return run


def _nothing_ran(tmp_path: Path) -> None:
    assert not list(tmp_path.rglob("pwned")), "a name was expanded by the shell"


def test_paths_are_quoted_whole():
    d = "/sys/fs/cgroup/a b/c'd"
    q = shlex.quote
    assert f"echo 0 > {q(d + '/cgroup.freeze')}" not in guest.v2_thaw_kill_script(d)
    assert f"[ -e {q(d + '/cgroup.kill')} ] && echo 1 > {q(d + '/cgroup.kill')}" in \
        guest.v2_thaw_kill_script(d)
    assert f"read -r u < {q(d + '/memory.current')}" in guest.v2_sample_reads(d)
    assert f"cat {q(d + '/cgroup.procs')}" in guest.procs_script([d], recursive=False)
    script = guest.v2_create_script("/sys/fs/cgroup", ["a b"], ["memory"])
    assert script.splitlines()[0] == (
        "echo +memory > /sys/fs/cgroup/cgroup.subtree_control || "
        "{ echo 'kharness: cannot enable memory in /sys/fs/cgroup/cgroup.subtree_control' >&2; "
        "exit 1; }")
    assert "mkdir '/sys/fs/cgroup/a b' || exit 1" in script
    # the controller is quoted too (a name from the guest's cgroup.controllers)
    assert "echo '+x y' > " in guest.v2_create_script("/r", ["a"], ["x y"])


@needs_busybox
def test_v2_create_with_a_space_and_a_quote_for_real(odd_root, sh, tmp_path):
    res = sh(guest.v2_create_script(str(odd_root), list(ODD[1:]), ["memory", "pids"]))
    assert res.exit_status == 0, res.stderr
    leaf = odd_root.joinpath(*ODD[1:])
    assert leaf.is_dir()
    # each level's subtree_control got the writes (a plain file here: the last one stays)
    assert (odd_root / "cgroup.subtree_control").read_text() == "+pids\n"
    assert (odd_root / "a b" / "c'd" / "cgroup.subtree_control").read_text() == "+pids\n"
    assert not (leaf / "cgroup.subtree_control").exists()
    _nothing_ran(tmp_path)


@needs_busybox
def test_v1_create_copies_cpuset_with_odd_names_for_real(odd_root, sh, tmp_path):
    (odd_root / "cpuset.cpus").write_text("0-1\n")
    (odd_root / "cpuset.mems").write_text("0\n")
    res = sh(guest.v1_create_script([str(odd_root)], ["a b", "c'd"], str(odd_root)))
    assert res.exit_status == 0, res.stderr
    assert (odd_root / "a b" / "c'd" / "cpuset.cpus").read_text() == "0-1\n"
    assert (odd_root / "a b" / "c'd" / "cpuset.mems").read_text() == "0\n"
    _nothing_ran(tmp_path)


@needs_busybox
def test_writes_and_reads_with_odd_names_for_real(odd_root, sh, tmp_path):
    d = odd_root / "a b" / "c'd"
    d.mkdir(parents=True)
    other = odd_root / "$(touch pwned)"  # a second hierarchy the cgroup is not in
    script, targets = guest.write_script(
        [([f"{d}/pids.max"], "it's 5"), ([f"{d}/cgroup.procs", f"{other}/cgroup.procs"], "7")],
        "gone")
    results = guest.write_results(targets, sh(script))
    assert [r.ok for r in results] == [True, True, True]
    assert (d / "pids.max").read_text() == "it's 5\n"
    assert (d / "cgroup.procs").read_text() == "7\n" and not other.exists()
    script, targets = guest.write_script([([f"{other}/x"], "1")], "gone")
    (bad,) = guest.write_results(targets, sh(script))
    assert (bad.ok, bad.errno_name) == (False, "ENOENT")
    out = sh(guest.read_script([(str(d), "pids.max"), (str(d), "nope"), (str(other), "x")]))
    assert guest.parse_reads(out.stdout, 3) == [("ok", "it's 5\n"), ("absent", None),
                                                 ("nodir", None)]
    _nothing_ran(tmp_path)


@needs_busybox
def test_procs_and_kill_walk_a_tree_with_odd_names_for_real(odd_root, sh, tmp_path):
    top = odd_root / "a b"
    (top / "c'd").mkdir(parents=True)
    (top / "cgroup.procs").write_text("11\n")
    (top / "c'd" / "cgroup.procs").write_text("12\n13\n")
    assert guest.parse_pids(sh(guest.procs_script([str(top)], recursive=True)).stdout) == [
        11, 12, 13]
    assert guest.parse_pids(sh(guest.procs_script([str(top)], recursive=False)).stdout) == [11]
    # remove: every directory of the subtree found and removed bottom-up (empty ones here, as
    # a plain directory with files cannot go)
    gone = odd_root / "x y" / "it's" / "$(touch pwned)"
    gone.mkdir(parents=True)
    res = sh(guest.kill_script([str(odd_root / "x y")], guest.v1_thaw_script(None), True, 2))
    assert res.exit_status == 0, res.stdout + res.stderr
    assert not (odd_root / "x y").exists()
    _nothing_ran(tmp_path)


@needs_busybox
def test_thaw_reaches_every_cgroup_of_an_odd_tree_for_real(odd_root, sh, tmp_path):
    top = odd_root / "a b"
    (top / "c'd").mkdir(parents=True)
    (top / "cgroup.kill").write_text("")
    # no cgroup.procs files: nothing to kill or wait for once thawed
    res = sh(guest.kill_script([str(top)], guest.v2_thaw_kill_script(str(top)), False, 2))
    assert res.exit_status == 0, res.stderr
    assert (top / "cgroup.freeze").read_text() == "0\n"
    assert (top / "c'd" / "cgroup.freeze").read_text() == "0\n"
    assert (top / "cgroup.kill").read_text() == "1\n"
    res = sh(guest.kill_script([str(top)], guest.v1_thaw_script(str(top)), False, 2))
    assert res.exit_status == 0, res.stderr
    assert (top / "c'd" / "freezer.state").read_text() == "THAWED\n"
    _nothing_ran(tmp_path)


@needs_busybox
def test_run_in_and_sampler_with_odd_names_for_real(odd_root, sh, tmp_path):
    d = odd_root / "a b" / "c'd"
    d.mkdir(parents=True)
    (d / "cgroup.procs").write_text("")
    line = guest.run_in_line([(f"{d}/cgroup.procs", False)], "echo pid=$$")
    out, status, sig = parse_status(sh(line).stdout)
    assert (status, sig) == (0, None)
    assert out == f"pid={(d / 'cgroup.procs').read_text().strip()}\n"
    (d / "memory.current").write_text(f"{M}\n")
    (d / "memory.swap.current").write_text("4096\n")
    s = guest.sampler("a b/c'd", 1, guest.v2_sample_reads(str(d)), 0.05)
    assert sh(s.start_cmd).exit_status == 0
    time.sleep(0.3)
    samples = s.parse(sh(s.stop_cmd).stdout)
    sh(s.read_cmd)
    assert samples and all((x.usage, x.swap) == (M, 4096) for x in samples)
    _nothing_ran(tmp_path)


def test_settled_reads_until_two_agree():
    readings = iter([2, 3, 3, 4])
    assert guest.settled(lambda: next(readings), 1) == 3
    assert guest.settled(lambda: 9, 9) == 9
    calls = []
    assert guest.settled(lambda: calls.append(1) or len(calls), 0, tries=3) == 3
