"""The v1/v2 mapping table, its formulas and the units: pure, no guest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.cgroups import knobs
from harness.cgroups.knobs import (
    FEATURES,
    KNOBS,
    METRICS,
    KnobUnsupported,
    MetricUnsupported,
    UnknownName,
    metric_files,
    parse_metric,
    shares_to_weight,
    weight_to_shares,
    writes_for,
)
from harness.units import format_size, parse_size, parse_tolerance, parse_value

M = 1024 * 1024

# --- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("32M", 32 * M), ("1G", 1024 * M), ("512K", 512 * 1024), ("4096", 4096), (4096, 4096),
    ("32m", 32 * M), ("32MiB", 32 * M), ("1T", 1024**4), (" 64M ", 64 * M), ("1.5G", 1536 * M),
    (0, 0), ("0", 0), (8.0, 8),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["max", "-1", -1, "32X", "", "1.1", "M", True, None, 1.5, "3 M B"])
def test_parse_size_rejects_with_the_text(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_size(text)


@pytest.mark.parametrize(("n", "text"), [
    (32 * M, "32M"), (1024 * M, "1G"), (512 * 1024, "512K"), (4096, "4K"), (1000, "1000"),
    (0, "0"), (32 * M - 1, "32.0M"), (1536 * M, "1536M"),
])
def test_format_size(n, text):
    assert format_size(n) == text


def test_format_size_round_trips_exact_sizes():
    for n in (1, 1023, 1024, 3 * M, 5 * 1024**3, 7 * 1024**4):
        assert parse_size(format_size(n)) == n


@pytest.mark.parametrize(("x", "expected"), [
    (5, 5), (0.5, 0.5), ("max", "max"), ("32M", 32 * M), ("42", 42), ("-1", -1), ("0.25", 0.25),
    ("SIGKILL", "SIGKILL"), ("EINVAL", "EINVAL"), ("FROZEN", "FROZEN"), (True, 1),
    ("20000 100000", "20000 100000"), ("10%", "10%"),
])
def test_parse_value(x, expected):
    got = parse_value(x)
    assert got == expected and type(got) is type(expected)


def test_parse_value_rejects_collections():
    with pytest.raises(ValueError):
        parse_value([1, 2])


@pytest.mark.parametrize(("x", "expected"), [
    ("10%", ("percent", 10.0)), ("2.5%", ("percent", 2.5)), ("4M", ("absolute", 4 * M)),
    (0.5, ("absolute", 0.5)), (3, ("absolute", 3)), ("0.05", ("absolute", 0.05)),
    ("4096", ("absolute", 4096)),
])
def test_parse_tolerance(x, expected):
    assert parse_tolerance(x) == expected


@pytest.mark.parametrize("x", ["ten", "%", "-5%", -1, "4Q", True])
def test_parse_tolerance_rejects(x):
    with pytest.raises(ValueError, match="not a tolerance"):
        parse_tolerance(x)


# --- the tables match docs/scenarios.md ---------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "scenarios.md"


def _doc_table(title: str) -> list[list[str]]:
    text = DOC.read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


@pytest.mark.skipif(not DOC.exists(), reason="docs/scenarios.md not present")
def test_every_documented_knob_metric_and_feature_is_in_the_tables():
    documented_knobs = {name for row in _doc_table("Knobs")
                        for name in re.findall(r"`([^`]+)`", row[0])}
    assert documented_knobs == set(KNOBS)
    documented_metrics = {name for row in _doc_table("Metrics")
                          for name in re.findall(r"`([^`]+)`", row[0])}
    assert documented_metrics == set(METRICS)
    documented_features = {name for row in _doc_table("Features")
                           for name in re.findall(r"`([^`]+)`", row[0])}
    assert documented_features == set(FEATURES)


def test_knob_table_shape():
    for name, k in KNOBS.items():
        assert k.name == name
        assert k.v2_file or k.v1_files, name
        assert (k.v2_file is None) or (k.v2_controller is not None or name == "cgroup.freeze")
        assert (k.v1_files is None) == (k.v1_controller is None), name
    assert KNOBS["memory.high"].v1_files is None
    assert KNOBS["memory.swappiness"].v2_file is None
    assert KNOBS["cgroup.freeze"].v2_controller is None  # core on v2
    assert KNOBS["cgroup.freeze"].v1_controller == "freezer"
    assert KNOBS["io.max"].v1_controller == "blkio"


def test_every_knob_says_what_its_value_looks_like():
    for name, k in KNOBS.items():
        assert isinstance(k.value, knobs.ValueKind) and k.value.text, name
    assert KNOBS["memory.max"].value is knobs.SIZE_OR_MAX
    assert KNOBS["memory.reclaim"].value is knobs.SIZE  # no max: it is an amount to reclaim
    assert KNOBS["pids.max"].value is knobs.INT_OR_MAX


@pytest.mark.parametrize(("knob", "good", "bad"), [
    ("memory.max", ["32M", " 1G ", "max", 0, 4096, 8.0], ["-1", -1, "32X", True, 1.5, "MAX"]),
    ("memory.reclaim", ["1M", 0], ["max"]),
    ("memory.oom.group", [0, 1, "1"], [2, "yes", "max", True]),  # YAML true is no flag
    ("memory.swappiness", [60, "-1", "+5"], ["60%", "max", 1.5]),
    ("pids.max", [10, "max", "0"], [-1, "10M", "MAX"]),
    ("cpu.max", ["50000 100000", "max 100000", "max", 50000], ["max max", "50000,100000", 1.5]),
    ("io.max", ["{disk} rbps=1M wbps=max", "254:0 riops=10", "8:0 rbps=1.5M wiops=max"],
     ["{disk}", "vda rbps=1M", "{disk} rbps=", "{disk} bps=1", "{rdma} rbps=1", 5]),
    ("rdma.max", ["{rdma} hca_handle=2 hca_object=max", "rxe0 hca_handle=2"],
     ["rxe0", "rxe0 hca_handle=x", "rxe0 handles=2", 2]),
    ("cpuset.cpus", ["0", "0-1", "0,2", "0-1,3", 0], ["0-", "a", "0 1"]),
])
def test_value_kinds(knob, good, bad):
    kind = KNOBS[knob].value
    assert [v for v in good if not kind.check(v)] == []
    assert [v for v in bad if kind.check(v)] == []


def test_byte_metrics_are_the_metrics_counted_in_bytes():
    assert {m.unit for m in (*METRICS.values(), *knobs.SAMPLED_METRICS.values())} == {
        "bytes", "count", "seconds", "bool"}
    assert knobs.BYTE_METRICS == {"usage", "peak", "swap", "swap_peak", "io_read_bytes",
                                  "sampled_peak", "sampled_swap_peak"}
    for m in knobs.SAMPLED_METRICS.values():  # the runner computes them: no file to read
        assert m.v1 is None and m.v2 is None and m.unit == "bytes"


def test_controllers_of_both_hierarchies():
    assert set(knobs.CONTROLLERS) == {*knobs.V1_CONTROLLERS, *knobs.V2_CONTROLLERS}
    assert len(set(knobs.CONTROLLERS)) == len(knobs.CONTROLLERS)
    assert knobs.CONTROLLERS[:5] == ("memory", "cpu", "cpuacct", "io", "blkio")
    assert "io" in knobs.V2_CONTROLLERS and "io" not in knobs.V1_CONTROLLERS
    assert "freezer" in knobs.V1_CONTROLLERS and "freezer" not in knobs.V2_CONTROLLERS
    for k in KNOBS.values():
        assert k.v1_controller in (None, *knobs.V1_CONTROLLERS), k.name
        assert k.v2_controller in (None, *knobs.V2_CONTROLLERS), k.name


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownName, match="memory.max"):
        writes_for("memory.maxx", 1, "v2")
    with pytest.raises(UnknownName, match="oom_kill"):
        metric_files("oom_kills", "v2")
    with pytest.raises(UnknownName, match="memory.swap"):
        knobs.feature("swap")
    with pytest.raises(ValueError, match="v1 or v2"):
        writes_for("memory.max", 1, "v3")


# --- knobs -> writes ------------------------------------------------------------------------------

@pytest.mark.parametrize(("knob", "value", "v2", "v1"), [
    ("memory.max", "32M", [("memory.max", "33554432")], [("memory.limit_in_bytes", "33554432")]),
    ("memory.max", "max", [("memory.max", "max")], [("memory.limit_in_bytes", "-1")]),
    ("memory.max", 4096, [("memory.max", "4096")], [("memory.limit_in_bytes", "4096")]),
    ("pids.max", 5, [("pids.max", "5")], [("pids.max", "5")]),
    ("pids.max", "max", [("pids.max", "max")], [("pids.max", "max")]),
    ("rdma.max", "rxe0 hca_handle=1", [("rdma.max", "rxe0 hca_handle=1")],
     [("rdma.max", "rxe0 hca_handle=1")]),
    ("cgroup.freeze", 1, [("cgroup.freeze", "1")], [("freezer.state", "FROZEN")]),
    ("cgroup.freeze", 0, [("cgroup.freeze", "0")], [("freezer.state", "THAWED")]),
    ("cgroup.freeze", True, [("cgroup.freeze", "1")], [("freezer.state", "FROZEN")]),
    ("cpuset.cpus", "0", [("cpuset.cpus", "0")], [("cpuset.cpus", "0")]),
    ("cpu.weight", 100, [("cpu.weight", "100")], [("cpu.shares", "2597")]),
    ("cpu.max", "20000 100000", [("cpu.max", "20000 100000")],
     [("cpu.cfs_quota_us", "-1"), ("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "20000")]),
    ("cpu.max", "max 50000", [("cpu.max", "max 50000")],
     [("cpu.cfs_quota_us", "-1"), ("cpu.cfs_period_us", "50000")]),
    ("cpu.max", "max", [("cpu.max", "max")], [("cpu.cfs_quota_us", "-1")]),
    ("cpu.max", 30000, [("cpu.max", "30000")], [("cpu.cfs_quota_us", "30000")]),
    ("io.max", "254:0 rbps=1M", [("io.max", "254:0 rbps=1048576")],
     [("blkio.throttle.read_bps_device", "254:0 1048576")]),
    ("io.max", "8:16 rbps=1048576 wbps=max riops=100 wiops=200",
     [("io.max", "8:16 rbps=1048576 wbps=max riops=100 wiops=200")],
     [("blkio.throttle.read_bps_device", "8:16 1048576"),
      ("blkio.throttle.write_bps_device", "8:16 0"),
      ("blkio.throttle.read_iops_device", "8:16 100"),
      ("blkio.throttle.write_iops_device", "8:16 200")]),
    ("io.max", "8:0 rbps=2M\n8:16 wiops=5",
     [("io.max", "8:0 rbps=2097152"), ("io.max", "8:16 wiops=5")],
     [("blkio.throttle.read_bps_device", "8:0 2097152"),
      ("blkio.throttle.write_iops_device", "8:16 5")]),
])
def test_writes_for_both_hierarchies(knob, value, v2, v1):
    assert writes_for(knob, value, "v2", {}) == v2
    assert writes_for(knob, value, "v1", {}) == v1


@pytest.mark.parametrize(("knob", "value", "text"), [
    ("memory.high", "32M", "33554432"), ("memory.low", "1G", "1073741824"),
    ("memory.min", "max", "max"), ("memory.oom.group", 1, "1"), ("memory.reclaim", "4M", "4194304"),
])
def test_v2_only_knobs(knob, value, text):
    assert writes_for(knob, value, "v2") == [(knob, text)]
    with pytest.raises(KnobUnsupported, match=f"^{re.escape(knob)} has no v1 counterpart$") as exc:
        writes_for(knob, value, "v1")
    assert (exc.value.knob, exc.value.version) == (knob, "v1")


@pytest.mark.parametrize(("knob", "value", "text"), [
    ("memory.swappiness", 201, "201"), ("memory.soft_limit_in_bytes", "16M", "16777216"),
    ("memory.oom_control", 1, "1"), ("memory.move_charge_at_immigrate", 1, "1"),
])
def test_v1_only_knobs(knob, value, text):
    assert writes_for(knob, value, "v1") == [(knob, text)]
    with pytest.raises(KnobUnsupported, match="has no v2 counterpart"):
        writes_for(knob, value, "v2")


def test_v2_gets_unparseable_values_verbatim_for_the_kernel_to_judge():
    assert writes_for("memory.max", "lots", "v2") == [("memory.max", "lots")]
    assert writes_for("cpu.max", "a b", "v2") == [("cpu.max", "a b")]
    assert writes_for("cpu.weight", 0, "v2") == [("cpu.weight", "0")]
    assert writes_for("memory.oom.group", 2, "v2") == [("memory.oom.group", "2")]
    assert writes_for("io.max", "254:0 rbps=0", "v2") == [("io.max", "254:0 rbps=0")]


@pytest.mark.parametrize(("knob", "value", "why"), [
    ("memory.max", "lots", "not a size"),
    ("cpu.max", "a b", "QUOTA PERIOD"),
    ("cpu.max", "-1 100000", "QUOTA PERIOD"),  # v1 would take -1 as unlimited; v2 rejects it
    ("cpu.weight", 0, "outside 1..10000"),
    ("cpu.weight", 10001, "outside 1..10000"),
    ("io.max", "254:0 rbps=0", "0 removes a v1 limit"),
    ("io.max", "254:0 rlat=5", "rlat"),
    ("io.max", "sda rbps=1", "MAJ:MIN"),
    ("cgroup.freeze", 2, "not 1 or 0"),
])
def test_v1_conversion_of_what_has_no_counterpart_is_unsupported(knob, value, why):
    with pytest.raises(KnobUnsupported, match=re.escape(why)):
        writes_for(knob, value, "v1", {})


# memsw: the formula, and that its write order never breaks limit <= memsw

def test_swap_max_v1_is_memsw_equals_memory_plus_swap():
    writes = writes_for("memory.swap.max", "16M", "v1", {"memory.max": "32M"})
    assert writes == [("memory.memsw.limit_in_bytes", "-1"),
                      ("memory.limit_in_bytes", str(32 * M)),
                      ("memory.memsw.limit_in_bytes", str(48 * M))]
    assert writes_for("memory.swap.max", 0, "v1", {"memory.max": "32M"})[-1] == (
        "memory.memsw.limit_in_bytes", str(32 * M))
    assert writes_for("memory.swap.max", "16M", "v2", {"memory.max": "32M"}) == [
        ("memory.swap.max", str(16 * M))]


def test_swap_max_v1_max_is_unlimited_memsw_and_leaves_memory_alone():
    assert writes_for("memory.swap.max", "max", "v1", {}) == [
        ("memory.memsw.limit_in_bytes", "-1")]
    assert writes_for("memory.swap.max", "max", "v1", {"memory.max": "32M"}) == [
        ("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", str(32 * M))]


@pytest.mark.parametrize("ctx", [{}, {"memory.max": "max"}, {"memory.max": None}])
def test_finite_swap_without_memory_limit_has_no_v1_counterpart(ctx):
    with pytest.raises(KnobUnsupported, match="swap alone cannot be limited") as exc:
        writes_for("memory.swap.max", "16M", "v1", ctx)
    assert exc.value.knob == "memory.swap.max" and exc.value.version == "v1"


def test_memory_max_rewrites_memsw_when_swap_is_set():
    assert writes_for("memory.max", "64M", "v1", {"memory.swap.max": 0}) == [
        ("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", str(64 * M)),
        ("memory.memsw.limit_in_bytes", str(64 * M))]
    assert writes_for("memory.max", "64M", "v1", {"memory.swap.max": "max"}) == [
        ("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", str(64 * M))]
    with pytest.raises(KnobUnsupported):
        writes_for("memory.max", "max", "v1", {"memory.swap.max": "8M"})


class FakeMemcgV1:
    """v1 memcg's rule for the two limits (mem_cgroup_resize_max): limit <= memsw, else EINVAL."""

    def __init__(self, limit: int, memsw: int) -> None:
        self.files = {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": memsw}

    def write(self, name: str, text: str) -> None:
        value = 2**63 if text == "-1" else int(text)
        new = dict(self.files, **{name: value})
        if new["memory.limit_in_bytes"] > new["memory.memsw.limit_in_bytes"]:
            raise OSError(f"EINVAL writing {name}={text}")
        self.files = new


@pytest.mark.parametrize("start", [(2**63, 2**63), (8 * M, 8 * M), (128 * M, 256 * M),
                                   (16 * M, 2**63), (1 * M, 1 * M)])
@pytest.mark.parametrize(("memory", "swap"), [("32M", 0), ("32M", "16M"), ("256M", "1G"),
                                              ("4M", 0), ("32M", "max")])
def test_memsw_write_order_is_valid_from_any_state(start, memory, swap):
    cg = FakeMemcgV1(*start)
    for name, text in writes_for("memory.swap.max", swap, "v1", {"memory.max": memory}):
        cg.write(name, text)
    assert cg.files["memory.limit_in_bytes"] == parse_size(memory)
    expected = 2**63 if swap == "max" else parse_size(memory) + parse_size(swap)
    assert cg.files["memory.memsw.limit_in_bytes"] == expected
    cg2 = FakeMemcgV1(*start)
    for name, text in writes_for("memory.max", memory, "v1", {"memory.swap.max": swap}):
        cg2.write(name, text)
    assert cg2.files == cg.files


class FakeCfsV1:
    """v1 CFS bandwidth's rules (tg_set_cfs_bandwidth, tg_cfs_schedulable_down): period in
    [1ms, 1s], quota >= 1ms or -1, and quota/period not above the parent's ratio."""

    def __init__(self, quota: int, period: int, parent_ratio: float) -> None:
        self.quota, self.period, self.parent_ratio = quota, period, parent_ratio

    def write(self, name: str, text: str) -> None:
        quota, period = self.quota, self.period
        if name == "cpu.cfs_quota_us":
            quota = int(text)
        else:
            period = int(text)
        if not 1000 <= period <= 1_000_000 or (quota != -1 and quota < 1000):
            raise OSError(f"EINVAL {name}={text}")
        if quota != -1 and quota / period > self.parent_ratio:
            raise OSError(f"EINVAL {name}={text}: above the parent's ratio")
        self.quota, self.period = quota, period


@pytest.mark.parametrize("start", [(-1, 100000), (20000, 100000), (5000, 10000),
                                   (100000, 1000000), (1000, 1000)])
@pytest.mark.parametrize("target", ["20000 100000", "50000 250000", "2000 10000",
                                    "max 100000", "1000 1000000"])
def test_cpu_max_write_order_never_passes_the_parent_ratio(start, target):
    cfs = FakeCfsV1(*start, parent_ratio=0.2)
    if start[0] != -1 and start[0] / start[1] > 0.2:
        cfs.parent_ratio = start[0] / start[1]
    for name, text in writes_for("cpu.max", target, "v1"):
        cfs.write(name, text)
    q, p = target.split()
    assert (cfs.quota, cfs.period) == (-1 if q == "max" else int(q), int(p))


# cpu.weight <-> cpu.shares: runc's conversion

@pytest.mark.parametrize(("weight", "shares"), [(1, 2), (10000, 262144), (100, 2597), (39, 998),
                                                 (5000, 131059)])
def test_weight_to_shares(weight, shares):
    assert weight_to_shares(weight) == shares
    assert writes_for("cpu.weight", weight, "v1") == [("cpu.shares", str(shares))]


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (262144, 10000), (1024, 39), (0, 0),
                                                 (2597, 99)])
