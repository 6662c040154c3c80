"""Pasted traces (harness/traces.py): every format, the first trace of several, noise around it.

Test data: the real memcg traces of ``shared/reference/memcg-backtraces.txt``; the real console
logs of Debian's 6.1 and 6.12 kernels in tests/golden/console/; and, in tests/traces/, a v1 and a
v2 memcg OOM report (written after what 6.1 prints, tests/golden/console/oom-6.1.log), a WARNING
report, function_graph and kprobe stacktrace output of ftrace, and ``perf script`` call chains.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from harness import frames
from harness.frames import Backtrace, Frame, parse_reference
from harness.traces import (
    DMESG,
    FORMATS,
    FTRACE,
    GDB,
    OOM,
    PERF,
    OomReport,
    PastedTrace,
    TraceFormatError,
    detect_format,
    parse_trace,
)

TESTS = Path(__file__).resolve().parent
TRACES = TESTS / "traces"
CONSOLE = TESTS / "golden" / "console"
_REFERENCE = "shared/reference/memcg-backtraces.txt"


def _reference_path() -> Path:
    """The shared reference file: next to the checkout (../shared), else above it, else the
    repository's copy of it (tests/golden/backtraces/, identical)."""
    for parent in TESTS.parents:
        if (parent / _REFERENCE).is_file():
            return parent / _REFERENCE
    copy = TESTS / "golden" / "backtraces" / "memcg-backtraces.txt"
    if copy.is_file():
        return copy
    pytest.skip(f"{_REFERENCE} not found above {TESTS}")


def _sections() -> list[str]:
    """The raw text of each ``## trace N`` section, as frames.parse_reference splits them."""
    return re.split(r"^## trace \d+\s*$", _reference_path().read_text(), flags=re.MULTILINE)[1:]


def _read(name: str) -> str:
    return (TRACES / name).read_text()


def _functions(trace: PastedTrace) -> list[str]:
    return [f.function for f in trace.backtrace.frames]


# --- the reference traces ------------------------------------------------------------------------

REFERENCE = {  # trace N: format, frame #0, last frame
    1: (GDB, "mem_cgroup_move_task", "entry_SYSCALL_64"),
    2: (GDB, "try_charge_memcg", "do_syscall_64"),
    3: (GDB, "mem_cgroup_migrate", "asm_exc_page_fault"),
    4: (GDB, "mem_cgroup_calculate_protection", "asm_exc_page_fault"),
    5: (GDB, "memcg_check_events", "exc_page_fault"),
    6: (DMESG, "mem_cgroup_out_of_memory", "asm_exc_page_fault"),
    7: (GDB, "mem_cgroup_swapin_charge_folio", "asm_exc_page_fault"),
    8: (GDB, "__mem_cgroup_try_charge_swap", "asm_exc_page_fault"),
    9: (GDB, "mem_cgroup_swapout", "asm_exc_page_fault"),
}


@pytest.mark.parametrize("number", sorted(REFERENCE))
def test_reference_traces(number: int) -> None:
    fmt, first, last = REFERENCE[number]
    text = _sections()[number - 1]
    trace = parse_trace(text, name=f"trace {number}")
    assert detect_format(text) == trace.format == fmt
    assert (trace.backtrace.frames[0].function, trace.backtrace.frames[-1].function) == (
        first, last)
    # the same Backtrace frames.py makes of it
    assert trace.backtrace == parse_reference(_reference_path().read_text())[number - 1]
    assert trace.oom is None and trace.header is None


def test_a_dmesg_oom_trace_without_the_oom_killer_line_is_dmesg() -> None:
    trace = parse_trace(_sections()[5])
    assert (trace.format, trace.oom) == (DMESG, None)
    assert "mem_cgroup_out_of_memory" in trace.backtrace.functions()
    # the same with the report's first line cut off
    lines = _read("oom-v2.txt").splitlines()
    cut = "\n".join(ln for ln in lines if "invoked oom-killer" not in ln)
    trace = parse_trace(cut)
    assert (trace.format, trace.oom, trace.header) == (DMESG, None, None)
    assert trace.backtrace.functions()[4] == "mem_cgroup_out_of_memory"


