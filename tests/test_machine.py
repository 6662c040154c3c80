"""Machine argv and boot-marker interpretation, without booting (see test_integration.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.events import EventBus
from harness.kernels import Kernel
from harness.machine import BootError, Machine, MachineConfig, memory_mib, redacted
from harness.output import OutputError


def _machine(tmp_path: Path, config_text: str = "", **kw) -> Machine:
    cfg = tmp_path / "config"
    cfg.write_text(config_text)
    (tmp_path / "initrd.cpio").write_bytes(b"shared initrd")
    kernel = Kernel(spec="debian:6.12.117+deb12", release="6.12.117+deb12-amd64",
                    vmlinux=tmp_path / "vmlinux", config=cfg, modules_dir=None)
    return Machine(MachineConfig(kernel=kernel, initrd=tmp_path / "initrd.cpio",
                                 workdir=tmp_path / "run", accel="tcg", **kw), EventBus())


def test_numa_nodes_split_the_cpus_and_the_memory(tmp_path):
    assert "-numa" not in _machine(tmp_path, memory="1G").argv()
    argv = _machine(tmp_path, memory="1000M", cpus=2, numa=2).argv()
    objects = [argv[i + 1] for i, a in enumerate(argv) if a == "-object"]
    nodes = [argv[i + 1] for i, a in enumerate(argv) if a == "-numa"]
    assert objects == ["memory-backend-ram,id=ram0,size=500M",
                       "memory-backend-ram,id=ram1,size=500M"]
    assert nodes == ["node,nodeid=0,cpus=0,memdev=ram0", "node,nodeid=1,cpus=1,memdev=ram1"]
    argv = _machine(tmp_path, memory="1G", cpus=4, numa=3 - 1).argv()
    assert "node,nodeid=1,cpus=2-3,memdev=ram1" in argv


def test_argv_is_a_list_with_pvh_boot_and_loopback_forward(tmp_path):
    vm = _machine(tmp_path, memory="1G", hierarchy="v1", swap="256M")
    argv = vm.argv()
    assert argv[0] == "qemu-system-x86_64"
    assert all(isinstance(a, str) for a in argv)
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "vmlinux")
    assert argv[argv.index("-initrd") + 1] == str(tmp_path / "initrd.cpio")
    assert argv[argv.index("-cpu") + 1] == "max"
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-m") + 1] == "1G"
    assert f"hostfwd=tcp:127.0.0.1:{vm.port}-:22" in argv[argv.index("-netdev") + 1]
    append = argv[argv.index("-append") + 1].split()
    assert "console=ttyS0" in append
    assert "kharness.hierarchy=v1" in append
    assert "kharness.swap=256M" in append
    assert "-no-reboot" in argv
    # No key material on the command line (world-readable): the keys go in the initrd.
    assert not any("key" in word for word in append)
    assert vm.key.get_base64() not in " ".join(argv)


def test_each_machine_gets_its_own_key_and_port(tmp_path):
    a, b = _machine(tmp_path), _machine(tmp_path)
    assert a.key.get_base64() != b.key.get_base64()


@pytest.mark.parametrize(("text", "mib"), [("512M", 512), ("1G", 1024), ("2048", 2048),
                                           ("1.5G", 1536), ("256MiB", 256)])
def test_memory_sizes(text, mib):
    assert memory_mib(text) == mib


def test_v1_failures_are_explained_with_the_config(tmp_path):
    vm = _machine(tmp_path, "CONFIG_MEMCG=y\n# CONFIG_MEMCG_V1 is not set\n", hierarchy="v1")
    log = (
        "KHARNESS:init 6.12.117+deb12-amd64\n"
        "KHARNESS:cgroup v1 memory fail Invalid argument (dmesg: cgroup: Unknown subsys name "
        "'memory')\n"
        "KHARNESS:cgroup v1 mounted pids rdma cpu cpuacct\n"
        "KHARNESS:swap zram0 268435456\n"
        "KHARNESS:ready\n"
    )
    vm.console.feed(log)
    vm._collect_markers()
    memory = vm.info.controllers["memory"]
    assert not memory.available
    assert "CONFIG_MEMCG_V1 is not set in 6.12.117+deb12-amd64" in memory.reason
    assert "Unknown subsys name 'memory'" in memory.reason
    assert vm.info.controllers["pids"].available
    assert vm.info.controllers["cpu"].available
    assert vm.info.swap == "zram0 268435456"
    assert vm.info.problems == []


# --- a kernel that dies while booting: a fake QEMU plays the console -------------------------

PANIC_CONSOLE = """\
[    1.553702] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[    1.554060] CPU: 0 UID: 0 PID: 1 Comm: swapper/0 Not tainted 6.12.117+deb12-amd64 #1
[    1.554348] RIP: 0010:sched_clock_cpu+0x9/0x190
[    1.556443] Modules linked in:
[    1.556789] ---[ end trace 0000000000000000 ]---
[    1.557063] Kernel panic - not syncing: Fatal exception in interrupt
"""


def _fake_qemu(tmp_path: Path, console: str) -> Path:
    """A `qemu` that prints `console` (numbering its runs in runs.txt) and then hangs as a
    panicked guest does (panic=-1 with -no-reboot would exit; hanging is the harder case)."""
    (tmp_path / "console.txt").write_text(console)
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!/bin/sh\necho run >> {tmp_path}/runs.txt\n"
                      f"cat {tmp_path}/console.txt\nexec sleep 60\n")
    script.chmod(0o755)
    return script


def test_a_kernel_that_dies_while_booting_is_booted_once_more(tmp_path):
    qemu = _fake_qemu(tmp_path, PANIC_CONSOLE)
    vm = _machine(tmp_path, qemu=str(qemu), boot_timeout=20)
    seen = []
    vm.bus.subscribe(lambda ev: seen.append(ev.kind))
    with pytest.raises(BootError) as info:
        vm.start()
    vm.stop()
    exc = info.value
    assert exc.failure == "panic"
    assert (tmp_path / "runs.txt").read_text().count("run") == 2
    assert seen.count("machine.retry") == 1 and seen.count("machine.boot") == 2
    # The first boot's console is kept beside the second's, and named in the record.
    kept = tmp_path / "run/console.boot1.log"
    assert "sched_clock_cpu" in kept.read_text()
    assert "sched_clock_cpu" in (tmp_path / "run/console.log").read_text()
    (record,) = exc.retries
    assert record.startswith("boot 1: kernel panic during boot: Oops: int3: 0000 [#1]")
    assert "at sched_clock_cpu+0x9/0x190" in record and str(kept) in record
    assert not vm.alive()


def test_boot_retries_zero_boots_once(tmp_path):
    vm = _machine(tmp_path, qemu=str(_fake_qemu(tmp_path, PANIC_CONSOLE)), boot_retries=0)
    with pytest.raises(BootError) as info:
        vm.start()
    vm.stop()
    assert (tmp_path / "runs.txt").read_text().count("run") == 1 and info.value.retries == []


def test_a_boot_that_fails_without_a_kernel_report_is_not_retried(tmp_path):
    """QEMU exiting (a bad argument, a missing file) says nothing a second boot would change."""
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!/bin/sh\necho run >> {tmp_path}/runs.txt\n"
                      "echo 'qemu: could not load kernel' >&2\nexit 1\n")
    script.chmod(0o755)
    vm = _machine(tmp_path, qemu=str(script))
    with pytest.raises(BootError) as info:
        vm.start()
    vm.stop()
    assert info.value.failure is None and "QEMU exited" in info.value.reason
    assert (tmp_path / "runs.txt").read_text().count("run") == 1


def test_a_boot_that_never_gets_ready_is_booted_once_more(tmp_path):
    """Debian's 6.1 once stopped printing at 0.8 s in CI and never got ready (no report)."""
    qemu = _fake_qemu(tmp_path, "[    0.801686] acpi PNP0A03:00: fail to add MMCONFIG\n")
    vm = _machine(tmp_path, qemu=str(qemu), boot_timeout=0.5)
    with pytest.raises(BootError) as info:
        vm.start()
    vm.stop()
    assert info.value.timed_out and info.value.failure is None
    assert (tmp_path / "runs.txt").read_text().count("run") == 2
    (record,) = info.value.retries
    assert record.startswith("boot 1: no ready marker within 0.5s; the console's last line: "
                             "[    0.801686] acpi PNP0A03:00: fail to add MMCONFIG (console: ")


