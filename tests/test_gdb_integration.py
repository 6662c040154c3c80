"""Integration tests for the gdb channel: real Debian kernels in QEMU, real gdb on the gdbstub.

The first run downloads the kernels' -dbg packages (~860 MB for 6.1, ~1030 MB for 6.12; the
vmlinux with DWARF is kept in the kernel cache) and builds gdb's index of each (~15 s, kept in
$KHARNESS_CACHE/gdb-index). Like tests/test_integration.py these fail, not skip, when gdb, QEMU
or a kernel is missing; KHARNESS_SKIP_INTEGRATION=1 leaves them out on purpose.

Measured times are printed (dbg fetch first and cached, gdb symbol load, capture start to first
hit), also without `-s`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import frames, images, kernels
from harness.capture import BreakpointSpec, Hit, start_capture
from harness.channels import CommandResult
from harness.channels.gdb import GdbChannel, GdbError, gdb_pids
from harness.channels.gdbmi import mi_quote, parse_mi_line
from harness.events import EventBus
from harness.machine import Machine, MachineConfig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

CGROUP = "/sys/fs/cgroup/t"
# The anonymous folio's charge (not the page tables' kmem charges that come first).
FOLIO_CHARGE = ("__mem_cgroup_charge", "do_anonymous_page")
WORKLOAD = f"sh -c 'echo $$ > {CGROUP}/cgroup.procs; exec memhog 64'"  # 64M in 32M: OOM kill


@pytest.fixture(scope="module")
def bus() -> EventBus:
    return EventBus()


@pytest.fixture(scope="module")
def report(request):
    """Print measurements even when pytest captures output."""
    capman = request.config.pluginmanager.getplugin("capturemanager")

    def emit(line: str) -> None:
        with capman.global_and_fixture_disabled():
            print(f"\n[gdb timing] {line}", flush=True)
    return emit


def _debug_kernel(spec: str, bus: EventBus, report) -> kernels.Kernel:
    kernel = kernels.resolve(spec, bus)
    start = time.monotonic()
    first = kernels.fetch_debug(kernel, bus)
    first_s = time.monotonic() - start
    start = time.monotonic()
    again = kernels.fetch_debug(kernel, bus)
    cached_s = time.monotonic() - start
    assert first == again == kernel.debug_vmlinux
    report(f"{kernel.release}: dbg fetch {first_s:.1f}s "
           f"({'cached before' if first_s < 1 else 'downloaded'}), cached call {cached_s:.3f}s, "
           f"{first.stat().st_size / 2**20:.0f} MiB")
    return kernel


@pytest.fixture(scope="module")
def k61(bus, report) -> kernels.Kernel:
    return _debug_kernel("debian:6.1", bus, report)


@pytest.fixture(scope="module")
def k612(bus, report) -> kernels.Kernel:
    return _debug_kernel("debian:6.12", bus, report)


@contextmanager
def gdb_machine(kernel: kernels.Kernel, bus: EventBus) -> Iterator[Machine]:
    """A v2 machine with the gdbstub and a cgroup t with memory.max=32M."""
    assert shutil.which("gdb"), "gdb is not installed: run `kharness setup`"
    config = MachineConfig(kernel, initrd=images.initrd_for(kernel, bus), hierarchy="v2",
                           gdb=True)
    with Machine(config, bus) as vm:
        assert vm.gdb_port and "nokaslr" in vm.kernel_cmdline()
        assert vm.ssh is not None
        vm.ssh.run(f"mkdir {CGROUP}; echo 32M > {CGROUP}/memory.max", check=True)
        yield vm
    assert not vm.alive()


def in_background(vm: Machine, command: str) -> tuple[threading.Thread, dict]:
    """Run a command over SSH in a thread (the capture waits meanwhile)."""
    out: dict[str, CommandResult | BaseException] = {}

    def run() -> None:
        try:
            assert vm.ssh is not None
            out["result"] = vm.ssh.run(command, timeout=300)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def capture_during(gdb: GdbChannel, vm: Machine, specs: list[BreakpointSpec],
                   expressions: list[str], report, label: str, count: int = 1,
                   timeout: float = 120.0) -> list[Hit]:
    session = start_capture(gdb, specs, count=count, expressions=expressions, timeout=timeout)
    thread, out = in_background(vm, WORKLOAD)
    hits = session.wait()
    thread.join(300)
    assert "error" not in out, out.get("error")
    assert not session.errors, session.errors
    assert not session.timed_out, f"no hit within {timeout}s: {session}"
    report(f"{label}: capture start to first hit {session.first_hit_seconds:.2f}s")
    return hits


def assert_alive_without_gdb(vm: Machine) -> None:
    assert not gdb_pids(parent=os.getpid()), "gdb left running"
    assert vm.ssh is not None
    r = vm.ssh.run("echo alive", timeout=30)
    assert r.stdout == "alive\n"


def assert_charge_path(hit: Hit) -> frames.Backtrace:
    bt = hit.backtrace
    assert bt is not None, hit.raw_bt
    assert hit.raw_bt.startswith("#0  try_charge_memcg ("), hit.raw_bt
    top = bt.frames[0]
    assert top.function == "try_charge_memcg" and top.file == "mm/memcontrol.c", hit.raw_bt
    assert frames.contains_in_order(bt, ["try_charge_memcg", "do_anonymous_page",
                                         "handle_mm_fault"]), hit.raw_bt
    assert hit.comm == "memhog" and bt.comm == "memhog"
    assert isinstance(hit.pid, int) and hit.pid > 1
    assert hit.values["nr_pages"].isdigit(), hit.values  # printed, not an error
    assert bt.truncated_at == "asm_exc_page_fault"  # gdb's bogus user frames dropped
    return bt


# --- 6.1 ---------------------------------------------------------------------------------------

def test_charge_path_on_61(k61, bus, report):
    with gdb_machine(k61, bus) as vm:
        with GdbChannel(k61.debug_vmlinux, vm.gdb_port, bus=bus) as gdb:
            report(f"{k61.release}: gdb symbol load {gdb.load_seconds:.1f}s, "
                   f"attach {gdb.attach_seconds:.2f}s")
            assert gdb.function_exists("mem_cgroup_move_task")  # v1 memcg, 6.1 only
            assert gdb.function_exists("try_charge_memcg")
            assert gdb.function_exists("mm/memcontrol.c:2632")
            assert not gdb.function_exists("no_such_function_kharness")
            # memhog's first charges are exec's and the fault's page tables: ask for the folio
            spec = BreakpointSpec("try_charge_memcg", comm="memhog", callers=FOLIO_CHARGE)
            hits = capture_during(gdb, vm, [spec], ["nr_pages"], report, k61.release)
            assert len(hits) == 1 and hits[0].breakpoint == spec
            bt = assert_charge_path(hits[0])
            assert bt.frames[0].line is not None
            assert "try_charge_memcg at mm/memcontrol.c:" in hits[0].location
            # 6.1: charge_memcg and __mem_cgroup_charge are frames of their own
            assert frames.contains_in_order(bt, ["charge_memcg", "__mem_cgroup_charge"])
        assert_alive_without_gdb(vm)


def test_capture_is_bounded_and_never_hit_is_reported(k61, bus, report):
    with gdb_machine(k61, bus) as vm, GdbChannel(k61.debug_vmlinux, vm.gdb_port,
                                                 bus=bus) as gdb:
        # No filter: try_charge_memcg fires thousands of times; 3 hits, then it is deleted.
        session = start_capture(gdb, [BreakpointSpec("try_charge_memcg")], count=3, timeout=120)
        thread, _ = in_background(vm, WORKLOAD)
        hits = session.wait()
        thread.join(300)
        assert len(hits) == 3 and not session.timed_out, session
        assert [h.elapsed for h in hits] == sorted(h.elapsed for h in hits)
        assert gdb.command("-break-list").results["BreakpointTable"]["body"] == []
        # A breakpoint that never hits: the deadline ends the capture and says which. (Not on
        # a hot function: a condition that never matches still stops the guest on every call,
        # ~6 ms each, and memhog makes thousands of charges.)
        never = BreakpointSpec("mem_cgroup_out_of_memory", comm="no-such-comm")
        session = start_capture(gdb, [never, BreakpointSpec("try_charge_memcg", comm="memhog")],
                                timeout=20)
        thread, _ = in_background(vm, WORKLOAD)
        hits = session.wait()
        thread.join(300)
        assert session.timed_out
        assert session.missed == [never]
        assert [h.breakpoint.location for h in hits] == ["try_charge_memcg"]
        assert gdb.command("-break-list").results["BreakpointTable"]["body"] == []
        # An unknown location is an error, and the guest runs on.
        with pytest.raises(GdbError, match="no_such_function_kharness"):
            start_capture(gdb, [BreakpointSpec("no_such_function_kharness")])
        assert vm.ssh is not None and vm.ssh.run("echo ok", timeout=30).stdout == "ok\n"


def test_exception_or_dead_gdb_leaves_the_guest_running(k61, bus):
    with gdb_machine(k61, bus) as vm:
        # An exception while a capture waits, breakpoints set: they go, the guest runs.
        with pytest.raises(RuntimeError, match="boom"), \
                GdbChannel(k61.debug_vmlinux, vm.gdb_port, bus=bus) as gdb:
            session = start_capture(gdb, [BreakpointSpec("try_charge_memcg", comm="memhog")],
                                    timeout=300)
            raise RuntimeError("boom")
        assert session.done and session.cancelled
        assert_alive_without_gdb(vm)
        # Nothing stops memhog now: it runs into the limit and is OOM-killed at full speed.
        assert vm.ssh is not None
        r = vm.ssh.run(WORKLOAD, timeout=60)
        assert not r.timed_out
        # gdb killed while the guest is stopped: QEMU keeps it paused; close() resumes it.
        gdb = GdbChannel(k61.debug_vmlinux, vm.gdb_port, bus=bus)
        gdb.start()
        with gdb._held():
            gdb.interrupt()
        assert gdb.proc is not None
        os.kill(gdb.proc.pid, signal.SIGKILL)
        gdb.close()
        assert_alive_without_gdb(vm)


def test_killed_harness_leaves_no_gdb_or_qemu(k61):
    """SIGKILL on the process that owns the machine and gdb: setpriv's parent-death signal
    takes both down."""
    script = textwrap.dedent(f"""
        import sys
        from harness import images, kernels
        from harness.events import EventBus
        from harness.machine import Machine, MachineConfig
        from harness.channels.gdb import GdbChannel
        bus = EventBus()
        k = kernels.resolve({k61.spec!r}, bus, fetch=False)
        cfg = MachineConfig(k, initrd=images.initrd_for(k, bus), gdb=True)
        with Machine(cfg, bus) as vm, GdbChannel(k.debug_vmlinux, vm.gdb_port) as gdb:
            print("READY", vm.proc.pid, gdb.proc.pid, flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
        # The ids are setpriv's, which exec'd qemu and gdb: the same processes.
        qemu_pid, gdb_pid = (int(x) for x in line.split()[1:])
        assert Path(f"/proc/{gdb_pid}").exists() and Path(f"/proc/{qemu_pid}").exists()
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(p) for p in (qemu_pid, gdb_pid)):
        time.sleep(0.1)
    assert not _running(gdb_pid), "gdb survived its harness"
    assert not _running(qemu_pid), "qemu survived its harness"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- 6.12 --------------------------------------------------------------------------------------