# --- OOM-killer reports --------------------------------------------------------------------------

MiB = 1 << 20

OOM_CHAIN_61 = [
    "dump_stack_lvl", "dump_header", "oom_kill_process.cold", "out_of_memory",
    "mem_cgroup_out_of_memory", "try_charge_memcg", "charge_memcg", "__mem_cgroup_charge"]


def test_oom_report_cgroup_v2() -> None:
    trace = parse_trace(_read("oom-v2.txt"), name="oom-v2.txt")
    assert trace.format == OOM
    assert trace.header == ("memhog invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
                            "oom_score_adj=0")
    assert trace.oom == OomReport(
        comm="memhog", gfp_mask="0xcc0(GFP_KERNEL)", order=0, oom_score_adj=0,
        memory_usage=32 * MiB, memory_limit=32 * MiB, memory_failcnt=12,
        memsw_usage=None, memsw_limit=None,
        swap_usage=0, swap_limit=None,  # "limit 9007199254740988kB": swap.max is max
        kmem_usage=None, kmem_limit=None,
        memcg="/kh/bt", constraint="CONSTRAINT_MEMCG", oom_memcg="/kh/bt",
        killed_pid=4242, killed_comm="memhog")
    assert trace.oom.hierarchy == "v2"
    bt = trace.backtrace
    assert (bt.source, bt.comm, bt.pid) == (frames.DMESG, "memhog", 4242)
    assert bt.functions() == OOM_CHAIN_61 + [
        "__handle_mm_fault", "handle_mm_fault", "do_user_addr_fault", "exc_page_fault",
        "asm_exc_page_fault"]  # the user RIP (0033:0x401176) is no frame
    assert bt.frames[4] == Frame(4, "mem_cgroup_out_of_memory", offset="0x134/0x150")


def test_oom_report_cgroup_v1() -> None:
    trace = parse_trace(_read("oom-v1.txt"), name="oom-v1.txt")
    assert trace.format == OOM
    assert trace.oom == OomReport(
        comm="memhog", gfp_mask="0x1100cca(GFP_HIGHUSER_MOVABLE)", order=0, oom_score_adj=500,
        memory_usage=64 * MiB, memory_limit=64 * MiB, memory_failcnt=147,
        memsw_usage=96 * MiB, memsw_limit=96 * MiB,  # memory+swap: memory.memsw.limit_in_bytes
        swap_usage=None, swap_limit=None,
        kmem_usage=1124 * 1024, kmem_limit=None,
        memcg="/kh/v1", constraint="CONSTRAINT_MEMCG", oom_memcg="/kh/v1",
        killed_pid=412, killed_comm="memhog")
    assert trace.oom.hierarchy == "v1"
    bt = trace.backtrace
    assert (bt.comm, bt.pid) == ("memhog", 412)
    assert bt.functions()[:12] == OOM_CHAIN_61 + [
        "__read_swap_cache_async", "swap_cluster_readahead", "swapin_readahead", "do_swap_page"]
    assert [f.function for f in bt.frames if f.unreliable] == ["__pte_offset_map"]


@pytest.mark.parametrize("kernel,pid", [("6.1", 88), ("6.12", 132)])
def test_oom_report_in_a_whole_console_log(kernel: str, pid: int) -> None:
    """Debian's kernels under QEMU, boot messages and all (tests/golden/console/)."""
    trace = parse_trace((CONSOLE / f"oom-{kernel}.log").read_text())
    assert trace.format == OOM
    assert trace.oom == OomReport(
        comm="tail", gfp_mask="0xcc0(GFP_KERNEL)", order=0, oom_score_adj=0,
        memory_usage=16 * MiB, memory_limit=16 * MiB, memory_failcnt=trace.oom.memory_failcnt,
        swap_usage=0, memcg="/g", constraint="CONSTRAINT_MEMCG", oom_memcg="/g",
        killed_pid=pid, killed_comm="tail")
    assert trace.backtrace.functions()[4:6] == ["mem_cgroup_out_of_memory", "try_charge_memcg"]
    assert (trace.backtrace.comm, trace.backtrace.pid) == ("tail", pid)


