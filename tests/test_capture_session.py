"""The memcg capture loop (harness/capture.py) on a fake gdb channel: which stops count, what a
hit records, when breakpoints go and the guest runs on. The real channel is exercised by
tests/test_gdb_integration.py; this fakes it at its edge (the methods capture.py calls)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.capture import OUTPUT_LINES, BreakpointSpec, start_capture
from harness.channels.gdb import BreakpointError, GdbError
from harness.channels.gdbmi import MIResult, Stop
from harness.events import Event, EventBus

GOLDEN = Path(__file__).resolve().parent / "golden" / "backtraces"
BT = (GOLDEN / "charge-6.1.handmade.gdb").read_text()
TASK = "(task)"


def hit(number: int, func: str = "try_charge_memcg", line: int = 2629) -> Stop:
    return Stop("breakpoint-hit", number, {"func": func, "file": "mm/memcontrol.c",
                                           "line": str(line)})


class FakeChannel:
    """Stops come from a script: (stop, comm, pid of the task that stopped)."""

    def __init__(self, stops: list[tuple[Stop, str, int]] = (), *,
                 functions: tuple[str, ...] = ("try_charge_memcg", "mem_cgroup_out_of_memory"),
                 memcg_var: bool = True) -> None:
        self.bus = EventBus()
        self.events: list[Event] = []
        self.bus.subscribe(self.events.append)
        self.current_task = TASK
        self.command_timeout = 5.0
        self.vmlinux = Path("/cache/6.1.0-57-amd64/vmlinux.debug")
        self.connected = True
        self.running = True
        self.functions = functions
        self.memcg_var = memcg_var
        self.breakpoints: dict[int, tuple[str, str | None]] = {}
        self.deleted: list[int] = []
        self.calls: list[object] = []
        self.on_close: Callable[[], None] | None = None
        self.released = threading.Event()
        self._stops: queue.Queue[tuple[Stop, str, int] | None] = queue.Queue()
        for s in stops:
            self._stops.put(s)
        self._task = ("swapper/0", 0)

    # the channel's interface as capture.py uses it
    def claim(self, on_close: Callable[[], None]) -> None:
        assert self.on_close is None, "claimed twice"
        self.on_close = on_close
        self.released.clear()

    def release(self) -> None:
        self.on_close = None
        self.released.set()

    def interrupt(self, timeout: float = 10.0) -> Stop | None:
        self.calls.append("interrupt")
        self.running = False
        return None

    def resume(self, settle: float = 0.0) -> None:
        self.calls.append(("resume", settle))
        self.running = True

    def continue_(self) -> MIResult:
        self.calls.append("continue")
        self.running = True
        return MIResult("running", {}, "", "")

    def wait_stopped(self, deadline: float | None) -> Stop | None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            item = self._stops.get(timeout=remaining)
        except queue.Empty:
            return None
        if item is None:  # woken
            return None
        stop, comm, pid = item
        self._task = (comm, pid)
        self.running = False
        return stop

    def wake(self) -> None:
        self._stops.put(None)

    def insert_breakpoint(self, location: str, condition: str | None = None) -> int:
        assert not self.running, "breakpoint set with the guest running"
        if location not in self.functions:
            raise BreakpointError(location, f'Function "{location}" not defined.')
        if condition and "memcg->" in condition and not self.memcg_var:
            raise BreakpointError(location, 'No symbol "memcg" in current context.')
        number = len(self.breakpoints) + 1
        self.breakpoints[number] = (location, condition)
        return number

    def delete_breakpoint(self, number: int) -> None:
        self.deleted.append(number)

    def evaluate(self, expression: str) -> str:
        comm, pid = self._task
        if expression == f"{TASK}->comm":
            return f'"{comm}"'
        if expression == f"{TASK}->pid":
            return str(pid)
        return "<error: No symbol \"x\" in current context.>" if expression == "x" else "1"

    def cli(self, line: str, timeout: float | None = None, check: bool = False) -> MIResult:
        if line == "bt":
            return MIResult("done", {}, BT, "")
        if line == "lx-dmesg":
            return MIResult("done", {}, "".join(f"[{i}] line\n" for i in range(250)), "")
        return MIResult("error", {"msg": f'Undefined command: "{line}".'}, "", "")


def kinds(channel: FakeChannel) -> list[str]:
    return [e.kind for e in channel.events]


def test_stops_that_count_are_recorded_until_each_breakpoint_has_its_count():
    charge = BreakpointSpec("try_charge_memcg", comm="memhog")
    oom = BreakpointSpec("mem_cgroup_out_of_memory")
    fake = FakeChannel([
        (hit(1), "sh", 7),  # the comm condition failed to evaluate and gdb stopped anyway
        (hit(1), "memhog", 100),
        (Stop("signal-received", None, {}), "memhog", 100),  # not a breakpoint: continued
        (hit(1), "memhog", 100),
        (hit(2, "mem_cgroup_out_of_memory", 1689), "memhog", 100),
    ])
    session = start_capture(fake, [charge, oom], count=2, expressions=["nr_pages", "x"],
                            timeout=1.0)
    hits = session.wait(timeout=10)
    assert [(h.breakpoint, h.comm, h.pid) for h in hits] == [
        (charge, "memhog", 100), (charge, "memhog", 100), (oom, "memhog", 100)]
    assert hits[0].location == "try_charge_memcg at mm/memcontrol.c:2629"
    assert hits[0].values == {"nr_pages": "1", "x": '<error: No symbol "x" in current context.>'}
    assert hits[0].raw_bt == BT and hits[0].backtrace is not None
    assert hits[0].backtrace.comm == "memhog" and hits[0].backtrace.pid == 100
    assert hits[0].backtrace.values == hits[0].values
    assert [h.elapsed for h in hits] == sorted(h.elapsed for h in hits)
    # the conditions gdb evaluates: comm for the first, none for the second
    assert fake.breakpoints == {1: ("try_charge_memcg", f'$_streq({TASK}->comm, "memhog")'),
                                2: ("mem_cgroup_out_of_memory", None)}
    # charge reached its count and went at once; oom has 1 of 2 at the deadline, then goes
    assert fake.deleted == [1, 2]
    assert session.timed_out and not session.errors
    assert session.counts == {1: 2, 2: 1}
    assert session.incomplete == [oom] and session.missed == []
    assert session.first_hit_seconds == hits[0].elapsed


def test_a_capture_that_gets_all_its_hits_ends_without_waiting_for_the_deadline():
    spec = BreakpointSpec("try_charge_memcg")
    fake = FakeChannel([(hit(1), "memhog", 100)])
    session = start_capture(fake, [spec], timeout=600)
    assert len(session.wait(timeout=10)) == 1
    assert session.finished - session.started < 5
    assert fake.deleted == [1]
    # the guest was stopped at the hit: no interrupt, one continue after the capture, no settle
    assert fake.calls == ["interrupt", ("resume", 0.0), ("resume", 0.0)]
    assert fake.released.is_set() and fake.on_close is None
    assert kinds(fake) == ["gdb.capture", "gdb.hit", "gdb.captured"]
    assert fake.events[0].message == "capturing try_charge_memcg: 1 hit(s) each, 600s at most"
    assert fake.events[1].data == {"elapsed": session.hits[0].elapsed,
                                   "location": "try_charge_memcg at mm/memcontrol.c:2629",
                                   "comm": "memhog", "pid": 100}
    assert fake.events[2].data == {"hits": 1, "missed": []}


def test_the_deadline_ends_the_capture_and_names_what_never_hit():
    never = BreakpointSpec("mem_cgroup_out_of_memory", comm="no-such-comm")
    fake = FakeChannel()
    session = start_capture(fake, [never], timeout=0.2)
    assert session.wait(timeout=10) == []
    assert session.timed_out and not session.cancelled
    assert session.missed == [never]
    # the guest was running: interrupted, breakpoint deleted, continued with a settle
    assert fake.deleted == [1]
    assert fake.calls[-2:] == ["interrupt", ("resume", 0.3)]
    assert fake.events[-1].message.endswith("; never hit: mem_cgroup_out_of_memory")


def test_cancel_and_closing_the_channel_stop_a_capture():
    fake = FakeChannel()
    session = start_capture(fake, [BreakpointSpec("try_charge_memcg")], timeout=600)
    session.cancel()
    assert session.wait(timeout=10) == [] and session.cancelled and not session.timed_out
    assert fake.deleted == [1]
    fake = FakeChannel()
    session = start_capture(fake, [BreakpointSpec("try_charge_memcg")], timeout=600)
    assert fake.on_close is not None
    fake.on_close()  # what GdbChannel.close() does with a capture running
    assert fake.released.wait(10) and session.done and session.cancelled


def test_a_cgroup_filter_without_a_memcg_variable_uses_the_tasks_memcg():
    spec = BreakpointSpec("try_charge_memcg", cgroup="/sys/fs/cgroup/t/")
    fake = FakeChannel(memcg_var=False)
    session = start_capture(fake, [spec], timeout=600)
    session.cancel()
    session.wait(timeout=10)
    # the first try (the location's memcg) was refused: the task's memcg it is
    assert fake.breakpoints == {1: ("try_charge_memcg", (
        f"$_streq(((struct mem_cgroup *){TASK}->cgroups->subsys[memory_cgrp_id])"
        '->css.cgroup->kn->name, "t")'))}
    with_var = FakeChannel()
    session = start_capture(with_var, [BreakpointSpec("try_charge_memcg", comm="memhog",
                                                      cgroup="t", callers=("a", "b"))])
    session.cancel()
    session.wait(timeout=10)
    assert with_var.breakpoints[1][1] == (
        f'$_streq({TASK}->comm, "memhog") && $_streq(memcg->css.cgroup->kn->name, "t") && '
        '$_any_caller_is("a", 40) && $_any_caller_is("b", 40)')


def test_an_unknown_location_removes_what_was_set_and_lets_the_guest_run():
    fake = FakeChannel()
    with pytest.raises(GdbError, match=r'cannot set a breakpoint at nope in vmlinux.debug: '
                                       r'Function "nope" not defined\.'):
        start_capture(fake, [BreakpointSpec("try_charge_memcg"), BreakpointSpec("nope")])
    assert fake.deleted == [1]
    assert fake.calls == ["interrupt", ("resume", 0.0)] and fake.running
    assert fake.on_close is None and fake.released.is_set()
    assert kinds(fake) == []


def test_bad_arguments_are_refused_before_gdb_is_asked():
    fake = FakeChannel()
    with pytest.raises(ValueError, match="at least one breakpoint"):
        start_capture(fake, [])
    with pytest.raises(ValueError, match="count must be at least 1"):
        start_capture(fake, [BreakpointSpec("try_charge_memcg")], count=0)
    assert fake.calls == [] and fake.on_close is None


def test_command_output_keeps_its_last_lines_and_errors_are_values():
    fake = FakeChannel([(hit(1), "memhog", 100)])
    session = start_capture(fake, [BreakpointSpec("try_charge_memcg")],
                            commands=["lx-dmesg", "lx-nope"])
    (h,) = session.wait(timeout=10)
    lines = h.outputs["lx-dmesg"].splitlines()
    assert lines[0] == f"[... {250 - OUTPUT_LINES} earlier lines]"
    assert lines[1:] == [f"[{i}] line" for i in range(250 - OUTPUT_LINES, 250)]
    assert h.outputs["lx-nope"] == '<error: Undefined command: "lx-nope".>'


def test_a_target_that_goes_away_is_an_error_of_the_capture():
    fake = FakeChannel([(Stop("exited-normally", None, {}), "", 0)])
    session = start_capture(fake, [BreakpointSpec("try_charge_memcg")], timeout=600)
    assert session.wait(timeout=10) == []
    assert session.errors == ["the target went away (QEMU exited?)"]
    assert "gdb.error" in kinds(fake) and fake.released.is_set()
