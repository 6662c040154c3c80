"""Backtraces as data (harness/frames.py): real kernel traces, gdb's own output, hand-made chains.

Golden files (tests/golden/backtraces/, see its README): ``memcg-backtraces.txt`` (real gdb and
dmesg memcg traces of a 6.2-era kernel) and ``oom-6.1.dmesg`` / ``oom-6.12.dmesg`` (the memcg OOM
reports of Debian's kernels). Each parse is compared with its ``*.expected.json``. After a
deliberate parser change regenerate them with
``KHARNESS_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_frames.py`` and review the JSON
diff against the text, frame by frame.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from harness.frames import (
    DMESG,
    FTRACE,
    GDB,
    PERF,
    SOURCES,
    Backtrace,
    ChainDiff,
    Frame,
    base_function,
    contains_in_order,
    diff_chains,
    format_backtrace,
    format_diff,
    format_dmesg,
    format_gdb,
    is_entry_function,
    missing_in_order,
    parse_dmesg_trace,
    parse_gdb_backtrace,
    parse_reference,
)

GOLDEN = Path(__file__).parent / "golden" / "backtraces"
REFERENCE = GOLDEN / "memcg-backtraces.txt"
REGEN = os.environ.get("KHARNESS_REGEN_GOLDEN") == "1"


def _reference() -> list[Backtrace]:
    return parse_reference(REFERENCE.read_text())


def _sections() -> list[str]:
    """The raw text of each ``## trace N`` section of the reference file."""
    return [s.strip("\n") for s in re.split(r"^## trace \d+\n", REFERENCE.read_text(),
                                            flags=re.MULTILINE)[1:]]


def _check_golden(actual: dict, path: Path) -> None:
    if REGEN:
        path.write_text(json.dumps(actual, indent=1) + "\n")
        pytest.skip("regenerated")
    assert actual == json.loads(path.read_text())


# --- golden: the real traces ---------------------------------------------------------------------


@pytest.mark.parametrize("number", range(1, 10))
def test_reference_trace_matches_golden(number: int) -> None:
    bt = _reference()[number - 1]
    _check_golden(bt.to_dict(), GOLDEN / f"memcg-backtraces.trace-{number}.expected.json")


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_oom_report_matches_golden(kernel: str) -> None:
    bt = parse_dmesg_trace((GOLDEN / f"oom-{kernel}.dmesg").read_text())
    _check_golden(bt.to_dict(), GOLDEN / f"oom-{kernel}.expected.json")


def test_every_reference_trace_parses() -> None:
    traces = _reference()
    assert len(traces) == 9 == len(_sections())
    assert [bt.source for bt in traces] == ["gdb"] * 5 + ["dmesg"] + ["gdb"] * 3
    assert [bt.frames[0].function for bt in traces] == [
        "mem_cgroup_move_task", "try_charge_memcg", "mem_cgroup_migrate",
        "mem_cgroup_calculate_protection", "memcg_check_events", "mem_cgroup_out_of_memory",
        "mem_cgroup_swapin_charge_folio", "__mem_cgroup_try_charge_swap", "mem_cgroup_swapout",
    ]
    # every "#N" line of the file is one frame, numbered from 0
    for bt, text in zip(traces, _sections()):
        if bt.source == "gdb":
            assert [f.index for f in bt.frames] == list(range(text.count("\n#") + 1))
    # none of these real traces goes past its entry frame (2 and 5 end before it)
    assert [bt.truncated_at for bt in traces] == [None] * 9
    assert [bt.frames[-1].function for bt in traces] == [
        "entry_SYSCALL_64", "do_syscall_64", "asm_exc_page_fault", "asm_exc_page_fault",
        "exc_page_fault", "asm_exc_page_fault", "asm_exc_page_fault", "asm_exc_page_fault",
        "asm_exc_page_fault",
    ]