def test_charge_and_oom_paths_on_612(k612, bus, report):
    with gdb_machine(k612, bus) as vm:
        with GdbChannel(k612.debug_vmlinux, vm.gdb_port, bus=bus) as gdb:
            report(f"{k612.release}: gdb symbol load {gdb.load_seconds:.1f}s, "
                   f"attach {gdb.attach_seconds:.2f}s")
            assert not gdb.function_exists("mem_cgroup_move_task")  # no CONFIG_MEMCG_V1
            assert gdb.function_exists("charge_memcg")  # inlined everywhere, still breakable
            spec = BreakpointSpec("try_charge_memcg", comm="memhog", callers=FOLIO_CHARGE)
            hits = capture_during(gdb, vm, [spec], ["nr_pages", "memcg->memory.usage"], report,
                                  f"{k612.release} charge")
            bt = assert_charge_path(hits[0])
            # 6.12: try_charge sits in mm/memcontrol-v1.h, charge_memcg is inlined, the fault
            # path goes through alloc_anon_folio
            try_charge = bt.find("try_charge")
            assert try_charge is not None and try_charge.file == "mm/memcontrol-v1.h"
            charge = bt.find("charge_memcg")
            assert charge is not None and charge.inlined
            assert frames.contains_in_order(bt, ["alloc_anon_folio", "do_anonymous_page"])
            assert "counter" in hits[0].values["memcg->memory.usage"]
            # The memcg OOM, reached from try_charge_memcg.
            oom = BreakpointSpec("mem_cgroup_out_of_memory", comm="memhog", cgroup=CGROUP)
            hits = capture_during(gdb, vm, [oom], ["memcg->memory.max", "nr_pages"], report,
                                  f"{k612.release} oom")
            hit = hits[0]
            assert hit.backtrace is not None, hit.raw_bt
            assert hit.backtrace.frames[0].function == "mem_cgroup_out_of_memory"
            assert frames.contains_in_order(
                hit.backtrace, ["mem_cgroup_out_of_memory", "try_charge_memcg",
                                "handle_mm_fault"]), hit.raw_bt
            assert hit.values["nr_pages"].startswith("<error: No symbol"), hit.values
            assert hit.values["memcg->memory.max"] == "8192"  # 32M in pages
        assert_alive_without_gdb(vm)


