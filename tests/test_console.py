"""Console parser: golden logs from real kernels, plus focused unit tests.

Regenerate the golden expectations after a deliberate parser change with
``KHARNESS_REGEN_GOLDEN=1 python3 -m pytest tests/test_console.py``, then review the diff of
the ``*.expected.json`` files line by line against the logs (see tests/golden/console/README.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.console import (
    ConsoleEvent,
    ConsoleEventKind,
    ConsoleParser,
    classify,
    clean_line,
    parse_log,
)

K = ConsoleEventKind
GOLDEN = Path(__file__).parent / "golden" / "console"
LOGS = sorted(GOLDEN.glob("*.log"))
REGEN = os.environ.get("KHARNESS_REGEN_GOLDEN") == "1"


def _expected_path(log: Path) -> Path:
    return log.with_name(log.name.removesuffix(".log") + ".expected.json")


def _snapshot(parser: ConsoleParser) -> dict:
    events = []
    for ev in parser.events:
        item: dict = {"lineno": ev.lineno, "kind": ev.kind.value, "name": ev.name,
                      "payload": ev.payload, "time": ev.time}
        if ev.is_failure:
            item["excerpt_ends_with"] = parser.excerpt(ev).splitlines()[-1]
        events.append(item)
    return {"lines": len(parser.lines), "classify": classify(parser.events), "events": events}


# --- golden logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_golden_log(log: Path) -> None:
    actual = _snapshot(parse_log(log.read_bytes()))
    path = _expected_path(log)
    if REGEN:
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
        pytest.skip("regenerated")
    assert actual == json.loads(path.read_text())


def test_every_expectation_has_its_log() -> None:
    assert LOGS, "no golden logs"
    for path in GOLDEN.glob("*.expected.json"):
        assert path.with_name(path.name.replace(".expected.json", ".log")).exists(), path


# What each capture must show, independently of the JSON snapshots: the classification and the
# kinds of events (in order, markers left out).
INTENT: dict[str, tuple[str | None, list[K]]] = {
    "clean-6.1": (None, []),
    "clean-6.12": (None, []),
    "quiet-clean-6.1": (None, []),
    "quiet-clean-6.12": (None, []),
    "noise-6.12": (None, []),
    "panic-6.1": ("panic", [K.PANIC]),
    "panic-6.12": ("panic", [K.PANIC]),
    "initexit-6.1": ("panic", [K.PANIC]),
    "warning-6.1": ("warning", [K.WARNING, K.TAINT]),
    "warning-6.12": ("warning", [K.WARNING, K.TAINT]),
    "quiet-warning-6.12": ("warning", [K.WARNING, K.TAINT]),
    "warnpanic-6.12": ("panic", [K.WARNING, K.TAINT, K.PANIC]),
    "oops-6.1": ("oops", [K.OOPS, K.TAINT]),
    "oops-6.12": ("oops", [K.OOPS, K.TAINT]),
    "quiet-oops-6.1": ("oops", [K.OOPS, K.TAINT]),
    "oopspanic-6.1": ("panic", [K.OOPS, K.TAINT, K.PANIC]),
    "gpf-6.1": ("oops", [K.OOPS, K.TAINT]),
    "gpf-6.12": ("oops", [K.OOPS, K.TAINT]),
    "bug-6.1": ("bug", [K.BUG, K.TAINT]),
    "bug-6.12": ("bug", [K.BUG, K.TAINT]),
    "atomic-6.12": ("bug", [K.BUG, K.TAINT, K.WARNING, K.TAINT]),
    "softlockup-6.12": ("lockup", [K.LOCKUP, K.TAINT]),
    "rcustall-6.1": ("rcu_stall", [K.RCU_STALL, K.TAINT]),
    "rcustall-irq-6.12": ("rcu_stall", [K.RCU_STALL, K.TAINT]),
    "hungtask-6.1": ("hung_task", [K.HUNG_TASK, K.TAINT]),
    "hungtask-6.12": ("hung_task", [K.HUNG_TASK, K.TAINT]),
    "oom-6.1": (None, [K.OOM_KILL]),
    "oom-6.12": (None, [K.OOM_KILL]),
    "quiet-oom-6.1": (None, [K.OOM_KILL]),
}


def test_intent_covers_every_log() -> None:
    assert sorted(INTENT) == sorted(p.stem for p in LOGS)


@pytest.mark.parametrize("name", sorted(INTENT))
def test_golden_intent(name: str) -> None:
    parser = parse_log((GOLDEN / f"{name}.log").read_bytes())
    want_class, want_kinds = INTENT[name]
    assert classify(parser.events) == want_class
    assert [e.kind for e in parser.events if e.kind is not K.MARKER] == want_kinds
    markers = [e for e in parser.events if e.kind is K.MARKER]
    assert markers[0].name == "boot"
    if not name.startswith(("panic", "initexit", "oopspanic", "warnpanic")):
        assert markers[-1].name == "ready"
    assert all(e.time is None for e in markers)
    assert all(e.time is not None for e in parser.events if e.kind is not K.MARKER)


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
@pytest.mark.parametrize("name", ["noise-6.12", "oops-6.12", "atomic-6.12", "clean-6.1"])
def test_golden_chunked(name: str, chunk: int) -> None:
    """Feeding a log in chunks (bytes or str) finds the same events as parsing it whole."""
    data = (GOLDEN / f"{name}.log").read_bytes()
    whole = parse_log(data).events
    for as_text in (False, True):
        parser = ConsoleParser()
        got: list[ConsoleEvent] = []
        for i in range(0, len(data), chunk):
            piece = data[i:i + chunk]
            got += parser.feed(piece.decode("latin-1") if as_text else piece)
        got += parser.flush()
        assert got == whole == parser.events


def test_golden_oom_kill_is_not_a_failure() -> None:
    parser = parse_log((GOLDEN / "oom-6.12.log").read_bytes())
    (kill,) = [e for e in parser.events if e.kind is K.OOM_KILL]
    assert (kill.name, kill.payload) == ("tail", "132")
    assert parser.failures == []


def test_golden_excerpt_ends_at_end_trace() -> None:
    parser = parse_log((GOLDEN / "warning-6.1.log").read_bytes())
    (warn,) = parser.failures
    text = parser.excerpt(warn).splitlines()
    assert text[0].endswith("loading out-of-tree module taints kernel.")
    assert text[3].endswith("------------[ cut here ]------------")
    assert text[4].endswith("khcrash: deliberate warning")  # WARN()'s message comes first
    assert text[5] == warn.line
    assert text[-1].endswith("---[ end trace 0000000000000000 ]---")


def test_golden_excerpt_stops_before_next_report() -> None:
    parser = parse_log((GOLDEN / "atomic-6.12.log").read_bytes())
    bug, warn = parser.failures
    text = parser.excerpt(bug)
    assert "cut here" not in text and "WARNING" not in text
    assert text.splitlines()[-1].endswith("khcrash: 'atomic' done")
    assert parser.excerpt(warn).splitlines()[-1].endswith("---[ end trace 0000000000000000 ]---")


def test_golden_excerpt_panic_end_line() -> None:
    parser = parse_log((GOLDEN / "panic-6.1.log").read_bytes())
    (panic,) = parser.failures
    assert parser.excerpt(panic).splitlines()[-1].endswith(
        "---[ end Kernel panic - not syncing: sysrq triggered crash ]---")
    # a smaller `after` wins when the end comes later
    assert len(parser.excerpt(panic, after=3, before=0).splitlines()) == 4


# --- markers -------------------------------------------------------------------------------------


def _one(line: str, parser: ConsoleParser | None = None) -> list[ConsoleEvent]:
    return (parser or ConsoleParser()).feed_line(line)


def _ts_parser() -> ConsoleParser:
    """A parser that has already seen a timestamped kernel line."""
    parser = ConsoleParser()
    parser.feed_line("[    0.000000] Linux version 6.1.0-56-amd64")
    return parser


def test_marker_plain_and_payload() -> None:
    (ev,) = _one("KHARNESS:ready")
    assert (ev.kind, ev.name, ev.payload, ev.lineno, ev.time) == (K.MARKER, "ready", "", 1, None)
    (ev,) = _one("KHARNESS:hostkey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI  ")
    assert (ev.name, ev.payload) == ("hostkey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI")
    (ev,) = _one("KHARNESS:cgroup v1 memory fail Invalid argument")
    assert (ev.name, ev.payload) == ("cgroup", "v1 memory fail Invalid argument")
    (ev,) = _one("KHARNESS:net.if-up_2 eth0")
    assert (ev.name, ev.payload) == ("net.if-up_2", "eth0")


def test_marker_mid_line_and_several() -> None:
    (ev,) = _one("some shell noise KHARNESS:mid payload after noise")
    assert (ev.name, ev.payload) == ("mid", "payload after noise")
    a, b = _one("KHARNESS:a one KHARNESS:b two")
    assert [(a.name, a.payload), (b.name, b.payload)] == [("a", "one"), ("b", "two")]


def test_marker_glued_to_kernel_line() -> None:
    """Userspace text without a newline, then a kernel line (real: noise-6.12.log)."""
    parser = _ts_parser()
    (ev,) = parser.feed_line("KHARNESS:glued[    1.615937] sysrq: Changing Loglevel")
    assert (ev.kind, ev.name, ev.payload) == (K.MARKER, "glued", "")


def test_marker_invalid_names() -> None:
    for line in ("KHARNESS:", "KHARNESS: ready", "KHARNESS:Ready", "KHARNESS:ready!",
                 "kharness:ready", "KHARNESS ready"):
        assert _one(line) == [], line


def test_kernel_lines_never_produce_markers() -> None:
    parser = _ts_parser()
    for line in ("[    0.050000] Kernel command line: console=ttyS0 KHARNESS:ready",
                 "[    1.000000] audit: comm=\"KHARNESS:ready\"",
                 "[    1.000000]     KHARNESS:ready"):
        assert parser.feed_line(line) == [], line


# --- cleaning ------------------------------------------------------------------------------------


def test_firmware_garbage_is_cleaned() -> None:
    raw = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r"
    assert clean_line(raw) == "SeaBIOS (version 1.16.2-debian-1.16.2-1)"
    raw = "Press Ctrl-B to configure iPXE (PCI 00:03.0)...\r" + " " * 10 + "\r"
    assert clean_line(raw) == "Press Ctrl-B to configure iPXE (PCI 00:03.0)..." + " " * 10
    assert clean_line("\x1b]0;title\x07KHARNESS:x\x1b(B\x00\x7f\x1b") == "KHARNESS:x"
    assert clean_line("a\tb") == "a\tb"


def test_marker_after_escapes_and_cr() -> None:
    (ev,) = _one("\x1b[2J\x1b[0mKHARNESS:ready\r")
    assert (ev.name, ev.line) == ("ready", "KHARNESS:ready")


def test_first_kernel_line_after_bios_text() -> None:
    """'Booting from ROM..' and the first kernel line share a line (every real log)."""
    parser = ConsoleParser()
    parser.feed_line("Booting from ROM..[    0.000000] Linux version 6.12.117+deb12-amd64 (...)")
    # now in timestamp mode: userspace echoes are not kernel reports
    assert parser.feed_line("BUG: userspace echo, not a kernel report") == []


# --- chunked input -------------------------------------------------------------------------------


def test_partial_lines_wait_for_newline() -> None:
    parser = ConsoleParser()
    assert parser.feed("KHARN") == []
    assert parser.feed("ESS:re") == []
    assert parser.feed("ady\r") == []
    (ev,) = parser.feed("\nKHARNESS:next")
    assert (ev.name, ev.lineno) == ("ready", 1)
    (ev,) = parser.flush()
    assert (ev.name, ev.lineno) == ("next", 2)
    assert parser.flush() == []
    assert [e.name for e in parser.events] == ["ready", "next"]


def test_kernel_report_split_across_chunks() -> None:
    parser = _ts_parser()
    assert parser.feed("[   12.000000] Kernel pa") == []
    (ev,) = parser.feed("nic - not syncing: sysrq triggered crash\r\n[   12.1")
    assert (ev.kind, ev.name, ev.time) == (K.PANIC, "sysrq triggered crash", 12.0)


def test_bytes_split_inside_utf8_character() -> None:
    parser = ConsoleParser()
    data = "KHARNESS:note caf\u00e9\n".encode()
    cut = data.index(b"\xc3") + 1
    assert parser.feed(data[:cut]) == []
    (ev,) = parser.feed(data[cut:])
    assert ev.payload == "caf\u00e9"


def test_runaway_line_is_bounded() -> None:
    parser = ConsoleParser()
    parser.max_line = 64
    parser.feed("x" * 200)
    assert len(parser.lines) == 3 and all(len(line) == 64 for line in parser.lines)


def test_several_lines_in_one_chunk() -> None:
    parser = _ts_parser()
    events = parser.feed("KHARNESS:a\n[    1.000000] BUG: scheduling while atomic: x/1/0x2\n"
                         "KHARNESS:b\n")
    assert [(e.kind, e.lineno) for e in events] == [(K.MARKER, 2), (K.BUG, 3), (K.MARKER, 4)]


# --- kernel reports (formats as printed by 6.1/6.12, see the strings in their vmlinux) -----------


def _kernel(*msgs: str) -> list[ConsoleEvent]:
    parser = _ts_parser()
    out: list[ConsoleEvent] = []
    for i, msg in enumerate(msgs):
        out += parser.feed_line(f"[   {10 + i:2d}.000000] {msg}")
    return out


@pytest.mark.parametrize("msg, kind, name", [
    ("Kernel panic - not syncing: Fatal exception", K.PANIC, "Fatal exception"),
    ("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", K.PANIC,
     "VFS: Unable to mount root fs on unknown-block(0,0)"),
    ("BUG: unable to handle page fault for address: ffffc90000a1b000", K.OOPS,
     "unable to handle page fault"),
    ("BUG: kernel NULL pointer dereference, address: 0000000000000008", K.OOPS,
     "kernel NULL pointer dereference"),
    ("Oops: 0000 [#1] PREEMPT SMP NOPTI", K.OOPS, "Oops"),
    ("Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI", K.OOPS, "invalid opcode"),
    ("stack segment: 0000 [#1] PREEMPT SMP NOPTI", K.OOPS, "stack segment"),
    (("general protection fault, probably for non-canonical address 0xdead000000000100: 0000 "
     "[#1] PREEMPT SMP NOPTI"), K.OOPS, "general protection fault"),
    ("Internal error: Oops: 0000000096000005 [#1] PREEMPT SMP", K.OOPS, "Oops"),
    ("kernel BUG at mm/slub.c:435!", K.BUG, "mm/slub.c:435"),
    ("BUG: scheduling while atomic: insmod/129/0x00000002", K.BUG, "scheduling while atomic"),
    ("BUG: sleeping function called from invalid context at mm/slab.h:742", K.BUG,
     "sleeping function called from invalid context"),
    ("BUG: KASAN: slab-out-of-bounds in foo_write+0x4a/0x90", K.BUG, "KASAN: slab-out-of-bounds"),
    ("BUG: KFENCE: use-after-free read in bar+0x1/0x2", K.BUG, "KFENCE: use-after-free"),
    ("BUG: Bad page state in process swapper/0  pfn:1fe3b", K.BUG, "Bad page state"),
    ("BUG kmalloc-64 (Tainted: G    B             ): Redzone overwritten", K.BUG,
     "Redzone overwritten"),
    ("WARNING: CPU: 1 PID: 42 at mm/page_alloc.c:5534 __alloc_pages+0x2b0/0x340", K.WARNING,
     "mm/page_alloc.c:5534"),
    ("WARNING: CPU: 0 PID: 1 at do_one_initcall+0x283/0x320", K.WARNING, "do_one_initcall"),
    ("UBSAN: array-index-out-of-bounds in drivers/foo/bar.c:12:34", K.WARNING,
     "UBSAN: array-index-out-of-bounds"),
    ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:95]", K.LOCKUP, "soft lockup"),
    ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", K.LOCKUP, "hard LOCKUP"),  # 6.1
    ("watchdog: Watchdog detected hard LOCKUP on cpu 1", K.LOCKUP, "hard LOCKUP"),  # 6.12
    ("BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!", K.LOCKUP,
     "workqueue lockup"),
    ("INFO: task kworker/u4:1:57 blocked for more than 122 seconds.", K.HUNG_TASK,
     "kworker/u4:1"),
    ("rcu: INFO: rcu_sched self-detected stall on CPU", K.RCU_STALL, "self-detected stall"),
    ("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", K.RCU_STALL, "detected stalls"),
    ("rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: {", K.RCU_STALL,
     "detected expedited stalls"),
    ("INFO: rcu_tasks detected stalls on tasks:", K.RCU_STALL, "detected stalls"),
    ("INFO: rcu_sched self-detected stall on CPU", K.RCU_STALL, "self-detected stall"),  # old
])
def test_kernel_report_header(msg: str, kind: K, name: str) -> None:
    (ev,) = _kernel(msg)
    assert (ev.kind, ev.name, ev.payload, ev.time) == (kind, name, msg, 10.0)
    assert ev.is_failure
    assert ev.line == f"[   10.000000] {msg}"


@pytest.mark.parametrize("msg, comm, pid", [
    (("Out of memory: Killed process 1234 (stress-ng) total-vm:1048576kB, anon-rss:0kB, "
     "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:2048kB oom_score_adj:0"), "stress-ng", "1234"),
    ("Memory cgroup out of memory: Killed process 88 (tail) total-vm:18384kB, anon-rss:16260kB",
     "tail", "88"),
    ("Out of memory (oom_kill_allocating_task): Killed process 7 (a (b)) total-vm:1kB", "a (b)",
     "7"),
    ("Out of memory: Killed process 9 (kworker/u4:1)", "kworker/u4:1", "9"),
])
def test_oom_kill(msg: str, comm: str, pid: str) -> None:
    (ev,) = _kernel(msg)
    assert (ev.kind, ev.name, ev.payload) == (K.OOM_KILL, comm, pid)
    assert not ev.is_failure


def test_taint_flags_recorded_when_they_change() -> None:
    events = _kernel(
        "CPU: 0 PID: 85 Comm: insmod Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
        "CPU: 0 PID: 85 Comm: insmod Tainted: G           OE      6.1.0-56-amd64 #1  Debian",
        "CPU: 0 UID: 0 PID: 131 Comm: my prog Tainted: G           OE      6.12.117+deb12-amd64",
        "Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE",
        "      Tainted: G        W  OE      6.1.0-56-amd64 #1 Debian 6.1.192-2",
    )
    assert [(e.kind, e.payload, e.lineno) for e in events] == [(K.TAINT, "GOE", 3),
                                                              (K.TAINT, "GWOE", 6)]


def test_die_line_belongs_to_its_header() -> None:
    """BUG: NULL deref ... Oops: [#1] is one oops; kernel BUG at + invalid opcode is one BUG."""
    events = _kernel(
        "BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "#PF: supervisor write access in kernel mode",
        "#PF: error_code(0x0002) - not-present page",
        "PGD 505f067 P4D 505f067 PUD 4fe1067 PMD 0 ",
        "Oops: Oops: 0002 [#1] PREEMPT SMP NOPTI",
        "---[ end trace 0000000000000000 ]---",
        "------------[ cut here ]------------",
        "kernel BUG at fs/inode.c:1763!",
        "invalid opcode: 0000 [#2] PREEMPT SMP NOPTI",
        "---[ end trace 0000000000000000 ]---",
        "Oops: 0000 [#3] PREEMPT SMP NOPTI",
    )
    assert [(e.kind, e.lineno) for e in events] == [(K.OOPS, 2), (K.BUG, 9), (K.OOPS, 12)]


def test_lockdep_warning_needs_its_banner() -> None:
    (ev,) = _kernel("======================================================",
                    "WARNING: possible circular locking dependency detected",
                    "6.1.0 #1 Not tainted",
                    "------------------------------------------------------")
    assert (ev.kind, ev.name) == (K.WARNING, "possible circular locking dependency detected")
    assert _kernel("WARNING: possible circular locking dependency detected") == []


@pytest.mark.parametrize("line", [
    # ordinary boot and runtime lines (from the golden logs and the kernels' strings)
    ("[    0.222000] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks "
    "possible via Spectre v2 BHB attacks!"),
    ("[    0.222000] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed "
    "attacks, data leaks possible!"),
    ("[    0.736701] PCI: Using host bridge windows from ACPI; if necessary, use \"pci=nocrs\" and "
    "report a bug"),
    ("[    1.033811] AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not "
    "a bug."),
    "[    0.100000] x86/cpu: DEBUG: some DEBUG output",
    "[    0.100000] WARNING: BIOS bug: CPU MTRRs don't cover all of memory, losing 4MB of RAM.",
    "[    0.100000] WARNING: Flushing system-wide workqueues will be prohibited in near future.",
    "[    0.100000] WARNING: stack going in the wrong direction? at do_idle+0x1/0x2",
    "[    0.100000] IPv6: BUG: Address fe80::1 on device eth0 is missing its host route.",
    "[    2.626268] INFO: NMI handler (nmi_cpu_backtrace_handler) took too long to run: 3.823 msecs",
    "[   10.862550] \"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.",
    ("[    1.614926] sysrq: HELP : loglevel(0-9) reboot(b) crash(c) terminate-all-tasks(e) "
    "memory-full-oom-kill(f) show-backtrace-all-active-cpus(l)"),
    "[    1.601884] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---",
    "[    1.541179] ---[ end trace 0000000000000000 ]---",
    "[    1.535799] ------------[ cut here ]------------",
    "[    1.616936] NMI backtrace for cpu 1",
    "[    1.507360] tail invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0",
    ("[    1.515161] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
    "oom_memcg=/g,task_memcg=/g,task=tail,pid=88,uid=0"),
    "[    1.617155] CPU: 1 UID: 0 PID: 1 Comm: init Not tainted 6.12.117+deb12-amd64 #1",
    "[    5.538455] rcu: \t0-....: (996 ticks this GP) idle=1af4/1/0x4000000000000000",
    "[    5.539000] rcu: INFO: Stall ended before state dump start",
    "[    1.000000] khcrash: provoking 'oops'",
    "[    1.000000] BUGS: none",
    # userspace output once the kernel has shown its timestamps
    "BUG: userspace echo, not a kernel report",
    "WARNING: CPU: 0 PID: 1 at fake/file.c:1 fake_function+0x0/0x10",
    "Kernel panic - not syncing: userspace echo",
    "Out of memory: Killed process 1 (echo)",
    "INFO: task sh:1 blocked for more than 1 seconds.",
    "userspace-partial-line [    1.614926] sysrq: Changing Loglevel",
])
def test_not_an_event(line: str) -> None:
    assert _ts_parser().feed_line(line) == []


def test_require_timestamp_modes() -> None:
    line = "BUG: scheduling while atomic: a/1/0x2"
    # auto: untimestamped lines count until the kernel has shown a timestamp (printk.time=0)
    auto = ConsoleParser()
    assert [e.kind for e in auto.feed_line(line)] == [K.BUG]
    auto.feed_line("[    0.000000] Linux version 6.1")
    assert auto.feed_line(line) == []
    assert ConsoleParser(require_timestamp=True).feed_line(line) == []
    loose = _ts_parser()
    loose._require_timestamp = False
    assert [e.kind for e in loose.feed_line(line)] == [K.BUG]


def test_printk_caller_id() -> None:
    (ev,) = _ts_parser().feed_line("[    3.000000][    T1] Kernel panic - not syncing: x")
    assert (ev.kind, ev.name, ev.time) == (K.PANIC, "x", 3.0)


# --- classify / failures -------------------------------------------------------------------------


def _ev(kind: K) -> ConsoleEvent:
    return ConsoleEvent(kind, "line", 1)


def test_classify_severity_order() -> None:
    order = [K.PANIC, K.OOPS, K.BUG, K.WARNING, K.LOCKUP, K.HUNG_TASK, K.RCU_STALL]
    for i, kind in enumerate(order):
        events = [_ev(k) for k in reversed(order[i:])] + [_ev(K.OOM_KILL), _ev(K.MARKER)]
        assert classify(events) == kind.value
        assert classify(iter(events)) == kind.value
    assert classify([]) is None
    assert classify([_ev(K.MARKER), _ev(K.OOM_KILL), _ev(K.TAINT)]) is None


def test_failures_excludes_markers_oom_and_taint() -> None:
    parser = _ts_parser()
    parser.feed("KHARNESS:ready\n"
                "[    5.000000] Memory cgroup out of memory: Killed process 8 (x) total-vm:1kB\n"
                "[    5.100000] CPU: 0 PID: 8 Comm: x Tainted: G        W          6.1.0 #1\n"
                "[    5.200000] INFO: task x:8 blocked for more than 5 seconds.\n")
    assert [e.kind for e in parser.events] == [K.MARKER, K.OOM_KILL, K.TAINT, K.HUNG_TASK]
    assert [e.kind for e in parser.failures] == [K.HUNG_TASK]


# --- excerpt -------------------------------------------------------------------------------------


def _numbered(n: int, start: int = 0) -> list[str]:
    return [f"[   {start + i:2d}.000000] line {start + i}" for i in range(n)]


def test_excerpt_window_and_clamping() -> None:
    parser = ConsoleParser()
    parser.feed("\n".join(["[    0.000000] Kernel panic - not syncing: boom", *_numbered(60, 1)])
                + "\n")
    (panic,) = parser.failures
    text = parser.excerpt(panic, after=3, before=5).splitlines()
    assert text[0] == panic.line and len(text) == 4  # clamped at the start of the log
    assert len(parser.excerpt(panic, after=1000).splitlines()) == 61  # and at its end


def test_excerpt_includes_end_line_and_before_context() -> None:
    parser = ConsoleParser()
    lines = [*_numbered(10), "[   20.000000] WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2",
             *_numbered(3, 21), "[   24.000000] ---[ end trace 0000000000000000 ]---",
             *_numbered(5, 25)]
    parser.feed("\n".join(lines) + "\n")
    (warn,) = parser.failures
    text = parser.excerpt(warn, before=2).splitlines()
    assert text[0].endswith("line 8") and text[2] == warn.line
    assert text[-1].endswith("---[ end trace 0000000000000000 ]---")


def test_excerpt_stops_before_next_report() -> None:
    parser = ConsoleParser()
    lines = ["[    1.000000] INFO: task a:1 blocked for more than 5 seconds.", *_numbered(4, 2),
             "[    6.000000] INFO: task b:2 blocked for more than 5 seconds.", *_numbered(2, 7),
             "[    9.000000] ------------[ cut here ]------------",
             "[   10.000000] WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2"]
    parser.feed("\n".join(lines) + "\n")
    first, second, warn = parser.failures
    assert len(parser.excerpt(first, before=0).splitlines()) == 5
    assert parser.excerpt(second, before=0).splitlines()[-1].endswith("line 8")
    assert parser.excerpt(warn, before=1).splitlines()[0].endswith("cut here ]------------")


def test_excerpt_of_event_at_end_of_stream() -> None:
    parser = _ts_parser()
    (ev,) = parser.feed("[    2.000000] Kernel panic - not syncing: late\n")
    assert parser.excerpt(ev) == "[    0.000000] Linux version 6.1.0-56-amd64\n" + ev.line


def test_excerpt_starts_at_the_kernels_lines_not_a_shell_banner() -> None:
    """exec's panic excerpt began with the BusyBox banner (issue 17): the console before the
    report is context only while it is the kernel's."""
    parser = ConsoleParser()
    parser.feed("\nBusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) built-in shell (ash)\n"
                "Enter 'help' for a list of built-in commands.\n\n"
                "kharness# [    3.265971] sysrq: Trigger a crash\n"
                "[    3.266447] Kernel panic - not syncing: sysrq triggered crash\n"
                "[    3.266906] CPU: 1 UID: 0 PID: 174 Comm: sh Not tainted\n")
    (panic,) = parser.failures
    text = parser.excerpt(panic).splitlines()
    assert text[0] == "[    3.265971] sysrq: Trigger a crash"
    assert text[1] == panic.line.strip()
    assert "BusyBox" not in parser.excerpt(panic)
    assert parser.excerpt(panic, before=0).splitlines()[0] == panic.line.strip()