def test_file_and_line_of_frames() -> None:
    t = _reference()
    charge = t[1].frames[0]
    assert (charge.function, charge.file, charge.line, charge.address) == (
        "try_charge_memcg", "mm/memcontrol.c", 2629, None)
    assert charge.args == ("memcg=memcg@entry=0xffff88812528b000, gfp_mask=gfp_mask@entry=3264, "
                           "nr_pages=nr_pages@entry=1")
    assert t[1].frames[1].address == 0xffffffff8134c6d3
    assert t[0].frames[0].args == ""  # mem_cgroup_move_task (void)
    anon = t[3].find("do_anonymous_page")
    assert anon is not None and (anon.index, anon.file, anon.line) == (11, "mm/memory.c", 4118)
    assert (t[3].frames[10].file, t[3].frames[10].line) == ("include/linux/memcontrol.h", 667)
    entry = t[2].frames[17]
    assert (entry.function, entry.file, entry.line) == (
        "asm_exc_page_fault", "./arch/x86/include/asm/idtentry.h", 570)
    # frame #0's location is where the pc is: inside inlined helpers gdb does not show
    assert (t[2].frames[0].file, t[2].frames[0].line) == ("arch/x86/include/asm/bitops.h", 206)
    assert t[3].frames[0].file == t[6].frames[0].file == "arch/x86/include/asm/jump_label.h"


def test_args_are_kept_as_printed() -> None:
    t = _reference()
    assert t[0].frames[6].args == ('ppos=0xffffc9000005ff08, len=2, buf=0x7fff79847d3a "1\\n", '
                                   'filp=0xffff888124a38900')
    assert "objcgp=<synthetic pointer>" in t[1].frames[3].args
    assert t[1].frames[3].args.endswith("lru=0x1138 <cpu_debug_store+312>, s=0xffff888100005300")
    assert t[6].frames[3].args.startswith("entry=..., entry@entry=..., ")
    assert "put_new_page=0x0 <fixed_percpu_data>" in t[2].frames[8].args


def test_inlined_frames_of_trace_1() -> None:
    """``vfs_write`` calls the static ``new_sync_write``, which calls the ``static inline``
    ``call_write_iter``: both are inlined into vfs_write, a real (exported) function.

    gdb prints that as #5 call_write_iter WITH an address (the pc of the real code) and #6, #7
    WITHOUT: a frame without an address is the one its callee was inlined into. So #5 and #6
    are inlined and #7 is not (see the module docstring and test_gdb_inline_rule_from_gdb).
    """
    bt = _reference()[0]
    by_index = {f.index: f for f in bt.frames}
    assert [by_index[i].address is not None for i in (5, 6, 7, 8)] == [True, False, False, True]
    assert [by_index[i].function for i in (5, 6, 7, 8)] == [
        "call_write_iter", "new_sync_write", "vfs_write", "ksys_write"]
    assert [by_index[i].inlined for i in (5, 6, 7, 8)] == [True, True, False, False]
    assert [f.function for f in bt.frames if f.inlined] == [
        "call_write_iter", "new_sync_write", "do_syscall_x64"]


def test_inlined_frames_match_the_kernel_sources() -> None:
    t = _reference()
    inlined = [{f.function for f in bt.frames if f.inlined} for bt in t]
    # SYSCALL_DEFINE: __do_sys_ and __se_sys_ are inlined into __x64_sys_mkdir, which the
    # syscall table calls through a pointer (never inlined)
    assert {"__do_sys_mkdir", "__se_sys_mkdir", "do_syscall_x64"} <= inlined[1]
    assert {"__x64_sys_mkdir", "do_syscall_64", "kmem_cache_alloc_lru"}.isdisjoint(inlined[1])
    assert {"obj_cgroup_charge_pages", "memcg_slab_pre_alloc_hook", "slab_alloc_node"} <= inlined[1]
    # 6.2 charge path: try_charge and the header's mem_cgroup_charge are inlined, charge_memcg
    # is not (it is on 6.12); exc_page_fault is called from asm, handle_page_fault is inlined
    assert {"try_charge", "mem_cgroup_charge", "do_anonymous_page", "handle_pte_fault",
            "handle_page_fault"} <= inlined[3]
    assert {"charge_memcg", "__mem_cgroup_charge", "__handle_mm_fault", "exc_page_fault",
            "try_charge_memcg", "asm_exc_page_fault"}.isdisjoint(inlined[3])
    assert inlined[5] == set()  # dmesg: the kernel's unwinder sees no inlined frames


