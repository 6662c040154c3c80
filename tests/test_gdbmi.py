"""gdb's machine interface as data (harness/channels/gdbmi.py), on lines recorded from gdb 13
attached to QEMU's gdbstub with Debian's 6.1 kernel (a runner gdb-*.log), no gdb needed."""

from __future__ import annotations

import pytest

from harness.channels.gdbmi import (
    MIRecord,
    MIResult,
    Stop,
    frame_location,
    mi_quote,
    parse_mi_line,
)

BREAKPOINT_SET = (
    '24^done,bkpt={number="1",type="breakpoint",disp="keep",enabled="y",'
    'addr="0xffffffff81349ff0",func="mem_cgroup_out_of_memory",file="mm/memcontrol.c",'
    'fullname="debian/build/build_amd64_none_amd64/mm/memcontrol.c",line="1689",'
    'thread-groups=["i1"],cond="$_streq((*(struct task_struct **)($gs_base + (unsigned long)'
    '&current_task))->comm, \\"memhog\\")",times="0",original-location="mem_cgroup_out_of_memory"}'
)
BREAKPOINT_HIT = (
    '*stopped,reason="breakpoint-hit",disp="keep",bkptno="1",frame={addr="0xffffffff81349ff0",'
    'func="mem_cgroup_out_of_memory",args=[{name="memcg",value="0xffff88801fc9d000"},'
    '{name="gfp_mask",value="3264"},{name="order",value="0"}],file="mm/memcontrol.c",'
    'fullname="debian/build/build_amd64_none_amd64/mm/memcontrol.c",line="1689",'
    'arch="i386:x86-64"},thread-id="1",stopped-threads="all"'
)
INTERRUPTED = (
    '*stopped,reason="signal-received",signal-name="SIGINT",signal-meaning="Interrupt",'
    'frame={addr="0xffffffff81a5a170",func="cpu_relax",args=[],'
    'file="arch/x86/include/asm/vdso/processor.h",line="19",arch="i386:x86-64"},'
    'thread-id="1",stopped-threads="all"'
)


def test_a_result_record_with_nested_tuples_and_lists():
    rec = parse_mi_line(BREAKPOINT_SET + "\n")
    assert (rec.kind, rec.token, rec.cls) == ("result", 24, "done")
    bkpt = rec.results["bkpt"]
    assert bkpt["number"] == "1" and bkpt["line"] == "1689"
    assert bkpt["thread-groups"] == ["i1"]
    assert bkpt["cond"].endswith('->comm, "memhog")')
    rec = parse_mi_line('12^done,bkpt={number="2",locations=[{number="2.1",func="f"}]}')
    assert rec.results["bkpt"]["locations"][0]["func"] == "f"


def test_results_without_a_payload_and_errors():
    assert parse_mi_line("1^done") == MIRecord("result", 1, "done")
    assert parse_mi_line("19^connected").cls == "connected"
    assert parse_mi_line("21^running").cls == "running"
    rec = parse_mi_line('16^error,msg="No symbol \\"current_task\\" in current context."')
    assert (rec.kind, rec.cls) == ("result", "error")
    result = MIResult(rec.cls, rec.results, "", "")
    assert result.error == 'No symbol "current_task" in current context.'
    assert MIResult("done", {"value": "1"}, "", "").error is None
    assert MIResult("error", {}, "", "").error == "error"


def test_async_records():
    assert parse_mi_line("*running,thread-id=\"all\"").kind == "exec"
    rec = parse_mi_line('=thread-group-started,id="i1",pid="1"')
    assert (rec.kind, rec.cls, rec.results) == ("notify", "thread-group-started",
                                                {"id": "i1", "pid": "1"})
    assert parse_mi_line('+download,{section=".text"}').kind == "other"  # a bare tuple
    assert parse_mi_line('+download,section=".text"').kind == "status"