def _oom(*lines: str) -> str:
    return "\n".join([
        ("[   9.1] a.out invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), "
         "order=2, oom_score_adj=-17"),
        "[   9.1] CPU: 0 PID: 7 Comm: a.out Not tainted 6.1.0 #1",
        "[   9.1] Call Trace:",
        "[   9.1]  dump_stack_lvl+0x44/0x5c",
        "[   9.1]  </TASK>",
        *lines])


def test_oom_limits_unlimited_and_not() -> None:
    oom = parse_trace(_oom(
        "[   9.2] memory: usage 9007199254736000kB, limit 9007199254736892kB, failcnt 0",
        "[   9.2] memory+swap: usage 1kB, limit 9007199254740928kB, failcnt 0",  # 64 KiB pages
        "[   9.2] kmem: usage 0kB, limit 9007199254736891kB, failcnt 0",
    )).oom
    assert oom is not None
    assert (oom.comm, oom.gfp_mask, oom.order, oom.oom_score_adj) == (
        "a.out", "0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)", 2, -17)
    assert oom.memory_usage == 9007199254736000 * 1024
    assert oom.memory_limit is None and oom.memsw_limit is None  # at or above PAGE_COUNTER_MAX-ish
    assert oom.kmem_limit == 9007199254736891 * 1024  # just below: a (huge) limit
    assert oom.hierarchy == "v1"


def test_oom_report_excerpts_and_global_ooms() -> None:
    oom = parse_trace(_oom()).oom  # the counters lost from the paste
    assert oom == OomReport(comm="a.out", gfp_mask="0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)",
                            order=2, oom_score_adj=-17)
    assert oom.hierarchy is None
    oom = parse_trace(_oom(
        "[   9.3] oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,"
        "global_oom,task_memcg=/user.slice,task=a.out,pid=7,uid=1000",
        "[   9.3] Out of memory: Killed process 7 (a.out) total-vm:8000kB, anon-rss:4000kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:40kB oom_score_adj:-17",
    )).oom
    assert (oom.constraint, oom.oom_memcg, oom.killed_pid, oom.killed_comm, oom.memcg) == (
        "CONSTRAINT_NONE", None, 7, "a.out", None)


def test_the_first_of_several_oom_reports() -> None:
    v2, v1 = _read("oom-v2.txt"), _read("oom-v1.txt")
    trace = parse_trace(v1 + "\n" + v2)
    assert trace.oom == parse_trace(v1).oom and trace.backtrace == parse_trace(v1).backtrace
    # a report cut before its end does not borrow the next report's figures
    head = "\n".join(v1.splitlines()[:40])
    assert parse_trace(head + "\n" + v2).oom == parse_trace(head).oom
    assert parse_trace(head).oom.killed_pid is None


def test_an_oom_report_without_call_trace_is_an_error() -> None:
    text = "\n".join(ln for ln in _read("oom-v2.txt").splitlines() if "+0x" not in ln)
    with pytest.raises(TraceFormatError, match=r"the oom trace in oom\.txt cannot be read: "
                                               r"the report has no Call Trace") as err:
        parse_trace(text, name="oom.txt")
    assert (err.value.name, err.value.format) == ("oom.txt", OOM)


# --- WARNING, BUG and other reports --------------------------------------------------------------