def test_gdb_inline_rule_from_gdb() -> None:
    """Real gdb 13 output for ``outer()`` calling always_inline ``inl_a()`` -> ``inl_b()`` ->
    noinline ``leaf()`` (gcc -O2 -g): inl_b has the address, inl_a and outer have none."""
    bt = parse_gdb_backtrace(
        "#0  leaf (x=x@entry=7) at t.c:3\n"
        "#1  0x0000555555555159 in inl_b (x=6) at t.c:4\n"
        "#2  inl_a (x=x@entry=3) at t.c:5\n"
        "#3  outer (x=x@entry=3) at t.c:6\n"
        "#4  0x000055555555504a in main () at t.c:7\n")
    assert [(f.function, f.inlined) for f in bt.frames] == [
        ("leaf", False), ("inl_b", True), ("inl_a", True), ("outer", False), ("main", False)]
    # stopped at a breakpoint in the inlined inl_b itself: frame #0 is inlined too
    bt = parse_gdb_backtrace(
        "#0  inl_b (x=6) at t.c:4\n"
        "#1  inl_a (x=x@entry=3) at t.c:5\n"
        "#2  outer (x=x@entry=3) at t.c:6\n"
        "#3  0x000055555555504a in main () at t.c:7\n")
    assert [f.inlined for f in bt.frames] == [True, True, False, False]


# --- gdb text: wrapping, styling, odd frames, truncation -----------------------------------------

# Real gdb 13 output on a terminal, `set width 50` (styled) and `set width 22` (style off).
WRAPPED_STYLED = (
    "\r#0  \x1b[33mleaf\x1b[m (\x1b[36mbuf\x1b[m=0x555555556004 \"x (y) \\\"z\\\"\\n\", \r\n"
    "    \x1b[36maaaaaaaaaaaa\x1b[m=1, \x1b[36mbbbbbbbbbbbbbbb\x1b[m=2, \r\n"
    "    \x1b[36mcccccccccccccc\x1b[m=3) at \x1b[32mw.c\x1b[m:2\r\n"
    "No locals.\r\n"
    "#1  \x1b[34m0x0000555555555184\x1b[m in \x1b[33mmain\x1b[m () at \x1b[32mw.c\x1b[m:3\r\n"
    "No locals.\r\n")
WRAPPED_NARROW = (
    "#0  leaf (\n"
    "    buf=0x555555556004 \"x (y) \\\"z\\\"\\n\", \n"
    "    aaaaaaaaaaaa=1, \n"
    "    bbbbbbbbbbbbbbb=2, cccccccccccccc=3)\n"
    "    at w.c:2\n"
    "#1  0x0000555555555184 in main () at w.c:3\n")
LEAF_ARGS = ('buf=0x555555556004 "x (y) \\"z\\"\\n", aaaaaaaaaaaa=1, bbbbbbbbbbbbbbb=2, '
             'cccccccccccccc=3')


@pytest.mark.parametrize("text", [WRAPPED_STYLED, WRAPPED_NARROW], ids=["width50", "width22"])
def test_wrapped_gdb_frames(text: str) -> None:
    bt = parse_gdb_backtrace(text)
    assert bt.frames == (
        Frame(0, "leaf", LEAF_ARGS, "w.c", 2),
        Frame(1, "main", "", "w.c", 3, address=0x555555555184),
    )