def test_shares_to_weight_is_runcs(shares, weight):
    assert shares_to_weight(shares) == weight


def test_weights_stay_in_range():
    for w in range(1, 10001, 37):
        s = weight_to_shares(w)
        assert 2 <= s <= 262144
        assert abs(shares_to_weight(s) - w) <= 1


# --- metrics --------------------------------------------------------------------------------------

MEMORY_EVENTS = "low 0\nhigh 0\nmax 35\noom 1\noom_kill 1\noom_group_kill 0\n"
OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
CPU_STAT_V2 = ("usage_usec 465000\nuser_usec 460000\nsystem_usec 5000\nnr_periods 25\n"
               "nr_throttled 22\nthrottled_usec 1500000\n")
CPU_STAT_V1 = "nr_periods 21\nnr_throttled 21\nthrottled_time 1580000000\n"
IO_STAT = ("254:0 rbytes=8388608 wbytes=0 rios=128 wios=0 dbytes=0 dios=0\n"
           "254:16 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n")
IO_SERVICE = ("254:0 Read 8388608\n254:0 Write 0\n254:0 Sync 8388608\n254:0 Async 0\n"
              "254:0 Discard 0\n254:0 Total 8388608\nTotal 8388608\n")
RDMA_CURRENT = "rxe0 hca_handle=1 hca_object=2\nrxe1 hca_handle=0 hca_object=0\n"