# --- secrets, full disks, killed QEMUs (issue 17) ---------------------------------------------

def _newc_entries(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, content) of every entry of concatenated newc archives."""
    out, pos = {}, 0
    while pos < len(data):
        if data[pos:pos + 6] != b"070701":
            pos += 1  # padding between archives
            continue
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = pos + 110
        name = data[name_at:name_at + namesize - 1].decode()
        body = name_at + namesize + (-(name_at + namesize) % 4)
        out[name] = (mode, data[body:body + size])
        pos = body + size + (-(body + size) % 4)
    return out


READY_CONSOLE = "[    1.000000] Linux version 6.12\nKHARNESS:ready uptime=1.0\n"


def test_the_keys_go_in_a_private_initrd_never_on_the_command_line(tmp_path):
    seen_argv = tmp_path / "argv.txt"
    script = tmp_path / "fake-qemu"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {seen_argv}\nexit 1\n")
    script.chmod(0o755)
    vm = _machine(tmp_path, qemu=str(script), boot_retries=0)
    with pytest.raises(BootError):
        vm.start()
    argv = seen_argv.read_text()
    initrd = Path(argv.split("-initrd ", 1)[1].split()[0])
    assert initrd.parent == vm.private and initrd.parent.stat().st_mode & 0o777 == 0o700
    assert initrd.stat().st_mode & 0o777 == 0o600
    data = initrd.read_bytes()
    assert data.startswith(b"shared initrd")  # the shared initrd, then the keys' archive
    entries = _newc_entries(data[len(b"shared initrd"):])
    mode, host_key = entries["etc/kharness/secret/dropbear_ed25519_host_key"]
    assert mode & 0o777 == 0o600 and host_key == vm.host_key_file
    mode, auth = entries["etc/kharness/secret/authorized_keys"]
    assert mode & 0o777 == 0o600 and vm.key.get_base64().encode() in auth
    assert entries["etc/kharness/secret"][0] & 0o777 == 0o700
    import base64
    for secret in (host_key, base64.b64encode(host_key), vm.key.get_base64().encode()):
        assert secret not in argv.encode()
        assert secret not in (tmp_path / "run/qemu.argv").read_bytes()
    private = vm.private
    vm.stop()
    assert not private.exists()  # removed with the machine


def test_redacted_hides_secret_kernel_parameters():
    argv = ["qemu", "-append", "console=ttyS0 kharness.hostkey=SECRET x=1", "-m", "1G"]
    assert redacted(argv)[2] == "console=ttyS0 kharness.hostkey=<redacted> x=1"
    assert redacted(argv)[4] == "1G" and argv[2].endswith("SECRET x=1")


def test_a_console_log_that_cannot_be_written_stops_the_boot_at_once(tmp_path):
    """A full disk (here /dev/full: every write fails with ENOSPC) must not look like a silent
    kernel: the reader thread used to die, and the boot waited for its timeout."""
    qemu = _fake_qemu(tmp_path, "[    0.000000] Linux version 6.1\n" * 50)
    vm = _machine(tmp_path, qemu=str(qemu), boot_timeout=60)
    vm.workdir.mkdir(parents=True)
    vm.console_log.symlink_to("/dev/full")
    called = []
    vm.on_output_error = called.append
    import time
    start = time.monotonic()
    with pytest.raises(OutputError) as info:
        vm.start()
    vm.stop()
    assert time.monotonic() - start < 10
    assert info.value.code == "ENOSPC" and info.value.path == vm.console_log
    assert str(info.value).startswith(f"cannot write {vm.console_log}: ENOSPC")
    assert called == [info.value]
    assert (tmp_path / "runs.txt").read_text().count("run") == 1  # no boot retry for it
    assert len(vm.console.lines) >= 50  # the parser went on reading


def test_a_qemu_killed_while_booting_says_so(tmp_path):
    script = tmp_path / "fake-qemu"
    script.write_text("#!/bin/sh\necho '[    0.1] Linux version 6.1'\nkill -9 $$\n")
    script.chmod(0o755)
    vm = _machine(tmp_path, qemu=str(script))
    with pytest.raises(BootError) as info:
        vm.start()
    vm.stop()
    assert info.value.reason == "QEMU exited (killed by signal 9) before the guest was ready"
    assert vm.exit_description() == "QEMU exited (killed by signal 9)"