def test_gdb_frames_without_source_and_odd_values() -> None:
    bt = parse_gdb_backtrace(
        "(gdb) bt\n"
        "#0  0x00007f3a1c2e5a3d in __GI___libc_write (fd=1, buf=0x5581 \"a) b\", nbytes=4)"
        " at ../sysdeps/unix/sysv/linux/write.c:26\n"
        "#1  0x00007f3a1c26bfa5 in _IO_new_file_write () from /lib/x86_64-linux-gnu/libc.so.6\n"
        "#2  0x0000000000401136 in f (c=40 '(', q=39 '\\'', s=<optimized out>)\n"
        "#3  <signal handler called>\n"
        "#4  0x0000000000000000 in ?? ()\n"
        "Backtrace stopped: previous frame inner to this frame (corrupt stack?)\n")
    f = bt.frames
    assert (f[0].function, f[0].args, f[0].file, f[0].line) == (
        "__GI___libc_write", 'fd=1, buf=0x5581 "a) b", nbytes=4',
        "../sysdeps/unix/sysv/linux/write.c", 26)
    assert (f[1].function, f[1].file, f[1].line) == (
        "_IO_new_file_write", "/lib/x86_64-linux-gnu/libc.so.6", None)
    assert (f[2].args, f[2].file, f[2].line) == ("c=40 '(', q=39 '\\'', s=<optimized out>",
                                                 None, None)
    assert (f[3].function, f[3].address, f[3].args) == ("<signal handler called>", None, "")
    assert (f[4].function, f[4].address) == ("??", 0)
    assert not any(x.inlined for x in f)  # a <...> frame has no address and inlines nothing
    assert parse_gdb_backtrace(format_gdb(bt)) == bt


def test_bogus_frames_past_the_entry_are_cut() -> None:
    text = (
        "#0  try_charge_memcg (memcg=0xffff888005fca000, gfp_mask=3264, nr_pages=1)"
        " at mm/memcontrol.c:2629\n"
        "#1  0xffffffff812b3c1e in do_syscall_x64 (nr=<optimized out>, regs=0xffffc90000637f58)"
        " at arch/x86/entry/common.c:50\n"
        "#2  do_syscall_64 (regs=0xffffc90000637f58, nr=<optimized out>)"
        " at arch/x86/entry/common.c:80\n"
        "#3  0xffffffff8200009b in entry_SYSCALL_64 () at arch/x86/entry/entry_64.S:120\n"
        "#4  0x0000000000000000 in fixed_percpu_data ()\n"
        "#5  0x00007ffc3fbc1348 in ?? (a=<error: Cannot access memory at address 0x8>\n"
        "#6  0x0000000000000003 in ?? ()\n"
        "Backtrace stopped: Cannot access memory at address 0x7ffc3fbc1000\n")
    bt = parse_gdb_backtrace(text)
    assert bt.functions() == ["try_charge_memcg", "do_syscall_x64", "do_syscall_64",
                              "entry_SYSCALL_64"]
    assert bt.truncated_at == "entry_SYSCALL_64"
    assert [f.inlined for f in bt.frames] == [False, True, False, False]
    printed = format_gdb(bt)
    assert printed.splitlines()[-1] == ("(frames past entry_SYSCALL_64 dropped: gdb unwinds the "
                                        "user registers there as kernel frames)")
    assert parse_gdb_backtrace(printed) == bt


@pytest.mark.parametrize("name, entry", [
    ("entry_SYSCALL_64", True), ("entry_SYSCALL_64_after_hwframe", True),
    ("asm_exc_page_fault", True), ("asm_sysvec_apic_timer_interrupt", True),
    ("ret_from_fork", True), ("ret_from_fork_asm", True),
    ("exc_page_fault", False), ("do_syscall_64", False), ("entry_text", False),
])
def test_entry_functions(name: str, entry: bool) -> None:
    assert is_entry_function(name) is entry


