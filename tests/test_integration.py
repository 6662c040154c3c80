"""Integration tests: real QEMU, real Debian kernels, real SSH.

They need what `kharness setup` installs and fetches (`./kh test` runs it first). They do not
skip when QEMU or a kernel is missing: they fail, so a CI that forgot the set-up goes red.
Set KHARNESS_SKIP_INTEGRATION=1 to leave them out on purpose (they then show as skipped).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import images, kernels
from harness.events import EventBus
from harness.hostcmd import pids_of
from harness.machine import BootError, Machine, MachineConfig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

KHARNESS = [sys.executable, "-m", "harness.cli"]


def kharness(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KHARNESS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def qemu_pids(parent: int | None = None) -> set[int]:
    """QEMU processes running now (children of `parent` only, when given)."""
    return pids_of("qemu-system-x86_64", parent)


@pytest.fixture(scope="session")
def bus() -> EventBus:
    return EventBus()


def _config(spec: str, bus: EventBus, **kw) -> MachineConfig:
    kernel = kernels.resolve(spec, bus)
    return MachineConfig(kernel=kernel, initrd=images.initrd_for(kernel, bus), **kw)


# --- the acceptance commands, through the CLI ---------------------------------------------------

def test_exec_uname_on_61():
    proc = kharness("exec", "--kernel", "debian:6.1", "--", "uname", "-r")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("6.1.0-")
    assert proc.stdout.strip().endswith("-amd64")


def test_exec_exit_status_on_612():
    proc = kharness("exec", "--kernel", "debian:6.12", "--", "sh", "-c", "exit 3")
    assert proc.returncode == 3, proc.stderr


def test_v2_enables_the_controllers_on_61():
    proc = kharness("exec", "--kernel", "debian:6.1", "--hierarchy", "v2", "--",
                    "cat", "/sys/fs/cgroup/cgroup.subtree_control")
    assert proc.returncode == 0, proc.stderr
    enabled = proc.stdout.split()
    for controller in ("memory", "cpu", "io", "pids", "rdma"):
        assert controller in enabled


def test_v1_memory_unavailable_on_612_is_reported_with_the_reason():
    proc = kharness("exec", "--kernel", "debian:6.12", "--hierarchy", "v1", "--", "true")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "memory controller unavailable" in ln)
    assert "CONFIG_MEMCG_V1 is not set in 6.12." in line
    assert "Unknown subsys name 'memory'" in line
    assert any("cpuset controller unavailable" in ln and "CONFIG_CPUSETS_V1" in ln
               for ln in proc.stderr.splitlines())


def test_v1_memory_works_on_61():
    proc = kharness("exec", "--kernel", "debian:6.1", "--hierarchy", "v1", "--",
                    "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 2**40  # "unlimited" is PAGE_COUNTER_MAX pages in bytes
    assert "unavailable" not in proc.stderr


def test_memhog_from_the_image():
    proc = kharness("exec", "--kernel", "debian:6.1", "--", "memhog", "64")
    assert proc.returncode == 0, proc.stderr
    assert "done mib=64" in proc.stdout


def test_bad_spec_is_one_line_and_exit_2():
    proc = kharness("exec", "--kernel", "nosuch:1", "--", "true", timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch:1" in lines[0]


def test_panic_during_the_command_is_exit_4_with_the_console_excerpt():
    proc = kharness("exec", "--kernel", "debian:6.12", "--",
                    "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger")
    assert proc.returncode == 4, proc.stderr
    assert "the kernel panicked while the command ran" in proc.stderr
    assert "Kernel panic - not syncing: sysrq triggered crash" in proc.stderr
    # The excerpt starts at the kernel's lines, not at the shell's banner before them.
    excerpt = proc.stderr.split("console log: ", 1)[1].split("\n", 1)[1]
    assert excerpt.lstrip("\n").startswith("["), excerpt[:200]
    assert "BusyBox" not in proc.stderr
    log = proc.stderr.split("console log: ", 1)[1].split()[0]
    assert "sysrq triggered crash" in Path(log).read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_signal_leaves_no_qemu(sig):
    proc = subprocess.Popen([*KHARNESS, "exec", "--kernel", "debian:6.1", "--", "sleep", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "running: sleep 60" in line or time.monotonic() > deadline:
                break
        assert any("running: sleep 60" in ln for ln in seen), "".join(seen)
        mine = qemu_pids(parent=proc.pid)
        assert mine, "no qemu-system-x86_64 process while the command runs"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while mine & qemu_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (mine & qemu_pids()), f"qemu left running after {sig.name}"
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig, proc.returncode  # 130 SIGINT, 143 SIGTERM


# --- the machine and its channels, through the API ----------------------------------------------

def test_machine_channels_swap_and_rdma(bus):
    config = _config("debian:6.12", bus, swap="64M", rdma=True)
    with Machine(config, bus) as vm:
        assert vm.ssh is not None and vm.serial is not None
        swaps = vm.ssh.run("cat /proc/swaps", check=True).stdout
        assert "/dev/zram0" in swaps
        assert vm.info.swap and vm.info.swap.startswith("zram0")
        # stdin carries a script; stdout and stderr stay apart.
        r = vm.ssh.run("sh -s", stdin="echo out; echo err >&2; exit 7\n")
        assert (r.exit_status, r.stdout, r.stderr) == (7, "out\n", "err\n")
        assert r.duration > 0
        # a command that outlives its timeout is reported, not hung on
        r = vm.ssh.run("sleep 30", timeout=1)
        assert r.timed_out and not r.ok
        # the serial console runs commands too
        r = vm.serial.run("echo serial-$((40 + 2))")
        assert r.exit_status == 0 and "serial-42" in r.stdout
        assert vm.serial.run("false").exit_status == 1
        # soft-RoCE device for the rdma controller
        links = vm.ssh.run("rdma link show", check=True).stdout
        assert "rxe0" in links
        r = vm.ssh.run("rdma_open -d rxe0 -c 2 -p 2")
        assert r.exit_status == 0, r.stdout + r.stderr
        assert "contexts_ok=2" in r.stdout and "pds_ok=2" in r.stdout
        r = vm.ssh.run("mkdir /sys/fs/cgroup/t && cat /sys/fs/cgroup/t/rdma.max", check=True)
        assert r.stdout.startswith("rxe0 hca_handle=max")
        # a connection dropped under the channel is reopened before the next command
        vm.ssh.client.get_transport().close()
        assert vm.ssh.run("echo again", check=True).stdout == "again\n"
        assert vm.ssh.reconnects == 1
        # commands from several threads at once, each channel closing as the next opens
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda i: vm.ssh.run(f"echo {i}", check=True).stdout,
                                 range(60)))
        assert outs == [f"{i}\n" for i in range(60)]
    assert vm.proc is not None and vm.proc.poll() is not None


def test_boot_failure_carries_argv_exit_code_and_console(bus, tmp_path):
    config = _config("debian:6.1", bus, cmdline=("rdinit=/does-not-exist", "init=/nope"),
                     workdir=tmp_path, boot_timeout=60)
    with pytest.raises(BootError) as err, Machine(config, bus):
        pass
    exc = err.value
    assert exc.argv[0] == "qemu-system-x86_64"
    assert exc.failure == "panic"
    assert "Kernel panic" in exc.console_tail
    assert "rdinit=/does-not-exist" in str(exc)
    assert (tmp_path / "console.log").exists()
    # It panics every time: booted once more (MachineConfig.boot_retries), then given up.
    (record,) = exc.retries
    assert record.startswith("boot 1: kernel panic during boot: Kernel panic - not syncing: ")
    assert "Kernel panic" in (tmp_path / "console.boot1.log").read_text()


def test_a_kernel_that_dies_while_booting_gets_a_second_real_boot(bus, tmp_path):
    """A real panic on the first boot only (its -append gets a missing rdinit through a
    wrapper in place of qemu-system-x86_64); the second boot is a normal one: SSH works, the
    first boot's console is kept and named."""
    wrapper = tmp_path / "qemu-first-boot-panics"
    wrapper.write_text(f"""#!{sys.executable}
import os, sys
from pathlib import Path
args = sys.argv[1:]
mark = Path({str(tmp_path / "booted")!r})
if not mark.exists():
    mark.write_text("1")
    i = args.index("-append") + 1
    args[i] += " rdinit=/does-not-exist init=/nope"
os.execvp("qemu-system-x86_64", ["qemu-system-x86_64", *args])
""")
    wrapper.chmod(0o755)
    workdir = tmp_path / "vm"
    config = _config("debian:6.1", bus, workdir=workdir, qemu=str(wrapper), boot_timeout=60,
                     accel="tcg")  # no KVM probe: it would be the wrapper's first boot
    seen: list[str] = []
    bus.subscribe(lambda ev: seen.append(ev.kind))
    with Machine(config, bus) as vm:
        assert vm.ssh.run(["uname", "-r"]).stdout.strip() == config.kernel.release
        (record,) = vm.info.retries
        assert "Kernel panic - not syncing" in record and "console.boot1.log" in record
        assert not vm.console.failures  # this boot's console is the second boot's
    assert seen.count("machine.retry") == 1
    assert "Kernel panic" in (workdir / "console.boot1.log").read_text()
    assert "Kernel panic" not in (workdir / "console.log").read_text()
    assert not qemu_pids(os.getpid())


def test_path_spec_boots_a_users_bzimage_with_its_modules(bus):
    k = kernels.resolve("debian:6.1", bus)  # stands in for a kernel the user built
    boot = k.image
    assert boot is not None and boot.exists()
    spec = f"path:{boot},modules={k.modules_dir}"
    proc = kharness("exec", "--kernel", spec, "--", "sh", "-c", "uname -r; ls /sys/class/net")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == k.release
    assert "eth0" in proc.stdout.split()
    path_kernel = kernels.resolve(spec, bus)
    assert path_kernel.flags()["MEMCG"] == "y"  # config found next to the image