@pytest.mark.parametrize(("metric", "version", "files", "context", "value"), [
    ("oom_kill", "v2", {"memory.events": MEMORY_EVENTS}, {}, 1),
    ("oom_kill", "v1", {"memory.oom_control": OOM_CONTROL}, {}, 1),
    ("oom_group_kill", "v2", {"memory.events": MEMORY_EVENTS}, {}, 0),
    ("limit_hits", "v2", {"memory.events": MEMORY_EVENTS}, {}, 35),
    ("limit_hits", "v1", {"memory.failcnt": "0\n", "memory.memsw.failcnt": "75\n"}, {}, 75),
    ("limit_hits", "v1", {"memory.failcnt": "61\n"}, {}, 61),  # no swap accounting
    ("usage", "v2", {"memory.current": "20480\n"}, {}, 20480),
    ("usage", "v1", {"memory.usage_in_bytes": "20480\n"}, {}, 20480),
    ("peak", "v2", {"memory.peak": "33554432\n"}, {}, 32 * M),
    ("peak", "v1", {"memory.max_usage_in_bytes": "33554432\n"}, {}, 32 * M),
    ("swap", "v2", {"memory.swap.current": "35651584\n"}, {}, 34 * M),
    ("swap", "v1", {"memory.memsw.usage_in_bytes": "70254592\n",
                    "memory.usage_in_bytes": "33554432\n"}, {}, 70254592 - 32 * M),
    ("swap_peak", "v2", {"memory.swap.peak": "37748736\n"}, {}, 36 * M),
    ("cpu_usage", "v2", {"cpu.stat": CPU_STAT_V2}, {}, 0.465),
    ("cpu_usage", "v1", {"cpuacct.usage": "428892127\n"}, {}, 0.428892127),
    ("nr_throttled", "v2", {"cpu.stat": CPU_STAT_V2}, {}, 22),
    ("nr_throttled", "v1", {"cpu.stat": CPU_STAT_V1}, {}, 21),
    ("io_read_bytes", "v2", {"io.stat": IO_STAT}, {"disk": "254:0"}, 8 * M),
    ("io_read_bytes", "v2", {"io.stat": IO_STAT}, {"disk": "254:16"}, 4096),
    ("io_read_bytes", "v2", {"io.stat": ""}, {"disk": "254:0"}, 0),  # no IO yet: no line
    ("io_read_bytes", "v1", {"blkio.throttle.io_service_bytes": IO_SERVICE}, {"disk": "254:0"},
     8 * M),
    ("io_read_bytes", "v1", {"blkio.throttle.io_service_bytes": "Total 0\n"}, {"disk": "254:0"},
     0),
    ("pids_current", "v2", {"pids.current": "3\n"}, {}, 3),
    ("pids_max_events", "v1", {"pids.events": "max 6\n"}, {}, 6),
    ("pids_max_events", "v2", {"pids.events": "max 1\n"}, {}, 1),
    ("rdma_hca_handle", "v2", {"rdma.current": RDMA_CURRENT}, {}, 1),
    ("rdma_hca_object", "v1", {"rdma.current": RDMA_CURRENT}, {"rdma": "rxe0"}, 2),
    ("rdma_hca_object", "v2", {"rdma.current": RDMA_CURRENT}, {"rdma": "rxe1"}, 0),
    ("frozen", "v2", {"cgroup.events": "populated 1\nfrozen 1\n"}, {}, 1),
    ("frozen", "v2", {"cgroup.events": "populated 1\nfrozen 0\n"}, {}, 0),
    ("frozen", "v1", {"freezer.state": "FROZEN\n"}, {}, 1),
    ("frozen", "v1", {"freezer.state": "FREEZING\n"}, {}, 0),
    ("frozen", "v1", {"freezer.state": "THAWED\n"}, {}, 0),
])
def test_parse_metric(metric, version, files, context, value):
    got = parse_metric(metric, version, files, context)
    assert got == pytest.approx(value)
    assert type(got) is type(value)