def test_format_gdb_reproduces_the_reference_text() -> None:
    for bt, text in zip(_reference(), _sections()):
        if bt.source == "gdb":
            assert format_gdb(bt) == text + "\n"
            assert parse_gdb_backtrace(format_gdb(bt)) == bt
    first = format_gdb(_reference()[1]).splitlines()
    assert first[0] == ("#0  try_charge_memcg (memcg=memcg@entry=0xffff88812528b000, "
                        "gfp_mask=gfp_mask@entry=3264, nr_pages=nr_pages@entry=1) "
                        "at mm/memcontrol.c:2629")
    assert first[1].startswith("#1  0xffffffff8134c6d3 in obj_cgroup_charge_pages (nr_pages=1, ")
    assert first[10].startswith("#10 0xffffffff81381f70 in d_alloc (")


def test_json_round_trip() -> None:
    for bt in _reference():
        assert Backtrace.from_dict(json.loads(json.dumps(bt.to_dict()))) == bt
    bt = Backtrace(frames=(Frame(0, "try_charge_memcg", address=0xffffffff8134aa07),),
                   source="gdb", comm="memhog", pid=91, values={"nr_pages": "1"})
    data = bt.to_dict()
    assert data["frames"][0]["address"] == "0xffffffff8134aa07"  # a string: JSON doubles round
    assert (data["comm"], data["pid"], data["values"]) == ("memhog", 91, {"nr_pages": "1"})
    assert Backtrace.from_dict(json.loads(json.dumps(data))) == bt
    assert Frame.from_dict({"index": 2, "function": "f"}) == Frame(2, "f")


def test_pasted_trace_sources_print_like_dmesg() -> None:
    """ftrace and perf backtraces (harness/traces.py) are Backtraces printed as dmesg's."""
    assert SOURCES == (GDB, DMESG, FTRACE, PERF) == ("gdb", "dmesg", "ftrace", "perf")
    ftrace = Backtrace(frames=(Frame(0, "try_charge_memcg"), Frame(1, "__mem_cgroup_charge")),
                       source=FTRACE, comm="memhog", pid=4242)
    perf = Backtrace(frames=(Frame(0, "try_charge_memcg", address=0xffffffff8134a5a1, offset="0x1"),
                             Frame(1, "ext4_da_write_begin", file="ext4", offset="0x1a5")),
                     source=PERF)
    assert format_backtrace(ftrace) == format_dmesg(ftrace) == (
        "Call Trace:\n <TASK>\n try_charge_memcg\n __mem_cgroup_charge\n </TASK>\n")
    assert format_backtrace(perf) == format_dmesg(perf) == (
        "Call Trace:\n <TASK>\n try_charge_memcg+0x1\n ext4_da_write_begin+0x1a5 [ext4]\n"
        " </TASK>\n")
    for bt in (ftrace, perf):
        assert Backtrace.from_dict(json.loads(json.dumps(bt.to_dict()))) == bt
    with pytest.raises(ValueError, match="source must be one of"):
        Backtrace(frames=(), source="systemtap")


def test_parse_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="no gdb backtrace frames.*No stack"):
        parse_gdb_backtrace("No stack.\n")
    with pytest.raises(ValueError, match="#0 has no closed argument list"):
        parse_gdb_backtrace("#0  f (a=1, \n")
    with pytest.raises(ValueError, match="#0: unexpected text after the arguments: 'on cpu 1'"):
        parse_gdb_backtrace("#0  f (a=1) on cpu 1\n")
    with pytest.raises(ValueError, match="#0 follows #1: more than one backtrace"):
        parse_gdb_backtrace("#0  f () at a.c:1\n#1  0x1 in g () at a.c:2\n#0  f () at a.c:1\n")
    with pytest.raises(ValueError, match="no kernel call trace frames"):
        parse_dmesg_trace("[    1.0] Call Trace:\n[    1.1]  <TASK>\n")
    with pytest.raises(ValueError, match="trace 2: gdb frame #1 has no closed argument list"):
        parse_reference("## trace 1\n#0  f () at a.c:1\n\n## trace 2\n#1  f (\n")
    with pytest.raises(ValueError, match="trace 1: no kernel call trace frames"):
        parse_reference("## trace 1\nnothing here\n")
    with pytest.raises(ValueError, match="source must be one of"):
        Backtrace(frames=(), source="lldb")


