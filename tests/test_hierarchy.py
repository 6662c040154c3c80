"""cgroup hierarchies: the commands they send (fake channel), the scripts they generate run by
the host's busybox (the same busybox-static the guest runs), and real guests (integration).
The shell protocol itself (status lines, errno names, quoting) is tested in test_guest.py.

The integration tests boot one guest per (kernel, hierarchy) they need, module-scoped; set
KHARNESS_SKIP_INTEGRATION=1 to leave them out.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_guest
from test_guest import BUSYBOX, BusyboxChannel, needs_busybox

from harness.cgroups import hierarchy as hmod
from harness.cgroups.hierarchy import (
    CgroupError,
    Reading,
    V1Hierarchy,
    V2Hierarchy,
    _Probe,
    clean_path,
    make_hierarchy,
    parse_status,
)
from harness.cgroups.knobs import KnobUnsupported
from harness.channels import CommandResult

M = 1024 * 1024

# --- a fake channel -----------------------------------------------------------------------------

PROBE_V2 = """== uname
6.1.0-56-amd64
== controllers
cpuset cpu io memory hugetlb pids rdma misc
== files
cgroup.events
cgroup.freeze
cgroup.kill
cgroup.procs
cgroup.subtree_control
cpu.max
cpu.stat
cpu.weight
io.max
io.stat
memory.current
memory.events
memory.high
memory.max
memory.oom.group
memory.peak
memory.swap.current
memory.swap.max
pids.events
pids.max
rdma.current
rdma.max
== devices
"""

PROBE_V1 = """== uname
6.1.0-56-amd64
== mounts
cgroup /sys/fs/cgroup tmpfs rw,relatime,mode=755,inode64 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/rdma cgroup rw,relatime,rdma 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0
== files
blkio.throttle.read_bps_device
cgroup.procs
cpu.cfs_period_us
cpu.cfs_quota_us
cpu.shares
cpu.stat
cpuacct.usage
cpuset.cpus
cpuset.mems
freezer.state
memory.failcnt
memory.limit_in_bytes
memory.max_usage_in_bytes
memory.memsw.failcnt
memory.memsw.limit_in_bytes
memory.memsw.usage_in_bytes
memory.oom_control
memory.swappiness
memory.usage_in_bytes
pids.events
pids.max
rdma.max
== devices
rxe0
"""

# Debian's 6.12 has no v1 memory or cpuset (CONFIG_MEMCG_V1, CONFIG_CPUSETS_V1 unset)
PROBE_V1_612 = """== uname
6.12.117+deb12-amd64
== mounts
cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0
== files
cgroup.procs
cpu.cfs_quota_us
cpu.cfs_period_us
pids.max
== devices
"""


class FakeChannel:
    """Records every command; answers the probe from `probe`, everything else from `answer`
    (a list of (exit status, stdout, stderr), consumed in order; then success)."""

    def __init__(self, probe: str, answers: list[tuple[int, str, str]] | None = None) -> None:
        self.probe = probe
        self.answers = list(answers or [])
        self.commands: list[str] = []

    def run(self, cmd, timeout=60.0, stdin=None, check=False) -> CommandResult:
        if "echo '== uname'" in cmd:
            return CommandResult(cmd, 0, self.probe, "", 0.01)
        self.commands.append(cmd)
        status, out, err = self.answers.pop(0) if self.answers else (0, "", "")
        return CommandResult(cmd, status, out, err, 0.01)


def v2(answers=None) -> tuple[V2Hierarchy, FakeChannel]:
    ch = FakeChannel(PROBE_V2, answers)
    h = make_hierarchy("v2", ch)
    assert isinstance(h, V2Hierarchy)
    return h, ch


def v1(answers=None, probe=PROBE_V1) -> tuple[V1Hierarchy, FakeChannel]:
    ch = FakeChannel(probe, answers)
    h = make_hierarchy("v1", ch)
    assert isinstance(h, V1Hierarchy)
    return h, ch


# --- unit: what is sent -------------------------------------------------------------------------

def test_make_hierarchy_rejects_other_versions():
    with pytest.raises(ValueError, match="v1 or v2"):
        make_hierarchy("v3", FakeChannel(PROBE_V2))


def test_controllers_from_the_probe():
    h, _ = v2()
    assert h.controllers() == {"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}
    assert h.release == "6.1.0-56-amd64"
    h1, _ = v1()
    assert h1.controllers() == {"cpuset", "blkio", "memory", "freezer", "pids", "rdma", "cpu",
                                "cpuacct"}
    assert h1.has_controller("io") == (True, "")
    ok, why = v1(probe=PROBE_V1_612)[0].has_controller("memory")
    assert not ok and "memory controller not available on v1 (6.12.117+deb12-amd64" in why


def test_v2_create_enables_controllers_down_to_the_parent():
    h, ch = v2()
    h.create("kh/a/b", {"memory", "pids", "freezer", "blkio"})
    lines = ch.commands[0].splitlines()
    enables = [line.split(" || ")[0] for line in lines if line.startswith("echo +")]
    assert enables == [
        f"echo +{c} > /sys/fs/cgroup/{d}cgroup.subtree_control"
        for d in ("", "kh/", "kh/a/") for c in ("io", "memory", "pids")]
    mkdirs = [line for line in lines if "mkdir" in line]
    assert mkdirs == [f"[ -d /sys/fs/cgroup/{p} ] || mkdir /sys/fs/cgroup/{p} || exit 1"
                      for p in ("kh", "kh/a", "kh/a/b")]
    # the leaf's own subtree_control is left alone: processes live there
    assert "kh/a/b/cgroup.subtree_control" not in ch.commands[0]


def test_v1_create_mkdirs_in_each_hierarchy_and_fills_cpuset():
    h, ch = v1()
    h.create("kh/x", {"memory", "cpu", "cpuacct", "cpuset"})
    script = ch.commands[0]
    for mount in ("memory", "cpu,cpuacct", "cpuset"):
        assert f"[ -d /sys/fs/cgroup/{mount}/kh/x ] || mkdir /sys/fs/cgroup/{mount}/kh/x" in script
    assert "/sys/fs/cgroup/pids" not in script
    assert script.count("mkdir /sys/fs/cgroup/cpu,cpuacct/kh/x ") == 1  # cpu and cpuacct: one dir
    for f in ("cpuset.cpus", "cpuset.mems"):
        assert (f"read -r x < /sys/fs/cgroup/cpuset/kh/{f}; "
                f"echo \"$x\" > /sys/fs/cgroup/cpuset/kh/x/{f}") in script


def test_create_refuses_missing_controllers_and_failures_name_the_cgroup():
    h, ch = v1(probe=PROBE_V1_612)
    with pytest.raises(CgroupError, match="memory controller not available on v1"):
        h.create("kh/m", {"memory"})
    assert ch.commands == []
    h, _ = v2([(1, "", "sh: write error: Device or resource busy\nkharness: cannot enable")])
    with pytest.raises(CgroupError, match="cannot create cgroup kh/y on v2.*resource busy"):
        h.create("kh/y", {"memory"})


def test_write_knob_v1_memsw_exact_writes_in_order():
    h, ch = v1()
    results = h.write_knob("kh/hog", "memory.swap.max", 0, {"memory.max": "32M"})
    d = "/sys/fs/cgroup/memory/kh/hog"
    assert ch.commands == ["\n".join([
        f"echo -1 > {d}/memory.memsw.limit_in_bytes || exit 100",
        f"echo 33554432 > {d}/memory.limit_in_bytes || exit 101",
        f"echo 33554432 > {d}/memory.memsw.limit_in_bytes || exit 102",
        "exit 0"])]
    assert [(r.file, r.value, r.ok) for r in results] == [
        (f"{d}/memory.memsw.limit_in_bytes", "-1", True),
        (f"{d}/memory.limit_in_bytes", "33554432", True),
        (f"{d}/memory.memsw.limit_in_bytes", "33554432", True)]


def test_write_knob_v1_cpu_max_goes_to_the_cpu_cpuacct_hierarchy():
    h, ch = v1()
    h.write_knob("kh/c", "cpu.max", "20000 100000")
    d = "/sys/fs/cgroup/cpu,cpuacct/kh/c"
    assert ch.commands[0].splitlines()[:3] == [
        f"echo -1 > {d}/cpu.cfs_quota_us || exit 100",
        f"echo 100000 > {d}/cpu.cfs_period_us || exit 101",
        f"echo 20000 > {d}/cpu.cfs_quota_us || exit 102"]


def test_a_failed_write_is_data_with_its_errno_and_stops_the_sequence():
    h, _ = v1([(101, "", "sh: write error: Invalid argument\n")])
    results = h.write_knob("kh/hog", "memory.swap.max", "16M", {"memory.max": "32M"})
    assert [r.ok for r in results] == [True, False]
    bad = results[-1]
    assert bad.errno_name == "EINVAL" and bad.value == "33554432"
    assert bad.message == "sh: write error: Invalid argument"


def test_write_knob_without_counterpart_raises_before_sending_anything():
    h, ch = v1()
    with pytest.raises(KnobUnsupported, match="memory.high has no v1 counterpart"):
        h.write_knob("kh/a", "memory.high", "8M")
    assert ch.commands == []


def test_write_file_quotes_values_and_paths():
    h, ch = v2()
    r = h.write_file("kh/a", "rdma.max", "rxe0 hca_handle=1 it's $(reboot)")
    assert ch.commands[0].splitlines()[0] == (
        "echo 'rxe0 hca_handle=1 it'\"'\"'s $(reboot)' > /sys/fs/cgroup/kh/a/rdma.max || exit 100")
    assert r.ok and r.value == "rxe0 hca_handle=1 it's $(reboot)"
    h.write_file("kh/a", "memory.oom.group", "-n")  # would be an option to echo
    assert ch.commands[1].startswith("printf '%s\\n' -n > /sys/fs/cgroup/kh/a/memory.oom.group")


def test_write_to_an_unmounted_controller_fails_without_errno():
    h, ch = v1(probe=PROBE_V1_612)
    r = h.write_file("kh/a", "memory.swappiness", 60)
    assert not r.ok and r.errno_name is None and "memory controller not available" in r.message
    assert ch.commands == []


def test_channel_trouble_is_not_an_errno():
    h, _ = v2([(-1, "", "")])
    r = h.write_file("kh/a", "pids.max", 5)
    assert not r.ok and r.errno_name is None and "exited -1" in r.message


@pytest.mark.parametrize(("path", "clean"), [("kh/a", "kh/a"), ("/kh/a/", "kh/a"),
                                             ("kh//a", "kh/a"), ("x-1.2_y@z", "x-1.2_y@z")])
def test_clean_path(path, clean):
    assert clean_path(path) == clean


@pytest.mark.parametrize("path", ["", "/", "kh/../etc", "kh/a b", "kh/$(x)", "kh/a'b", "."])
def test_clean_path_refuses(path):
    with pytest.raises(ValueError):
        clean_path(path)


def test_run_in_v1_joins_each_needed_hierarchy_once():
    h, _ = v1()
    line = h.run_in("kh/hog", "memhog 64", {"memory", "cpu", "cpuacct"})
    assert line.count("/sys/fs/cgroup/memory/kh/hog/cgroup.procs") == 1
    assert line.count("/sys/fs/cgroup/cpu,cpuacct/kh/hog/cgroup.procs") == 1
    assert "pids/kh/hog" not in line
    assert "kh-run 'memhog 64'" in line
    assert line.startswith("{ time -o /tmp/kh-status.$$ -f '' sh -c ") and line.endswith("; }")


def test_read_metric_without_counterpart_or_controller_sends_nothing():
    h, ch = v1()
    assert h.read_metric("kh/a", "oom_group_kill") == Reading(
        None, "oom_group_kill has no v1 counterpart")
    h612, ch612 = v1(probe=PROBE_V1_612)
    r = h612.read_metric("kh/a", "peak")
    assert r.value is None and "memory controller not available" in r.reason
    assert ch.commands == [] and ch612.commands == []


def _memsw_readings(h, monkeypatch, pairs):
    """h._read answers each reading of (memsw.usage, usage) from `pairs`, in order."""
    reads = []

    def read(path, files):
        memsw, usage = pairs[min(len(reads), len(pairs) - 1)]
        reads.append(files)
        return {"memory.memsw.usage_in_bytes": ("ok", f"{memsw}\n"),
                "memory.usage_in_bytes": ("ok", f"{usage}\n")}

    monkeypatch.setattr(h, "_read", read)
    return reads


def test_v1_swap_is_read_until_memsw_and_usage_agree(monkeypatch):
    """6.1 right after an OOM kill: a page uncharged between the two reads showed as 4 KiB of
    swap (memory.stat swap 0). A second reading that agrees with the first is the value."""
    h, _ = v1()
    reads = _memsw_readings(h, monkeypatch, [(20480, 16384), (16384, 16384), (16384, 16384)])
    assert h.read_metric("kh/a", "swap") == Reading(0)
    assert len(reads) == 3


def test_v1_swap_that_does_not_settle_is_the_last_reading(monkeypatch):
    h, _ = v1()
    pairs = [(32 * M + i * 4096, 32 * M) for i in range(10)]  # a workload still running
    reads = _memsw_readings(h, monkeypatch, pairs)
    assert h.read_metric("kh/a", "swap") == Reading(hmod.SETTLE_READS * 4096)
    assert len(reads) == 1 + hmod.SETTLE_READS


def test_single_file_metrics_are_read_once(monkeypatch):
    h, _ = v1()
    reads = []

    def read(path, files):
        reads.append(files)
        return {"memory.max_usage_in_bytes": ("ok", "33554432\n")}

    monkeypatch.setattr(h, "_read", read)
    assert h.read_metric("kh/a", "peak") == Reading(32 * M) and len(reads) == 1


def test_features_and_supports_from_the_probe():
    h, _ = v2()
    assert h.feature("memory.swap") == (True, "")
    ok, why = h.feature("memory.swap.peak")
    assert not ok and why == ("feature memory.swap.peak: memory.swap.peak does not exist on "
                              "6.1.0-56-amd64 (v2)")
    ok, why = h.feature("rdma")
    assert not ok and "no rxe0" in why
    assert h.supports("memory.high") == (True, "")
    assert h.supports("memory.swappiness") == (False, "memory.swappiness has no v2 counterpart")
    h1, _ = v1()
    assert h1.feature("rdma") == (True, "")
    assert h1.feature("memory.swap.peak") == (
        False, "feature memory.swap.peak has no v1 counterpart")
    assert h1.supports("memory.high") == (False, "memory.high has no v1 counterpart")
    assert h1.supports("cpu.max") == (True, "")
    ok, why = v1(probe=PROBE_V1_612)[0].supports("memory.max")
    assert not ok and why.startswith("memory.max: memory controller not available on v1")


def test_remove_scripts():
    h, ch = v2()
    h.remove("kh/a")
    assert "echo 1 > /sys/fs/cgroup/kh/a/cgroup.kill" in ch.commands[0]
    assert 'echo 0 > "$c/cgroup.freeze"' in ch.commands[0]
    h1, ch1 = v1()
    h1.remove("kh/a")
    script = ch1.commands[0]
    assert 'echo THAWED > "$c/freezer.state"' in script
    for mount in ("blkio", "cpu,cpuacct", "cpuset", "freezer", "memory", "pids", "rdma"):
        assert f"/sys/fs/cgroup/{mount}/kh/a" in script
    h2, _ = v2([(3, "/sys/fs/cgroup/kh/a: pids 42 \n", "rmdir: Device or resource busy")])
    with pytest.raises(CgroupError, match=r"cannot remove cgroup kh/a on v2 .*pids 42"):
        h2.remove("kh/a", timeout=1)


def test_kill_script_waits_for_an_empty_cgroup_and_keeps_it():
    h, ch = v2()
    h.kill("kh/a")
    script = ch.commands[0]
    assert "echo 1 > /sys/fs/cgroup/kh/a/cgroup.kill" in script
    assert 'read -r x < "$c/cgroup.procs" && left=1' in script
    assert "rmdir" not in script
    h2, _ = v2([(3, "/sys/fs/cgroup/kh/a: pids 7 \n", "")])
    with pytest.raises(CgroupError, match="cannot kill the processes of cgroup kh/a.*pids 7"):
        h2.kill("kh/a", timeout=1)


def test_knob_and_metric_controllers_on_each_hierarchy():
    h, _ = v2()
    h1, _ = v1()
    assert h.knob_controllers("io.max") == {"io"} and h1.knob_controllers("io.max") == {"blkio"}
    assert h.knob_controllers("cgroup.freeze") == set()
    assert h1.knob_controllers("cgroup.freeze") == {"freezer"}
    assert h1.knob_controllers("memory.high") == set()  # no counterpart: supports() says why
    assert h1.metric_controllers("cpu_usage") == {"cpuacct"}
    assert h1.metric_controllers("oom_group_kill") == set()
    assert h.metric_controllers("oom_kill") == {"memory"}


def test_write_result_errno_alias():
    h, _ = v2([(100, "", "sh: write error: Invalid argument")])
    r = h.write_file("kh/a", "memory.oom.group", 2)
    assert r.errno == r.errno_name == "EINVAL"


def test_sampler_reads_the_right_files():
    h, _ = v2()
    s = h.sampler("kh/hog")
    start, stop, parse = s
    assert (start, stop, parse) == (s.start_cmd, s.stop_cmd, s.parse)
    assert "/sys/fs/cgroup/kh/hog/memory.current" in s.start_cmd
    assert "/sys/fs/cgroup/kh/hog/memory.swap.current" in s.start_cmd
    assert "usleep 100000" in s.start_cmd
    h1, _ = v1()
    s1 = h1.sampler("kh/hog", interval=0.05)
    assert "s=$(( (m1 < m2 ? m1 : m2) - u ))" in s1.start_cmd and "usleep 50000" in s1.start_cmd
    with pytest.raises(CgroupError, match="sampling needs the memory controller"):
        v1(probe=PROBE_V1_612)[0].sampler("kh/hog")


# --- unit: the generated scripts, run by the host's busybox ------------------------------------

bb_path = test_guest.bb_path  # the fixture: busybox's applets installed in a directory


@pytest.fixture
def local_v2(tmp_path, monkeypatch, bb_path) -> tuple[V2Hierarchy, Path, BusyboxChannel]:
    root = tmp_path / "cgroup"
    (root / "kh" / "a").mkdir(parents=True)
    (root / "kh" / "a" / "cgroup.procs").write_text("")
    monkeypatch.setattr(hmod, "ROOT", str(root))
    ch = BusyboxChannel(bb_path)
    h = V2Hierarchy(ch)
    h._probe_cache = _Probe("test", frozenset({"memory", "pids"}), {}, frozenset(), frozenset())
    return h, root, ch


@needs_busybox
@pytest.mark.parametrize(("command", "out", "status", "sig"), [
    ("echo hello", "hello\n", 0, None),
    ("exit 3", "", 3, None),
    ("kill -9 $$", "", 137, "SIGKILL"),
    ("echo partial; kill -TERM $$", "partial\n", 143, "SIGTERM"),
    ("sh -c 'exit 137'", "", 137, None),  # exit 137 is an exit, not a signal
    ("printf 'no newline'", "no newline", 0, None),
    ("echo \"it's\" '$HOME' \"$((6 * 7))\"", "it's $HOME 42\n", 0, None),
    ("echo KH-STATUS=fake", "KH-STATUS=fake\n", 0, None),
])
def test_run_in_for_real(local_v2, command, out, status, sig):
    h, _, ch = local_v2
    res = ch.run(h.run_in("kh/a", command, {"memory"}))
    assert res.exit_status == 0, res.stderr
    assert parse_status(res.stdout) == (out, status, sig)


@needs_busybox
def test_run_in_puts_the_command_itself_in_the_cgroup(local_v2):
    h, root, ch = local_v2
    res = ch.run(h.run_in("kh/a", "echo pid=$$", ()))
    out, status, _ = parse_status(res.stdout)
    assert status == 0
    assert out == f"pid={(root / 'kh/a/cgroup.procs').read_text().strip()}\n"


@needs_busybox
def test_run_in_reports_a_failed_join(local_v2):
    h, _, ch = local_v2
    res = ch.run(h.run_in("kh/missing", "echo never", ()))
    assert "never" not in res.stdout
    with pytest.raises(CgroupError, match="could not join"):
        parse_status(res.stdout)


@needs_busybox
def test_run_in_can_be_backgrounded_as_a_whole(local_v2, tmp_path):
    h, _, ch = local_v2
    out = tmp_path / "bg.out"
    res = ch.run(f"{h.run_in('kh/a', 'sleep 0.2; echo late', ())} > {out} 2>&1 &\necho started")
    assert res.stdout == "started\n"
    deadline = time.monotonic() + 5
    while "KH-STATUS" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert parse_status(out.read_text()) == ("late\n", 0, None)


@needs_busybox
def test_writes_and_errnos_for_real(local_v2):
    h, root, _ = local_v2
    r = h.write_file("kh/a", "pids.max", "it's $(touch /tmp/kh-pwned) `x`")
    assert r.ok, r
    assert (root / "kh/a/pids.max").read_text() == "it's $(touch /tmp/kh-pwned) `x`\n"
    assert h.write_file("kh/a", "memory.oom.group", "-n").ok
    assert (root / "kh/a/memory.oom.group").read_text() == "-n\n"
    r = h.write_file("kh/nope", "pids.max", 5)
    assert (r.ok, r.errno_name) == (False, "ENOENT"), r
    (root / "kh/a/memory.max").mkdir()
    results = h.write_knob("kh/a", "memory.max", "32M")
    assert (results[-1].ok, results[-1].errno_name) == (False, "EISDIR"), results


@needs_busybox
def test_reads_for_real(local_v2):
    h, root, _ = local_v2
    (root / "kh/a/memory.events").write_text("max 35\noom 1\noom_kill 1\n")
    (root / "kh/a/memory.peak").write_text("33554432\n")
    (root / "kh/a/odd").write_text("no newline")
    (root / "kh/a/empty").write_text("")
    got = h.read_files("kh/a", ["memory.events", "odd", "empty", "memory.swap.peak"])
    assert got == {"memory.events": "max 35\noom 1\noom_kill 1\n", "odd": "no newline",
                   "empty": "", "memory.swap.peak": None}
    assert h.read_metric("kh/a", "oom_kill") == Reading(1)
    assert h.read_metric("kh/a", "limit_hits") == Reading(35)
    assert h.read_metric("kh/a", "peak") == Reading(32 * M)
    r = h.read_metric("kh/a", "swap_peak")
    assert r.value is None and "memory.swap.peak does not exist on test (v2)" in r.reason
    r = h.read_metric("kh/gone", "peak")
    assert r == Reading(None, "peak: cgroup kh/gone does not exist")


@needs_busybox
def test_a_root_with_a_space_and_a_quote_for_real(tmp_path, monkeypatch, bb_path):
    """What the hierarchy sends quotes its paths whatever they hold (a scenario's cgroup names
    cannot hold a space or a quote: clean_path refuses them; the mount point here does)."""
    root = tmp_path / "it's a root"
    root.mkdir()
    (root / "cgroup.controllers").write_text("memory pids\n")
    monkeypatch.setattr(hmod, "ROOT", str(root))
    ch = BusyboxChannel(bb_path)
    h = V2Hierarchy(ch)
    assert h.controllers() == {"memory", "pids"}  # the probe script, for real
    h.create("kh/a", {"memory"})
    assert (root / "kh" / "a").is_dir()
    assert (root / "cgroup.subtree_control").read_text() == "+memory\n"
    (root / "kh/a/cgroup.procs").write_text("")
    assert h.write_file("kh/a", "pids.max", "it's 5").ok
    assert h.read_file("kh/a", "pids.max") == "it's 5\n"
    out, status, _ = parse_status(ch.run(h.run_in("kh/a", "echo hi", {"memory"})).stdout)
    assert (out, status) == ("hi\n", 0)
    assert h.procs("kh", recursive=True) == [int((root / "kh/a/cgroup.procs").read_text())]


@needs_busybox
def test_sampler_for_real(local_v2):
    h, root, ch = local_v2
    (root / "kh/a/memory.current").write_text("1048576\n")
    s = h.sampler("kh/a", interval=0.05)
    assert ch.run(s.start_cmd).exit_status == 0
    time.sleep(0.4)
    (root / "kh/a/memory.swap.current").write_text("4096\n")
    time.sleep(0.3)
    samples = s.parse(ch.run(s.stop_cmd).stdout)
    again = s.parse(ch.run(s.read_cmd).stdout)  # the runner's way: stop, then read
    assert again[:len(samples)] == samples
    assert ch.run(s.read_cmd).stdout == ""  # read_cmd deleted the file
    assert len(samples) >= 4
    assert all(x.usage == M for x in samples)
    assert samples[0].swap is None and samples[-1].swap == 4096
    assert all(a.t <= b.t for a, b in itertools.pairwise(samples))


@needs_busybox
@pytest.mark.parametrize(("memsw", "usage", "swap"), [
    (["20480", "16384"], "16384", "0"),        # memsw uncharged while usage was read
    (["16384", "20480"], "20480", "-4096"),    # a charge in between: negative, parsed as 0
    (["40960", "40960"], "16384", "24576"),    # settled: real swap
])
def test_v1_sample_never_shows_moving_memory_as_swap(tmp_path, memsw, usage, swap):
    h, _ = v1()
    d = tmp_path / "kh" / "hog"
    d.mkdir(parents=True)
    script = h._sample_reads("kh/hog").replace("/sys/fs/cgroup/memory", str(tmp_path))
    # The two reads of memsw get the two values: the file is rewritten right after usage is
    # read (what is tested is the order of the reads and the arithmetic, in busybox sh).
    (d / "memory.memsw.usage_in_bytes").write_text(memsw[0] + "\n")
    (d / "memory.usage_in_bytes").write_text(usage + "\n")
    script = script.replace(
        f"read -r u < {d}/memory.usage_in_bytes",
        f"read -r u < {d}/memory.usage_in_bytes && echo {memsw[1]} > "
        f"{d}/memory.memsw.usage_in_bytes")
    out = subprocess.run([BUSYBOX, "sh", "-c", f"{script}; echo $s"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == swap


# --- integration: real kernels --------------------------------------------------------------------

GUESTS = {
    "6.1-v1": ("debian:6.1", "v1"),
    "6.1-v2": ("debian:6.1", "v2"),
    "6.12-v2": ("debian:6.12", "v2"),
    "6.12-v1": ("debian:6.12", "v1"),
}
WITH_V1_MEMORY = ("6.1-v1", "6.1-v2", "6.12-v2")  # Debian's 6.12 has no v1 memory controller
integration = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]


def on(*names: str):
    """Run the test on these guests (module-scoped: pytest groups the tests by guest, so each
    guest boots once)."""
    def mark(fn):
        fn = pytest.mark.parametrize("guest", names, indirect=True)(fn)
        for m in integration:
            fn = m(fn)
        return fn
    return mark


@dataclass
class Guest:
    name: str
    vm: object
    h: hmod.Hierarchy

    def run(self, path: str, command: str, controllers=(), timeout: float = 60):
        res = self.vm.ssh.run(self.h.run_in(path, command, controllers), timeout=timeout)
        assert not res.timed_out, res
        return parse_status(res.stdout)


@pytest.fixture(scope="module")
def guest(request):
    from harness import images, kernels
    from harness.events import EventBus
    from harness.machine import Machine, MachineConfig

    spec, version = GUESTS[request.param]
    bus = EventBus()
    kernel = kernels.resolve(spec, bus)
    cfg = MachineConfig(kernel=kernel, initrd=images.initrd_for(kernel, bus), hierarchy=version,
                        swap="64M")
    with Machine(cfg, bus) as vm:
        yield Guest(request.param, vm, make_hierarchy(version, vm.ssh))


@pytest.fixture
def cg(guest, request):
    """A fresh cgroup path for the test, removed (and checked gone) afterwards."""
    path = f"kh-test/{request.node.originalname}"
    yield path
    guest.h.remove("kh-test")
    left = guest.vm.ssh.run("ls -d /sys/fs/cgroup/kh-test /sys/fs/cgroup/*/kh-test 2>/dev/null")
    assert left.stdout == "", f"left behind: {left.stdout}"


@on(*GUESTS)
def test_probe(guest):
    h = guest.h
    kernel, version = GUESTS[guest.name]
    assert h.release.startswith(kernel.split(":")[1] + ".")
    if version == "v2":
        assert {"cpu", "io", "memory", "pids"} <= h.controllers()
        assert h.feature("memory.swap") == (True, "")
        assert h.supports("memory.high") == (True, "")
    else:
        assert {"cpu", "cpuacct", "blkio", "pids", "freezer"} <= h.controllers()
        assert h.supports("cpu.max") == (True, "")
        assert h.supports("memory.high") == (False, "memory.high has no v1 counterpart")
    assert h.feature("io") == (True, "")
    assert not h.feature("rdma")[0]  # no rxe0 without machine.rdma


@on(*WITH_V1_MEMORY)
def test_memory_max_hog_is_oom_killed(guest, cg):
    h = guest.h
    h.create(cg, {"memory"})
    ctx = {"memory.max": "32M", "memory.swap.max": 0}  # the machine has 64M of zram swap
    for knob in ("memory.max", "memory.swap.max"):
        results = h.write_knob(cg, knob, ctx[knob], ctx)
        assert all(r.ok for r in results), results
    sampler = h.sampler(cg)
    guest.vm.ssh.run(sampler.start_cmd, check=True)
    out, status, sig = guest.run(cg, "memhog 64", {"memory"})
    samples = sampler.parse(guest.vm.ssh.run(sampler.stop_cmd).stdout)
    assert (status, sig) == (137, "SIGKILL"), out
    assert "done" not in out and "reached_mib=" in out
    assert h.read_metric(cg, "oom_kill") == Reading(1)
    assert h.read_metric(cg, "limit_hits").value > 0
    assert h.read_metric(cg, "peak").value == pytest.approx(32 * M, rel=0.1)
    assert h.read_metric(cg, "swap").value == 0
    assert samples, "no samples"
    peak = max(s.usage for s in samples if s.usage is not None)
    assert 4 * M < peak <= 32 * M


@on("6.1-v1", "6.12-v2")
def test_swap_lets_the_hog_survive(guest, cg):
    h = guest.h
    h.create(cg, {"memory"})
    ctx = {"memory.max": "32M", "memory.swap.max": "max"}
    for knob in ("memory.max", "memory.swap.max"):
        assert all(r.ok for r in h.write_knob(cg, knob, ctx[knob], ctx))
    sampler = h.sampler(cg)
    guest.vm.ssh.run(sampler.start_cmd, check=True)
    out, status, sig = guest.run(cg, "memhog -t 0.5 48", {"memory"})
    samples = sampler.parse(guest.vm.ssh.run(sampler.stop_cmd).stdout)
    assert (status, sig) == (0, None), out
    assert "done mib=48" in out
    swap_peak = max(s.swap or 0 for s in samples)
    assert swap_peak > 8 * M, samples
    assert max(s.usage or 0 for s in samples) <= 32 * M


@on("6.1-v1")
def test_v1_writes_the_kernel_refuses(guest, cg):
    h = guest.h
    h.create(cg, {"memory"})
    bad = h.write_file(cg, "memory.swappiness", 201)
    assert (bad.ok, bad.errno_name) == (False, "EINVAL"), bad
    assert h.write_file(cg, "memory.swappiness", 200).ok
    assert h.read_file(cg, "memory.swappiness") == "200\n"
    assert h.write_file(cg, "memory.limit_in_bytes", "32M").ok
    bad = h.write_file(cg, "memory.memsw.limit_in_bytes", "16M")
    assert (bad.ok, bad.errno_name) == (False, "EINVAL"), bad
    # the mapping's write order keeps limit <= memsw whatever the order of the knobs
    assert all(r.ok for r in h.write_knob(cg, "memory.swap.max", "8M", {"memory.max": "32M"}))
    assert h.read_file(cg, "memory.memsw.limit_in_bytes") == f"{40 * M}\n"
    assert all(r.ok for r in h.write_knob(cg, "memory.max", "64M", {"memory.swap.max": "8M"}))
    assert h.read_file(cg, "memory.memsw.limit_in_bytes") == f"{72 * M}\n"
    assert h.read_file(cg, "memory.limit_in_bytes") == f"{64 * M}\n"


@on("6.1-v2", "6.12-v2")
def test_v2_oom_group_refuses_2(guest, cg):
    h = guest.h
    h.create(cg, {"memory"})
    results = h.write_knob(cg, "memory.oom.group", 2)
    assert [(r.ok, r.errno_name) for r in results] == [(False, "EINVAL")]
    assert h.read_file(cg, "memory.oom.group") == "0\n"
    assert h.read_file(cg, "no.such.file") is None


@on("6.1-v2", "6.12-v2")
def test_swap_peak_only_on_612(guest, cg):
    h = guest.h
    h.create(cg, {"memory"})
    reading = h.read_metric(cg, "swap_peak")
    present, why = h.feature("memory.swap.peak")
    if guest.name == "6.1-v2":
        assert reading.value is None and "memory.swap.peak does not exist on 6.1." in reading.reason
        assert not present and "does not exist on 6.1." in why
    else:
        assert reading == Reading(0)
        assert present


@on(*GUESTS)
def test_cpu_max_throttles(guest, cg):
    h = guest.h
    ctrls = {"cpu", "cpuacct"}
    h.create(cg, ctrls)
    assert all(r.ok for r in h.write_knob(cg, "cpu.max", "20000 100000"))
    out, status, _ = guest.run(cg, "cpuhog 2", ctrls)
    assert status == 0 and "wall_s=" in out
    usage = h.read_metric(cg, "cpu_usage").value
    assert usage == pytest.approx(0.4, abs=0.25), out  # 20% of 2 s, under TCG
    assert h.read_metric(cg, "nr_throttled").value > 0


@on(*GUESTS)
def test_pids_max_refuses_forks(guest, cg):
    h = guest.h
    h.create(cg, {"pids"})
    assert all(r.ok for r in h.write_knob(cg, "pids.max", 5))
    out, status, _ = guest.run(cg, "forker -t 0.3 10", {"pids"})
    fields = dict(tok.split("=") for tok in out.split() if "=" in tok)
    assert status == 1
    assert fields["first_errno"] == "EAGAIN"
    assert int(fields["forked"]) == 4  # forker itself is the fifth
    assert int(fields["failed"]) == 6
    assert h.read_metric(cg, "pids_max_events").value >= 1
    assert h.read_metric(cg, "pids_current") == Reading(0)


@on("6.1-v1", "6.12-v2")
def test_remove_kills_frozen_processes(guest, cg):
    h = guest.h
    child = f"{cg}/inner"
    ctrls = {"pids", "freezer"}
    h.create(child, ctrls)
    line = h.run_in(child, "sleep 600", ctrls)

    def start_sleeper() -> list[int]:
        guest.vm.ssh.run(f"{line} >/dev/null 2>&1 &", check=True)
        deadline = time.monotonic() + 10
        while not (pids := h.procs(cg, recursive=True)):
            assert time.monotonic() < deadline, "the sleeper never joined"
            time.sleep(0.1)
        return pids

    first = start_sleeper()
    h.kill(cg)  # the processes go, the cgroups stay
    assert h.procs(cg, recursive=True) == []
    assert guest.vm.ssh.run(f"kill -0 {first[0]}").exit_status != 0
    assert h.read_file(child, "pids.max") == "max\n"
    pids = start_sleeper()
    assert h.procs(child) == pids and h.procs(cg) == []
    assert all(r.ok for r in h.write_knob(child, "cgroup.freeze", 1))
    deadline = time.monotonic() + 10
    while h.read_metric(child, "frozen").value != 1:
        assert time.monotonic() < deadline, "never froze"
        time.sleep(0.1)
    h.remove(cg)
    assert h.procs(cg, recursive=True) == []
    assert guest.vm.ssh.run(f"kill -0 {pids[0]}").exit_status != 0
    h.remove(cg)  # an absent cgroup is fine


@on("6.12-v1")
def test_612_v1_has_no_memory_controller(guest, cg):
    h = guest.h
    assert "memory" not in h.controllers()
    ok, why = h.supports("memory.max")
    assert not ok and "memory controller not available on v1 (6.12." in why
    with pytest.raises(CgroupError, match="memory controller not available"):
        h.create(cg, {"memory"})
    r = h.read_metric(cg, "oom_kill")
    assert r.value is None and "memory controller not available" in r.reason