def test_warning_report() -> None:
    trace = parse_trace(_read("warning.txt"), name="warning.txt")
    assert trace.format == DMESG
    assert trace.header == ("WARNING: CPU: 1 PID: 99 at mm/page_counter.c:56 "
                            "page_counter_cancel+0x2d/0x40")
    bt = trace.backtrace
    assert (bt.comm, bt.pid) == ("memhog", 99)
    # the warning's function is printed only in "RIP: 0010:": it becomes frame #0
    assert bt.frames[0] == Frame(0, "page_counter_cancel", offset="0x2d/0x40")
    assert bt.functions() == [
        "page_counter_cancel", "page_counter_uncharge", "uncharge_batch",
        "__mem_cgroup_uncharge_list", "release_pages", "tlb_flush_mmu", "unmap_page_range",
        "unmap_vmas", "exit_mmap", "mmput", "do_exit", "do_group_exit", "__x64_sys_exit_group",
        "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
    assert bt.frames[5] == Frame(5, "kmem_cache_free", offset="0x15/0x310", unreliable=True)
    assert [f.index for f in bt.frames] == list(range(len(bt.frames)))


@pytest.mark.parametrize("log,header,pid", [
    ("warning-6.1", ("WARNING: CPU: 0 PID: 85 at /tmp/console-golden/mod/6.1.0-56-amd64/"
                     "khcrash.c:23 khcrash_init+0x58/0x1000 [khcrash]"), 85),
    ("bug-6.12", "kernel BUG at /tmp/console-golden/mod/6.12.117+deb12-amd64/khcrash.c:29!", 130),
    ("oops-6.1", "BUG: kernel NULL pointer dereference, address: 0000000000000000", 85),
    ("softlockup-6.12", "watchdog: BUG: soft lockup - CPU#0 stuck for 9s! [insmod:133]", 133),
])
def test_reports_in_whole_console_logs(log: str, header: str, pid: int) -> None:
    trace = parse_trace((CONSOLE / f"{log}.log").read_text(), name=log)
    assert (trace.format, trace.header, trace.backtrace.pid) == (DMESG, header, pid)
    first = trace.backtrace.frames[0]
    assert (first.function, first.file) == ("khcrash_init", "khcrash")  # from the RIP line
    assert trace.backtrace.functions()[1] == "do_one_initcall"


def test_a_program_echoing_a_report_is_not_its_header() -> None:
    """noise-6.12.log: init echoes "BUG: ..." and "WARNING: ..." (no timestamps) just before a
    real sysrq NMI backtrace; the header is the kernel's line."""
    trace = parse_trace((CONSOLE / "noise-6.12.log").read_text())
    assert (trace.format, trace.header) == (DMESG, "NMI backtrace for cpu 0")
    assert trace.backtrace.functions()[:2] == ["dump_stack_lvl", "nmi_cpu_backtrace"]


def test_dump_stack_has_no_faulting_frame() -> None:
    """A RIP line of another report above the CPU line is not this trace's frame #0."""
    text = ("RIP: 0010:other_function+0x1/0x2\n"
            "CPU: 0 PID: 5 Comm: sh Not tainted 6.1.0 #1\n"
            "Call Trace:\n <TASK>\n dump_stack_lvl+0x44/0x5c\n </TASK>\n")
    assert parse_trace(text).backtrace.functions() == ["dump_stack_lvl"]


# --- ftrace --------------------------------------------------------------------------------------

GRAPH_CHAIN = [
    "mem_cgroup_calculate_protection", "shrink_node", "do_try_to_free_pages",
    "try_to_free_mem_cgroup_pages", "try_charge_memcg", "__mem_cgroup_charge",
    "do_anonymous_page", "__handle_mm_fault", "handle_mm_fault"]


def test_ftrace_function_graph() -> None:
    trace = parse_trace(_read("ftrace-graph.txt"))
    assert (trace.format, trace.header) == (FTRACE, "# tracer: function_graph")
    bt = trace.backtrace
    assert (bt.source, bt.comm, bt.pid) == (frames.FTRACE, "memhog", 4242)
    assert _functions(trace) == GRAPH_CHAIN
    assert bt.frames == tuple(Frame(i, f) for i, f in enumerate(GRAPH_CHAIN))  # no offsets


def _graph(*calls: str, prefix: str = " 1)               |") -> str:
    return "\n".join(prefix + c for c in calls) + "\n"


def test_function_graph_variants() -> None:
    # the brief's example: no header, no task column, a leaf is the deepest line
    text = (" 1)               |  handle_mm_fault() {\n"
            " 1)               |    __handle_mm_fault() {\n"
            " 1)               |      do_anonymous_page() {\n"
            " 1)               |        __mem_cgroup_charge() {\n"
            " 1)   0.345 us    |          try_charge_memcg();\n"
            " 1)   2.100 us    |        }\n")
    trace = parse_trace(text)
    assert (trace.format, trace.header, trace.backtrace.comm) == (FTRACE, None, None)
    assert _functions(trace) == ["try_charge_memcg", "__mem_cgroup_charge", "do_anonymous_page",
                                 "__handle_mm_fault", "handle_mm_fault"]
    # no CPU column, module symbols, funcgraph-retval comments, every duration mark
    text = ("               |  ext4_buffered_write_iter [ext4]() {\n"
            "               |    generic_perform_write() {\n"
            "               |      ext4_da_write_begin [ext4]() {\n"
            " $ 1000001 us  |        __filemap_get_folio(); /* = 0xffffea0004b6f200 */\n"
            " @ 100001.0 us |      } /* ext4_da_write_begin [ext4] = 0x0 */\n"
            " * 10001.00 us |    }\n"
            " # 1001.000 us |  }\n")
    bt = parse_trace(text).backtrace
    assert [(f.function, f.file) for f in bt.frames] == [
        ("__filemap_get_folio", None), ("ext4_da_write_begin", "ext4"),
        ("generic_perform_write", None), ("ext4_buffered_write_iter", "ext4")]
    # an excerpt that starts inside calls, with absolute times; the first deepest line wins
    text = ("  5678.100001 |   1)   0.200 us    |            page_counter_try_charge();\n"
            "  5678.100002 |   1)   0.900 us    |          }\n"
            "  5678.100003 |   1)               |          mem_cgroup_oom() {\n"
            "  5678.100004 |   1)   0.150 us    |            mem_cgroup_oom_trylock();\n"
            "  5678.100005 |   1)   9.000 us    |          }\n"
            "  5678.100006 |   1)   9.500 us    |        }\n")
    assert _functions(parse_trace(text)) == ["page_counter_try_charge"]
    # two CPUs interleaved: each nests on its own
    text = (" 0)               |  do_sys_openat2() {\n"
            " 1)               |  handle_mm_fault() {\n"
            " 0)   0.300 us    |    getname();\n"
            " 1)               |    __handle_mm_fault() {\n"
            " 1)   0.400 us    |      do_anonymous_page();\n"
            " 0)   1.000 us    |  }\n")
    trace = parse_trace(text)
    assert _functions(trace) == ["do_anonymous_page", "__handle_mm_fault", "handle_mm_fault"]
    # latency-format columns and the task column (comm with a dash)
    text = (" 0)  kworker-u8-2-45   |  d..1 |               |  process_one_work() {\n"
            " 0)  kworker-u8-2-45   |  d..1 |   0.1 us      |    vmstat_update();\n")
    bt = parse_trace(text).backtrace
    assert ([f.function for f in bt.frames], bt.comm, bt.pid) == (
        ["vmstat_update", "process_one_work"], "kworker-u8-2", 45)


def test_ftrace_stacktrace() -> None:
    trace = parse_trace(_read("ftrace-stack.txt"))
    assert trace.format == FTRACE
    assert trace.header == "memhog-4242    [001] .....  5678.123460: <stack trace>"
    bt = trace.backtrace
    assert (bt.source, bt.comm, bt.pid) == (frames.FTRACE, "memhog", 4242)
    assert _functions(trace) == [  # the first of the two stack traces
        "try_charge_memcg", "__mem_cgroup_charge", "do_anonymous_page", "__handle_mm_fault",
        "handle_mm_fault", "do_user_addr_fault", "exc_page_fault", "asm_exc_page_fault"]


def test_ftrace_stacktrace_variants() -> None:
    # sym-offset and sym-addr options, a module, an address with no symbol, the user stack after
    text = ("     cat-77  (   77) [000] d..1.   12.5: <stack trace>\n"
            " => try_charge_memcg+0x741/0x810 <ffffffff8134aa07>\n"
            " => ext4_da_write_begin+0x1a5/0x2f0 [ext4]\n"
            " => 0xffffffffc0455001\n"
            "     cat-77  (   77) [000] d..1.   12.5: <user stack trace>\n"
            " =>  <00007f3e1231e8e7>\n")
    bt = parse_trace(text).backtrace
    assert bt.frames == (
        Frame(0, "try_charge_memcg", offset="0x741/0x810", address=0xffffffff8134aa07),
        Frame(1, "ext4_da_write_begin", file="ext4", offset="0x1a5/0x2f0"),
        Frame(2, "??", address=0xffffffffc0455001))
    assert (bt.comm, bt.pid) == ("cat", 77)
    # "=> func" lines alone, two or more of them
    trace = parse_trace("my stack:\n => try_charge_memcg\n => charge_memcg\nthat is all\n")
    assert (trace.format, _functions(trace), trace.header) == (
        FTRACE, ["try_charge_memcg", "charge_memcg"], None)
    with pytest.raises(TraceFormatError, match="no trace"):
        parse_trace("the fix => try_charge_memcg\n")


# --- perf script ---------------------------------------------------------------------------------


def test_perf_script() -> None:
    trace = parse_trace(_read("perf-script.txt"))
    assert trace.format == PERF
    assert trace.header == ("memhog  4242 [001]  5678.123456: probe:try_charge_memcg: "
                            "(ffffffff8134a5a0)")
    bt = trace.backtrace
    assert (bt.source, bt.comm, bt.pid) == (frames.PERF, "memhog", 4242)
    # the first sample only; the user-space frames (libc, memhog, [unknown] 0) dropped
    assert [(f.function, f.offset, f.file) for f in bt.frames] == [
        ("try_charge_memcg", "0x1", None), ("__mem_cgroup_charge", "0x3d", None),
        ("__filemap_add_folio", "0x1c2", None), ("filemap_add_folio", "0x32", None),
        ("__filemap_get_folio", "0x1ff", None), ("ext4_da_write_begin", "0x1a5", "ext4"),
        ("generic_perform_write", "0xd6", None), ("ext4_buffered_write_iter", "0x7b", "ext4"),
        ("vfs_write", "0x23c", None), ("ksys_write", "0x6a", None),
        ("do_syscall_64", "0x5b", None), ("entry_SYSCALL_64_after_hwframe", "0x63", None)]
    assert bt.frames[0] == Frame(0, "try_charge_memcg", address=0xffffffff8134a5a1, offset="0x1")


def test_perf_script_variants() -> None:
    # a user-only sample first (a cycles profile); no offsets; [unknown] symbols; pid/tid;
    # a comm with a space; perf --inline; the kernel named by its vmlinux
    text = ("Web Content  311/312 [000]  12.000001:     250000 cpu-clock:pppH: \n"
            "            7f3e1231e8e7 memcpy (/usr/lib/libc.so.6)\n"
            "\n"
            "Web Content  311/312 [000]  12.000251:     250000 cpu-clock:pppH: \n"
            "        ffffffff8134a5a1 try_charge_memcg ([kernel.kallsyms])\n"
            "        ffffffffc0455001 [unknown] ([unknown])\n"
            "        ffffffff812dcc56 mem_cgroup_charge (inlined)\n"
            "        ffffffff812dcc56 do_anonymous_page (/usr/lib/debug/boot/vmlinux-6.1.0-56)\n"
            "            7f3e12345678 [unknown] ([unknown])\n"
            "            7f3e12345000 __vdso_clock_gettime+0x1 ([vdso])\n")
    trace = parse_trace(text)
    bt = trace.backtrace
    assert (trace.format, bt.comm, bt.pid) == (PERF, "Web Content", 311)
    assert trace.header.startswith("Web Content  311/312 [000]  12.000251:")
    assert bt.frames == (
        Frame(0, "try_charge_memcg", address=0xffffffff8134a5a1),
        Frame(1, "??", address=0xffffffffc0455001),
        Frame(2, "mem_cgroup_charge", address=0xffffffff812dcc56, inlined=True),
        Frame(3, "do_anonymous_page", address=0xffffffff812dcc56))
    with pytest.raises(TraceFormatError, match=r"perf trace in prof\.txt cannot be read: none of "
                                               r"its 1 sample\(s\) has a kernel frame"):
        parse_trace(text.split("\n\n")[0], name="prof.txt")


# --- gdb -----------------------------------------------------------------------------------------


def test_gdb_session_around_the_bt() -> None:
    reference = _sections()[1]
    text = ("(gdb) c\nContinuing.\n\n"
            "Thread 2 hit Breakpoint 1, try_charge_memcg (memcg=memcg@entry=0xffff88812528b000, "
            "gfp_mask=gfp_mask@entry=3264, nr_pages=nr_pages@entry=1) at mm/memcontrol.c:2629\n"
            "2629\t\tif (consume_stock(memcg, nr_pages))\n"
            "(gdb) bt\n" + reference + "(gdb) frame 2\n"
            "#2  obj_cgroup_charge (objcg=objcg@entry=0xffff88812577b500, gfp=gfp@entry=3264, "
            "size=<optimized out>) at mm/memcontrol.c:3385\n"
            "(gdb) bt\n#0  f () at a.c:1\n#1 SMP PREEMPT_DYNAMIC\n")
    trace = parse_trace(text)
    assert trace.format == GDB
    assert trace.header.startswith("Thread 2 hit Breakpoint 1, try_charge_memcg (")
    assert trace.backtrace == parse_trace(reference).backtrace  # the first bt, up to "frame 2"
    # gdb's styled output, and "#N" lines of other things that are no frame
    styled = "\x1b[33m#0  \x1b[m\x1b[33mf\x1b[m () at \x1b[32ma.c\x1b[m:1\n#1 SMP PREEMPT_DYNAMIC\n"
    assert parse_trace(styled).backtrace.frames == (Frame(0, "f", file="a.c", line=1),)


def test_an_unreadable_gdb_trace_is_an_error_naming_the_file() -> None:
    with pytest.raises(TraceFormatError, match=r"the gdb trace in bt\.txt cannot be read: "
                                               r"gdb frame #0 has no closed argument list"):
        parse_trace("#0  try_charge_memcg (memcg=0x1, \n", name="bt.txt")


# --- detection and noise -------------------------------------------------------------------------

FILES = {
    "oom-v2.txt": OOM, "oom-v1.txt": OOM, "warning.txt": DMESG, "ftrace-graph.txt": FTRACE,
    "ftrace-stack.txt": FTRACE, "perf-script.txt": PERF,
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_detect_format(name: str) -> None:
    assert detect_format(_read(name)) == parse_trace(_read(name)).format == FILES[name]


def test_detection_order() -> None:
    gdb = _sections()[1]
    dmesg = _sections()[5]
    oom = _read("oom-v2.txt")
    perf = _read("perf-script.txt")
    graph = _read("ftrace-graph.txt")
    assert detect_format(dmesg + gdb) == GDB  # the first format in the order, not in the text
    assert detect_format(gdb + oom) == OOM
    assert detect_format(graph + perf) == PERF
    assert detect_format(dmesg + graph) == FTRACE
    assert detect_format("") is None


def _prompt(text: str) -> str:
    return f"user@host:~$ cat trace.txt\n{text}\nuser@host:~$ echo done\ndone\n"


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def _quoted(text: str) -> str:
    quoted = "".join(f"> {ln}\n" if ln else ">\n" for ln in text.splitlines())
    return f"On Mon, 1 Dec 2025, A Developer wrote:\n{quoted}\nThanks, looking.\n"


def _twice_quoted(text: str) -> str:
    return "".join(f">> {ln}\n" for ln in text.splitlines())


def _indented(text: str) -> str:
    return "".join(f"    {ln}\n" for ln in text.splitlines())


def _coloured(text: str) -> str:
    return "".join(f"\x1b[1;31m{ln}\x1b[0m\n" for ln in text.splitlines())


def _journal(text: str) -> str:
    """journalctl -k: a prefix before each kernel line (timestamps taken off, as it does)."""
    bare = re.sub(r"^\s*\[\s*\d+\.\d+\]", "", text, flags=re.MULTILINE)
    return "".join(f"Dec 01 12:00:00 kh kernel:{ln}\n" for ln in bare.splitlines())


NOISE = [_prompt, _crlf, _quoted, _twice_quoted, _indented, _coloured]


@pytest.mark.parametrize("noise", NOISE, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("name", sorted(FILES))
def test_noise_around_and_in_the_trace(name: str, noise) -> None:
    clean = parse_trace(_read(name))
    assert parse_trace(noise(_read(name))).to_dict() == clean.to_dict()


@pytest.mark.parametrize("number", sorted(REFERENCE))
def test_noise_around_the_reference_traces(number: int) -> None:
    text = _sections()[number - 1]
    clean = parse_trace(text).to_dict()
    for noise in NOISE:
        assert parse_trace(noise(text)).to_dict() == clean, noise.__name__


@pytest.mark.parametrize("name", ["oom-v2.txt", "oom-v1.txt", "warning.txt"])
def test_journal_prefixes(name: str) -> None:
    assert parse_trace(_journal(_read(name))).to_dict() == parse_trace(_read(name)).to_dict()


README = """# kharness

A QEMU-based harness for memory cgroup tests.

## Usage

    $ kharness run scenarios/oom.yaml
    $ kharness reproduce my-trace.txt

A trace shows functions like try_charge_memcg+0x1a/0x40 and => arrows; see docs/ for more.
#1 is the issue to start with.
"""


@pytest.mark.parametrize("text", [README, "", "\n\n  \n", "Killed\n"])
def test_no_trace_names_the_text_and_every_format(text: str) -> None:
    assert detect_format(text) is None
    with pytest.raises(TraceFormatError) as err:
        parse_trace(text, name="notes.txt")
    message = str(err.value)
    assert message.startswith("no trace in notes.txt: kharness understands gdb bt (")
    for description in FORMATS.values():
        assert description in message
    for words in ("gdb bt", "dmesg Call Trace", "OOM-killer report", "ftrace function_graph",
                  "perf script"):
        assert words in message
    assert (err.value.name, err.value.format) == ("notes.txt", None)
    assert isinstance(err.value, ValueError)
    with pytest.raises(TraceFormatError, match="^no trace in the text: "):
        parse_trace(text)


# --- data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILES))
def test_json_round_trip(name: str) -> None:
    trace = parse_trace(_read(name))
    data = json.loads(json.dumps(trace.to_dict()))
    assert PastedTrace.from_dict(data) == trace
    assert data["format"] == FILES[name] and data["backtrace"]["source"] in frames.SOURCES
    if trace.oom is not None:
        assert data["oom"]["hierarchy"] == trace.oom.hierarchy


def test_pasted_trace_checks_its_format() -> None:
    bt = Backtrace(frames=(Frame(0, "f"),), source=frames.GDB)
    with pytest.raises(ValueError, match="trace format must be one of"):
        PastedTrace(format="lttng", backtrace=bt)
    assert set(FORMATS) == {GDB, DMESG, OOM, FTRACE, PERF}


def test_traces_is_a_bottom_floor_module() -> None:
    """harness/traces.py imports harness.frames and the standard library, nothing else."""
    source = (TESTS.parent / "harness" / "traces.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert {m for m in imported if m.startswith(".")} == {".", ".frames"}
    import sys
    assert all(m.split(".")[0] in sys.stdlib_module_names
               for m in imported if not m.startswith("."))