# --- dmesg ---------------------------------------------------------------------------------------


def test_dmesg_reference_trace() -> None:
    bt = _reference()[5]
    # the excerpt has neither the "CPU: N PID: N Comm:" line nor "Call Trace:"
    assert (bt.source, bt.comm, bt.pid) == ("dmesg", None, None)
    assert len(bt.frames) == 19
    assert [f.function for f in bt.frames if f.unreliable] == [
        "scan_shadow_nodes", "filemap_map_pages", "kvm_sched_clock_read",
        "kvm_read_and_reset_apf_flags"]
    assert "scan_shadow_nodes" not in bt.functions() and len(bt.functions()) == 15
    assert bt.frames[0] == Frame(0, "mem_cgroup_out_of_memory", offset="0x131/0x150")
    assert bt.frames[5] == Frame(5, "scan_shadow_nodes", offset="0x30/0x30", unreliable=True)
    assert contains_in_order(bt, ["try_charge_memcg", "charge_memcg", "__mem_cgroup_charge",
                                  "filemap_fault", "handle_mm_fault", "asm_exc_page_fault"])


def test_dmesg_oom_reports_of_both_kernels() -> None:
    old = parse_dmesg_trace((GOLDEN / "oom-6.1.dmesg").read_text())
    new = parse_dmesg_trace((GOLDEN / "oom-6.12.dmesg").read_text())
    assert (old.comm, old.pid, new.comm, new.pid) == ("tail", 88, "tail", 132)  # 6.12 has UID:
    assert old.functions()[:9] == [
        "dump_stack_lvl", "dump_header", "oom_kill_process.cold", "out_of_memory",
        "mem_cgroup_out_of_memory", "try_charge_memcg", "charge_memcg", "__mem_cgroup_charge",
        "__handle_mm_fault"]
    # the page fault was taken in the kernel (read_zero clearing the user buffer): the RIP line
    # inside the trace is the interrupted function; the user RIP (0033:0x47b6fd) is no frame
    assert old.functions()[12:16] == ["asm_exc_page_fault", "clear_user_erms", "read_zero",
                                      "vfs_read"]
    assert new.find("rep_stos_alternative") == Frame(14, "rep_stos_alternative",
                                                     offset="0x57/0x80")
    assert old.functions()[-1] == new.functions()[-1] == "entry_SYSCALL_64_after_hwframe"
    assert sum(f.unreliable for f in old.frames) == 13
    assert contains_in_order(new, ["mem_cgroup_out_of_memory", "try_charge_memcg",
                                   "__mem_cgroup_charge", "do_anonymous_page"])
    assert contains_in_order(old, ["oom_kill_process", "charge_memcg"])  # .cold is the same
    assert parse_dmesg_trace(format_dmesg(old)).frames == old.frames