def test_lists_of_results_keep_the_values_and_repeated_keys_are_kept():
    rec = parse_mi_line('^done,stack=[frame={level="0",func="a"},frame={level="1",func="b"}]')
    assert [f["func"] for f in rec.results["stack"]] == ["a", "b"]
    rec = parse_mi_line('^done,bkpt={number="1"},bkpt={number="1.1"},bkpt={number="1.2"}')
    assert rec.results["bkpt"] == [{"number": "1"}, {"number": "1.1"}, {"number": "1.2"}]
    assert parse_mi_line('^done,a={},b=[]').results == {"a": {}, "b": []}


def test_stream_records_and_c_string_escapes():
    rec = parse_mi_line('~"0xffffffff81a592eb in native_safe_halt () at '
                        'arch/x86/include/asm/irqflags.h:52\\n"')
    assert rec.kind == "console" and rec.text.endswith("irqflags.h:52\n")
    rec = parse_mi_line('&"52\\tarch/x86/include/asm/irqflags.h: No such file or directory.\\n"')
    assert rec.kind == "log" and rec.text.startswith("52\tarch/")
    assert parse_mi_line('@"target output"').kind == "target"
    assert parse_mi_line('~"#0  f (s=\\"a\\\\b\\") at x.c:1\\n"').text == '#0  f (s="a\\b") at x.c:1\n'
    assert parse_mi_line('~"caf\\303\\251\\t"').text == "café\t"  # octal bytes, UTF-8
    assert parse_mi_line('~"\\e[1mbold\\e[m"').text == "\x1b[1mbold\x1b[m"
    assert parse_mi_line('~"\\0010"').text == "\x010"  # at most three octal digits


@pytest.mark.parametrize("line", [
    "warning: not MI",
    "",
    "42",  # a token and nothing else
    '~"unterminated',
    '~"text" trailing',
    '12~"a stream record does not take a token"',
    '^done,value="1",',  # a comma with nothing after it
    '^done,value=1',  # a value that is not a C string, tuple or list
    '^done,list=["a" "b"]',
    '^bad class,x="1"',
])
def test_lines_that_are_not_mi_are_other_and_keep_their_text(line):
    rec = parse_mi_line(line + "\r\n")
    assert rec.kind == "other" and rec.text == line


def test_the_prompt():
    assert parse_mi_line("(gdb) ").kind == "prompt"
    assert parse_mi_line("(gdb)\n").kind == "prompt"


def test_mi_quote_escapes_what_gdb_unescapes():
    assert mi_quote('$_streq(x, "a\\b")') == '"$_streq(x, \\"a\\\\b\\")"'
    assert mi_quote("two\nlines") == '"two\\nlines"'
    # what gdb would echo back in a stream record reads as the original
    text = 'say "hi" \\ bye\n'
    assert parse_mi_line("~" + mi_quote(text)).text == text


def test_a_breakpoint_stop():
    stop = Stop.from_record(parse_mi_line(BREAKPOINT_HIT))
    assert (stop.reason, stop.breakpoint) == ("breakpoint-hit", 1)
    assert stop.location == "mem_cgroup_out_of_memory at mm/memcontrol.c:1689"
    assert stop.frame["args"][0] == {"name": "memcg", "value": "0xffff88801fc9d000"}
    assert not stop.exited


def test_other_stops():
    stop = Stop.from_record(parse_mi_line(INTERRUPTED))
    assert (stop.reason, stop.breakpoint) == ("signal-received", None)
    assert stop.location == "cpu_relax at arch/x86/include/asm/vdso/processor.h:19"
    # the first stop after attaching says no reason
    stop = Stop.from_record(parse_mi_line('*stopped,frame={addr="0x1",func="native_safe_halt"},'
                                          'thread-id="1"'))
    assert (stop.reason, stop.breakpoint, stop.location) == (None, None,
                                                             "native_safe_halt (0x1)")
    for reason in ("exited", "exited-signalled", "exited-normally"):
        assert Stop.from_record(parse_mi_line(f'*stopped,reason="{reason}"')).exited
    assert Stop.from_record(parse_mi_line('*stopped,bkptno="x"')).breakpoint is None


def test_frame_location_without_a_line_names_the_address():
    assert frame_location({"func": "f", "file": "a.c", "line": "3"}) == "f at a.c:3"
    assert frame_location({"func": "f", "addr": "0x10"}) == "f (0x10)"
    assert frame_location({}) == "?? (?)"
