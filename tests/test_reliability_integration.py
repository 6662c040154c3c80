"""Reliability drills, done for real as a user would (issue 17): a full results disk, SIGTERM
during a boot, SIGINT to a background job, kill -9 of QEMU under a scenario, kill -9 of
kharness, and no key material where other users or CI artefacts can read it.

Real QEMU, real Debian 6.1, real SSH. The full-disk drill mounts a tmpfs and needs root (as
CI and `./kh setup` do).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import images, kernels
from harness.events import EventBus
from harness.hostcmd import pids_of
from harness.machine import Machine, MachineConfig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

ROOT = Path(__file__).resolve().parent.parent
KHARNESS = [sys.executable, "-m", "harness.cli"]
QEMU = "qemu-system-x86_64"
# One v1-only scenario (a skip, recorded before any boot) and two that boot on v2.
SCENARIOS = ["scenarios/memory/memsw-below-limit.yaml", "scenarios/memory/oom-kill.yaml",
             "scenarios/memory/peak.yaml"]


def _start(*args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen([*KHARNESS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, cwd=ROOT, **kw)


def _read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 120) -> list[str]:
    """stderr lines up to the first containing `needle` (the rest stays unread)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if needle in line or time.monotonic() > deadline:
            break
    assert any(needle in ln for ln in seen), "".join(seen)
    return seen