def test_dmesg_variants() -> None:
    text = (
        "CPU: 1 PID: 4242 Comm: kworker/1:2 Tainted: G           OE      6.1.0-56-amd64 #1\n"
        "Call Trace:\n"
        " <IRQ>\n"
        " dump_stack_lvl+0x44/0x5c\n"
        " ? 0xffffffffc0206000\n"
        " khcrash_timer+0x16/0x30 [khcrash]\n"
        " call_timer_fn+0x24/0x130\n"
        " </IRQ>\n"
        " <TASK>\n"
        " asm_sysvec_apic_timer_interrupt+0x16/0x20\n"
        "RIP: 0010:default_idle+0xb/0x10\n"
        "RSP: 0018:ffffffff82a03e98 EFLAGS: 00000246\n"
        " default_idle_call+0x2f/0x100\n"
        " </TASK>\n"
        "Call Trace:\n"
        " other_trace+0x1/0x2\n")
    bt = parse_dmesg_trace(text)
    assert (bt.comm, bt.pid) == ("kworker/1:2", 4242)
    assert bt.frames == (
        Frame(0, "dump_stack_lvl", offset="0x44/0x5c"),
        Frame(1, "??", address=0xffffffffc0206000, unreliable=True),
        Frame(2, "khcrash_timer", file="khcrash", offset="0x16/0x30"),
        Frame(3, "call_timer_fn", offset="0x24/0x130"),
        Frame(4, "asm_sysvec_apic_timer_interrupt", offset="0x16/0x20"),
        Frame(5, "default_idle", offset="0xb/0x10"),
        Frame(6, "default_idle_call", offset="0x2f/0x100"),
    )
    assert parse_dmesg_trace(format_dmesg(bt)).frames == bt.frames
    assert format_backtrace(bt) == format_dmesg(bt)
    # printk caller ids, a comm with a space, journal prefixes
    bt = parse_dmesg_trace(
        "[ 12.5][ T311] CPU: 0 UID: 0 PID: 311 Comm: Web Content Not tainted 6.12.117 #1\n"
        "[ 12.5][ T311] Call Trace:\n"
        "[ 12.5][ T311]  try_charge_memcg+0x4b2/0x650\n"
        "Mar 01 12:00:00 host kernel:  ? __pte_offset_map+0x1b/0x180\n")
    assert (bt.comm, bt.pid) == ("Web Content", 311)
    assert [(f.function, f.unreliable) for f in bt.frames] == [
        ("try_charge_memcg", False), ("__pte_offset_map", True)]


# --- checks --------------------------------------------------------------------------------------


def test_contains_and_missing_in_order() -> None:
    bt = _reference()[3]
    path = ["try_charge_memcg", "charge_memcg", "do_anonymous_page", "handle_mm_fault"]
    assert contains_in_order(bt, path)
    assert missing_in_order(bt, path) == []
    assert contains_in_order(bt, ["try_charge"])  # an inlined frame counts
    assert contains_in_order(bt, [])
    assert missing_in_order(bt, ["handle_mm_fault", "try_charge_memcg"]) == ["try_charge_memcg"]
    assert missing_in_order(bt, ["try_charge_memcg", "folio_prealloc", "do_anonymous_page",
                                 "do_pte_missing"]) == ["folio_prealloc", "do_pte_missing"]
    # an unreliable dmesg frame does not count
    assert missing_in_order(_reference()[5], ["scan_shadow_nodes"]) == ["scan_shadow_nodes"]


def test_base_function() -> None:
    assert base_function("oom_kill_process.cold") == "oom_kill_process"
    assert base_function("arch_exit_to_user_mode_prepare.constprop.0") == (
        "arch_exit_to_user_mode_prepare")
    assert base_function("try_charge_memcg") == "try_charge_memcg"
    assert base_function("??") == "??"


# --- comparing chains ----------------------------------------------------------------------------

# Hand-made (golden/backtraces/charge-*.handmade.gdb) after the reference traces and the 6.1/6.12
# OOM reports above: the anon charge path at try_charge_memcg (line numbers and addresses
# illustrative), each with gdb's bogus frames past asm_exc_page_fault. On 6.1, charge_memcg is a
# real function and do_anonymous_page is inlined into __handle_mm_fault; on 6.12 charge_memcg is
# inlined into __mem_cgroup_charge, the path goes through folio_prealloc and alloc_anon_folio
# (both inlined) and do_pte_missing, and do_anonymous_page is a real function.
CHAIN_61 = (GOLDEN / "charge-6.1.handmade.gdb").read_text()
CHAIN_612 = (GOLDEN / "charge-6.12.handmade.gdb").read_text()
OLD, NEW = "6.1.0-56-amd64", "6.12.117+deb12-amd64"