def test_parse_metric_absent_file_or_entry_is_none():
    assert parse_metric("swap_peak", "v2", {"memory.swap.peak": None}) is None
    assert parse_metric("swap_peak", "v2", {}) is None
    assert parse_metric("oom_group_kill", "v2", {"memory.events": "max 0\noom_kill 0\n"}) is None
    assert parse_metric("rdma_hca_handle", "v2", {"rdma.current": ""}) is None
    assert parse_metric("io_read_bytes", "v2", {"io.stat": IO_STAT}) is None  # which disk?
    value, reason = knobs.metric_value("swap_peak", "v2", {})
    assert value is None and reason == "memory.swap.peak does not exist"


@pytest.mark.parametrize(("metric", "version", "files"), [
    ("swap", "v1", ["memory.memsw.usage_in_bytes", "memory.usage_in_bytes"]),
    ("swap", "v2", ["memory.swap.current"]),
    ("cpu_usage", "v1", ["cpuacct.usage"]),
    ("cpu_usage", "v2", ["cpu.stat"]),
    ("limit_hits", "v1", ["memory.failcnt", "memory.memsw.failcnt"]),
    ("frozen", "v1", ["freezer.state"]),
    ("io_read_bytes", "v1", ["blkio.throttle.io_service_bytes"]),
])
def test_metric_files(metric, version, files):
    assert metric_files(metric, version) == files