def _results(run_dir: Path) -> list[dict]:
    path = run_dir / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _qemus_of(pid: int, count: int = 1) -> set[int]:
    """The QEMU children of `pid`, once `count` of them run (a machine.boot event comes just
    before setpriv exec()s QEMU)."""
    deadline = time.monotonic() + 10
    while len(found := pids_of(QEMU, pid)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(found) >= count, f"no {QEMU} child of {pid}"
    return found


def _no_qemu_left(parent: int, before: set[int]) -> None:
    deadline = time.monotonic() + 10
    while (pids_of(QEMU) & before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (pids_of(QEMU) & before), f"qemu left running after kharness {parent} ended"


# --- 1. a full results disk ---------------------------------------------------------------------

@pytest.fixture
def full_tmpfs(tmp_path):
    """A tmpfs with 20 KiB free: room for run.json, the first results and the start of two
    consoles, then ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and ./kh setup run as root)")
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        (mnt / "filler").write_bytes(b"x" * (free - 20 * 1024))
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_results_disk_stops_the_run_at_once_and_keeps_what_was_written(full_tmpfs):
    out = full_tmpfs / "r"
    start = time.monotonic()
    proc = _start("run", *SCENARIOS, "--kernel", "debian:6.1", "--hierarchy", "v2",
                  "--results", str(out), "--junit", str(full_tmpfs / "junit-copy.xml"))
    _, stderr = proc.communicate(timeout=120)
    took = time.monotonic() - start
    assert proc.returncode == 2, stderr
    assert took < 30, f"took {took:.0f}s: a full disk was taken for a hang ({stderr})"
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"kharness: cannot write {out}/") and ": ENOSPC (" in last, stderr
    assert "the run stopped: 1 result(s) kept" in last
    assert "only 20 KiB free" in stderr  # the warning before the run
    # What had been written is intact: whole JSON lines (the skip), a parseable run.json,
    # no junit.xml truncated in place (absent, or a whole document).
    (skip,) = _results(out)
    assert skip["status"] == "skip" and skip["scenario"] == "memory/memsw-below-limit"
    json.loads((out / "run.json").read_text())
    for junit in (out / "junit.xml", full_tmpfs / "junit-copy.xml"):
        if junit.exists():
            ET.parse(junit)
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left"
    assert not pids_of(QEMU, proc.pid)


# --- 2. interrupts ------------------------------------------------------------------------------

def test_sigterm_during_a_boot_is_no_result_and_run_json_says_what_did_not_run(tmp_path):
    out = tmp_path / "r"
    proc = _start("run", *SCENARIOS, "--kernel", "debian:6.1", "--hierarchy", "v2",
                  "--results", str(out))
    try:
        _read_until(proc, "booting 6.1")
        mine = _qemus_of(proc.pid, 2)
        time.sleep(0.5)  # the guest is booting, not ready
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert took < 8, f"{took:.1f}s to stop after SIGTERM"
    assert "interrupted (SIGTERM)" in stderr
    # The skip is a result; the two interrupted cells are not ("boot failed: QEMU exited
    # before the guest was ready" was the lie).
    assert [r["status"] for r in _results(out)] == ["skip"]
    ending = json.loads((out / "run.json").read_text())["ending"]
    assert ending["status"] == "interrupted" and ending["signal"] == "SIGTERM"
    release = kernels.resolve("debian:6.1", EventBus()).release
    assert sorted(ending["not_run"]) == [f"memory/oom-kill [{release} v2]",
                                         f"memory/peak [{release} v2]"]
    ET.parse(out / "junit.xml")
    _no_qemu_left(proc.pid, mine)


def test_sigint_stops_a_background_job_that_inherited_sigint_ignored(tmp_path):
    """`kharness run ... &` in a script starts with SIGINT ignored (no job control): kharness
    installs its own handler, so SIGINT still stops it (exit 130) and leaves no QEMU."""
    cmd = " ".join([*KHARNESS, "exec", "--kernel", "debian:6.1", "--", "sleep", "60"])
    script = f"{cmd} 2>{tmp_path}/err & echo $!; wait $!; echo rc=$?"
    (tmp_path / "err").touch()
    shell = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        assert shell.stdout is not None
        pid = int(shell.stdout.readline())
        deadline = time.monotonic() + 120
        while "running: sleep 60" not in (tmp_path / "err").read_text() \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        status = Path(f"/proc/{pid}/status").read_text()
        mine = _qemus_of(pid)
        os.kill(pid, signal.SIGINT)
        rest, _ = shell.communicate(timeout=30)
    finally:
        if shell.poll() is None:
            shell.kill()
    # bash started it the way it starts background jobs, SIGINT and SIGQUIT ignored: SIGQUIT
    # still is, SIGINT is caught again by kharness's own handler.
    masks = {ln.split(":")[0]: int(ln.split()[1], 16) for ln in status.splitlines()
             if ln.startswith(("SigIgn:", "SigCgt:"))}
    assert masks["SigIgn"] & (1 << (signal.SIGQUIT - 1))
    assert masks["SigCgt"] & (1 << (signal.SIGINT - 1))
    assert not masks["SigIgn"] & (1 << (signal.SIGINT - 1))
    assert rest.strip() == "rc=130", (tmp_path / "err").read_text()
    _no_qemu_left(pid, mine)


# --- 3. kill -9 of QEMU, and a step that times out ---------------------------------------------

def test_a_killed_qemu_is_the_machine_not_ssh_and_the_run_goes_on(tmp_path):
    out = tmp_path / "r"
    proc = _start("run", "tests/scenarios/reliability/long-step.yaml",
                  "tests/scenarios/reliability/timed-out.yaml",
                  "tests/scenarios/runner/zz-after.yaml", "--kernel", "debian:6.1",
                  "--hierarchy", "v2", "--results", str(out), "--jobs", "1")
    try:
        _read_until(proc, "running reliability/long-step")
        time.sleep(1.5)
        (qemu,) = _qemus_of(proc.pid)
        os.kill(qemu, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    by_name = {r["scenario"]: r for r in _results(out)}
    killed = by_name["reliability/long-step"]
    assert killed["status"] == "error" and killed["failure_kind"] == "machine", killed
    assert killed["reason"].startswith("QEMU exited (killed by signal 9) during the scenario")
    # A fresh machine for the rest: a timed-out step's check says so, and the run goes on.
    slow = by_name["reliability/timed-out"]
    assert slow["status"] == "fail", slow
    (check,) = [c for c in slow["checks"] if not c["passed"]]
    assert check["observed"] == "-1 (timed out after 3 s)"
    assert by_name["runner/zz-after"]["status"] == "pass", stderr
    assert proc.returncode == 2  # an error in the run


# --- 4. kill -9 of kharness ---------------------------------------------------------------------

def test_sigkill_of_kharness_takes_its_qemu_at_once(tmp_path):
    proc = _start("run", "scenarios/memory/oom-kill.yaml", "--kernel", "debian:6.1",
                  "--hierarchy", "v2", "--results", str(tmp_path / "r"))
    try:
        _read_until(proc, "booting 6.1")
        mine = _qemus_of(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        start = time.monotonic()
        while pids_of(QEMU) & mine and time.monotonic() - start < 10:
            time.sleep(0.01)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (pids_of(QEMU) & mine)
    assert took < 0.5, f"qemu outlived kharness by {took:.2f}s (PR_SET_PDEATHSIG)"


# --- 5. no key material in argv, cmdline or results --------------------------------------------

def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")


def test_no_key_material_in_argv_cmdline_or_results(tmp_path):
    bus = EventBus()
    kernel = kernels.resolve("debian:6.1", bus)
    config = MachineConfig(kernel=kernel, initrd=images.initrd_for(kernel, bus),
                           workdir=tmp_path / "machine", boot_retries=0)
    with Machine(config, bus) as vm:
        assert vm.ssh is not None and vm.proc is not None
        host_key, client = vm.host_key_file, vm.key
        secrets = [host_key, base64.b64encode(host_key), client.get_base64().encode()]
        cmdline = _cmdline(vm.proc.pid)  # setpriv exec()s QEMU: the same process
        assert cmdline.startswith(b"qemu-system-x86_64 ")
        guest_cmdline = vm.ssh.run("cat /proc/cmdline", timeout=10).stdout.encode()
        perms = vm.ssh.run("stat -c '%a %n' /etc/kharness/secret "
                           "/etc/kharness/secret/* /root/.ssh/authorized_keys",
                           timeout=10).stdout.split("\n")
        initrd = vm.initrd
        mode = initrd.stat().st_mode & 0o777, initrd.parent.stat().st_mode & 0o777
        assert host_key in initrd.read_bytes()  # where the key is: only here
    for secret in secrets:
        assert secret not in cmdline
        assert secret not in guest_cmdline
        for path in (tmp_path / "machine").rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path
    assert b"key=" not in cmdline and b"key=" not in guest_cmdline
    assert mode == (0o600, 0o700)
    assert not initrd.exists() and not initrd.parent.exists()  # removed with the machine
    assert perms[:4] == ["700 /etc/kharness/secret",
                         "600 /etc/kharness/secret/authorized_keys",
                         "600 /etc/kharness/secret/dropbear_ed25519_host_key",
                         "600 /root/.ssh/authorized_keys"], perms
    # And through the command line: the run's argv files and results hold no key either.
    out = tmp_path / "r"
    proc = _start("run", "scenarios/memory/oom-kill.yaml", "--kernel", "debian:6.1",
                  "--hierarchy", "v2", "--results", str(out))
    try:
        _read_until(proc, "ready over SSH")
        (qemu,) = _qemus_of(proc.pid)
        running = _cmdline(qemu)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert b"kharness.hostkey" not in running and b"kharness.authkey" not in running
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"kharness.hostkey" not in data and b"kharness.authkey" not in data, path
            assert b"PRIVATE KEY" not in data, path