def test_hand_made_chains_parse_as_intended() -> None:
    a, b = parse_gdb_backtrace(CHAIN_61), parse_gdb_backtrace(CHAIN_612)
    assert (a.truncated_at, b.truncated_at) == ("asm_exc_page_fault", "asm_exc_page_fault")
    assert [f.function for f in a.frames if f.inlined] == [
        "try_charge", "mem_cgroup_charge", "do_anonymous_page", "handle_pte_fault",
        "handle_page_fault"]
    assert [f.function for f in b.frames if f.inlined] == [
        "try_charge", "charge_memcg", "mem_cgroup_charge", "folio_prealloc", "alloc_anon_folio",
        "do_pte_missing", "handle_pte_fault", "handle_page_fault"]


def test_diff_chains_61_to_612() -> None:
    a, b = parse_gdb_backtrace(CHAIN_61), parse_gdb_backtrace(CHAIN_612)
    diff = diff_chains(a, b)
    assert [f.function for f in diff.added] == ["folio_prealloc", "alloc_anon_folio",
                                                "do_pte_missing"]
    assert [f.index for f in diff.added] == [5, 6, 8]  # frames of b
    assert diff.removed == ()
    assert [(x.function, x.inlined, y.inlined) for x, y in diff.inlined_changed] == [
        ("charge_memcg", False, True), ("do_anonymous_page", True, False)]
    assert format_diff(diff, OLD, NEW) == (
        "call chain differences 6.1.0-56-amd64 -> 6.12.117+deb12-amd64:\n"
        "  + folio_prealloc            (only in 6.12.117+deb12-amd64)\n"
        "  + alloc_anon_folio          (only in 6.12.117+deb12-amd64)\n"
        "  + do_pte_missing            (only in 6.12.117+deb12-amd64)\n"
        "  ~ charge_memcg              inlined in 6.12.117+deb12-amd64, not in 6.1.0-56-amd64\n"
        "  ~ do_anonymous_page         inlined in 6.1.0-56-amd64, not in 6.12.117+deb12-amd64\n")
    back = diff_chains(b, a)
    assert [f.function for f in back.removed] == ["folio_prealloc", "alloc_anon_folio",
                                                  "do_pte_missing"]
    assert back.added == ()
    assert "  - folio_prealloc            (only in 6.12.117+deb12-amd64)\n" in format_diff(
        back, NEW, OLD)


def test_diff_of_the_real_oom_reports() -> None:
    """dmesg chains: no inlining to compare, and inlining shows as frames present or absent
    (do_anonymous_page is inlined on 6.1, charge_memcg on 6.12)."""
    a = parse_dmesg_trace((GOLDEN / "oom-6.1.dmesg").read_text())
    b = parse_dmesg_trace((GOLDEN / "oom-6.12.dmesg").read_text())
    diff = diff_chains(a, b)
    assert [f.function for f in diff.added] == ["do_anonymous_page", "rep_stos_alternative"]
    assert [f.function for f in diff.removed] == ["charge_memcg", "clear_user_erms"]
    assert diff.inlined_changed == ()  # oom_kill_process.cold and oom_kill_process align
    assert format_diff(diff, "6.1", "6.12") == (
        "call chain differences 6.1 -> 6.12:\n"
        "  + do_anonymous_page         (only in 6.12)\n"
        "  + rep_stos_alternative      (only in 6.12)\n"
        "  - charge_memcg              (only in 6.1)\n"
        "  - clear_user_erms           (only in 6.1)\n")


def test_diff_of_same_chain_and_mixed_sources() -> None:
    t = _reference()
    same = diff_chains(t[3], t[3])
    assert same == ChainDiff((), (), ()) and same.empty
    assert format_diff(same, "a", "b") == (
        "call chain differences a -> b: none (same functions, same inlining)\n")
    # gdb vs dmesg: the dmesg side has no inlined frames, so no inlining change is claimed
    mixed = diff_chains(t[3], t[5])
    assert mixed.inlined_changed == ()
    assert "try_charge" in [f.function for f in mixed.removed]
    long = Frame(0, "a_function_name_longer_than_the_column")
    text = format_diff(ChainDiff((long,), (), ()), "x", "y")
    assert text.splitlines()[1] == "  + a_function_name_longer_than_the_column  (only in y)"