@pytest.mark.parametrize("metric", ["oom_group_kill", "swap_peak"])
def test_v2_only_metrics(metric):
    with pytest.raises(MetricUnsupported, match=f"{metric} has no v1 counterpart"):
        metric_files(metric, "v1")
    with pytest.raises(MetricUnsupported):
        parse_metric(metric, "v1", {})


# --- controllers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "version", "native"), [
    ("io", "v1", "blkio"), ("blkio", "v2", "io"), ("cpuacct", "v2", "cpu"), ("freezer", "v2", None),
    ("memory", "v1", "memory"), ("memory", "v2", "memory"), ("freezer", "v1", "freezer"),
])
def test_controller_name(name, version, native):
    assert knobs.controller_name(name, version) == native


@pytest.mark.parametrize(("name", "version", "ctrl"), [
    ("memory.events", "v2", "memory"), ("cgroup.procs", "v2", None), ("cgroup.freeze", "v2", None),
    ("blkio.throttle.read_bps_device", "v1", "blkio"), ("cpuacct.usage", "v1", "cpuacct"),
    ("cpu.stat", "v1", "cpu"), ("tasks", "v1", None), ("io.stat", "v2", "io"),
    ("freezer.state", "v1", "freezer"),
])
def test_file_controller(name, version, ctrl):
    assert knobs.file_controller(name, version) == ctrl


def test_knob_and_metric_controllers():
    assert knobs.knob_controller("cpu.max", "v1") == "cpu"
    assert knobs.knob_controller("io.max", "v1") == "blkio"
    assert knobs.knob_controller("cgroup.freeze", "v2") is None
    assert knobs.metric_controller("cpu_usage", "v1") == "cpuacct"
    assert knobs.metric_controller("frozen", "v2") is None
    assert knobs.metric_controller("frozen", "v1") == "freezer"
    assert knobs.metric_controller("io_read_bytes", "v2") == "io"


def test_features():
    assert knobs.feature_files("memory.swap", "v1") == ("memory.memsw.limit_in_bytes",)
    assert knobs.feature_files("memory.swap.peak", "v1") is None
    assert FEATURES["rdma"].device == "rdma"