# --- the parts that need no machine ----------------------------------------------------------------

def test_kernel_fetch_debug_cli(k61):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "kernel", "fetch", "--debug",
                           "-q", k61.spec], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\t")[-1].strip() == str(k61.debug_vmlinux)


def test_path_kernel_debug_symbols(k61, bus, tmp_path, monkeypatch):
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path / "cache"))
    assert k61.image is not None
    bz = kernels.resolve(f"path:{k61.image}", bus)
    assert bz.debug_vmlinux is None
    with pytest.raises(kernels.DebugSymbolsError, match="no debug info"):
        kernels.fetch_debug(bz, bus)
    elf = kernels.resolve(f"path:{k61.debug_vmlinux}", bus)
    assert kernels.fetch_debug(elf, bus) == elf.debug_vmlinux == k61.debug_vmlinux


def test_mi_records():
    rec = parse_mi_line('12^done,bkpt={number="2",locations=[{number="2.1",func="f"}]}')
    assert (rec.kind, rec.token, rec.cls) == ("result", 12, "done")
    assert rec.results["bkpt"]["locations"][0]["func"] == "f"
    rec = parse_mi_line('*stopped,reason="breakpoint-hit",bkptno="3",frame={args=[]},'
                        'thread-id="1"')
    assert (rec.kind, rec.results["bkptno"], rec.results["frame"]) == ("exec", "3",
                                                                      {"args": []})
    assert parse_mi_line('~"#0  f (s=\\"a\\\\b\\") at x.c:1\\n"').text == '#0  f (s="a\\b") at x.c:1\n'
    assert parse_mi_line('~"caf\\303\\251\\t"').text == "café\t"
    assert parse_mi_line("warning: not MI").kind == "other"
    assert parse_mi_line("(gdb) ").kind == "prompt"
    assert mi_quote('$_streq(x, "a\\b")') == '"$_streq(x, \\"a\\\\b\\")"'
