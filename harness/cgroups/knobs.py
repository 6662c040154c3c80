"""THE one v1/v2 mapping table: version-neutral knobs, metrics and features, and the formulas
that turn one into the other. Data first (KNOBS, METRICS, FEATURES, CONTROLLERS), then the
conversions, all in this file; docs/scenarios.md describes the same tables for scenario writers.

Everything else that knows a knob or a metric asks here: the scenario check takes the names,
each knob's value kind (`Knob.value`: what `kharness validate` accepts) and each metric's unit
(BYTE_METRICS: values may be sizes) from these tables, and the scenario schema's controller and
hierarchy enums are generated from CONTROLLERS and VERSIONS when it is loaded. The file is
longer than ~600 lines on purpose: a knob's table row, its value kind and the formula that
converts it are read together, in one place.

Bottom layer: imports only `harness.units`. Nothing here talks to a guest; `hierarchy.py`
applies what this module computes.

Where the two hierarchies mean different things, the formula says so here:

* memory.swap.max is swap alone; v1 memory.memsw.limit_in_bytes is memory + swap together.
  memsw = memory.max + swap.max. The kernel keeps limit_in_bytes <= memsw.limit_in_bytes and
  rejects (EINVAL) any write that would break it, in either file, so kharness writes
  `memsw = -1, limit = M, memsw = M + S`: every step keeps the invariant whatever the current
  values are. swap.max=max is memsw=-1. A finite swap.max with memory.max unset or `max` cannot
  be expressed on v1 (memsw would limit memory too): KnobUnsupported, the scenario skips there.
* cpu.max "Q P" is cfs_quota_us=Q, cfs_period_us=P on v1. v1 does not reject quota > period
  (that is more than one CPU), but it rejects (EINVAL) a quota/period ratio above the parent's,
  which a transient mix of old and new values can hit. So kharness writes `quota = -1` (always
  allowed), then the period, then the quota.
* cpu.weight <-> cpu.shares: the OCI runtimes' conversion (runc's ConvertCPUSharesToCgroupV2Value,
  crun the same): weight = 1 + ((shares - 2) * 9999) / 262142, and its inverse
  shares = 2 + ((weight - 1) * 262142) / 9999, integer division. Note that the v2 default weight
  100 is shares 2597, not 1024, and that the round trip is not exact (100 -> 2597 -> 99).
* io.max "MAJ:MIN rbps=N wbps=N riops=N wiops=N" is one v1 blkio.throttle.*_device write per
  key, "MAJ:MIN N". v1 has no `max`: 0 removes a v1 limit, so `max` is written as 0; a literal 0
  (v2: ERANGE) has no v1 counterpart.
* cgroup.freeze 1/0 is freezer.state FROZEN/THAWED (v2 freezing is core, not a controller).

Values: sizes (`32M`) become bytes for both hierarchies, `max` is `-1` on v1. On v2 a value
kharness cannot parse is written verbatim (the kernel decides; a scenario may expect its
EINVAL). On v1 a value that needs converting must parse, else the knob is unsupported there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harness.units import format_size, parse_size

V1 = "v1"
V2 = "v2"
VERSIONS = (V1, V2)

# --- errors -----------------------------------------------------------------------------------


class Unsupported(Exception):
    """A knob, metric or feature has no counterpart on a hierarchy: the scenario skips there."""

    def __init__(self, name: str, version: str, reason: str) -> None:
        self.name = name
        self.version = version
        self.reason = reason
        super().__init__(reason)


class KnobUnsupported(Unsupported):
    @property
    def knob(self) -> str:
        return self.name


class MetricUnsupported(Unsupported):
    @property
    def metric(self) -> str:
        return self.name


class UnknownName(ValueError):
    """A knob, metric or feature name that is not in the tables."""


# --- knob values, as a scenario writes them -----------------------------------------------------

_WHOLE = re.compile(r"^[+-]?\d+$")


def _size_or_none(v: object) -> int | None:
    try:
        return parse_size(v.strip() if isinstance(v, str) else v)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None


def _whole_or_none(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _WHOLE.match(v.strip()):
        return int(v)
    return None


def _text_or_none(v: object) -> str | None:
    return str(v).strip() if isinstance(v, str | int) and not isinstance(v, bool) else None


def _keyed_ok(v: object, device: str, keys: tuple[str, ...],
              value_ok: Callable[[str], bool]) -> bool:
    """`DEVICE key=N key=N...` with at least one key: io.max, rdma.max."""
    text = _text_or_none(v)
    words = text.split() if text is not None else []
    if len(words) < 2 or not re.fullmatch(device, words[0]):
        return False
    for word in words[1:]:
        k, eq, val = word.partition("=")
        if not eq or k not in keys or not value_ok(val):
            return False
    return True


@dataclass(frozen=True)
class ValueKind:
    """What a knob's value must look like before anything boots (`kharness validate`); `text`
    completes "VALUE is not ...". A value that passes may still be refused by the kernel (a
    scenario may expect that EINVAL); on v1 the conversion below may find no counterpart."""

    name: str
    text: str
    check: Callable[[object], bool]


def _nonneg(n: int | None) -> bool:
    return n is not None and n >= 0


SIZE = ValueKind("size", "a size (32M, 1G, 512K or bytes)",
                 lambda v: _nonneg(_size_or_none(v)))
SIZE_OR_MAX = ValueKind("size_or_max", "a size (32M, 1G, 512K or bytes) or max",
                        lambda v: _text_or_none(v) == "max" or _nonneg(_size_or_none(v)))
FLAG = ValueKind("flag", "0 or 1", lambda v: _whole_or_none(v) in (0, 1))
INT = ValueKind("int", "a whole number", lambda v: _whole_or_none(v) is not None)
INT_OR_MAX = ValueKind("int_or_max", "a whole number or max",
                       lambda v: _text_or_none(v) == "max" or _nonneg(_whole_or_none(v)))
CPU_MAX = ValueKind("cpu_max", '"QUOTA PERIOD" in microseconds ("50000 100000", "max 100000") '
                    "or max", lambda v: (t := _text_or_none(v)) is not None
                    and re.fullmatch(r"(max|\d+)( \d+)?", t) is not None)
# {disk} and {rdma} are the scenario's placeholders for the machine's device (the runner
# substitutes them before writing).
IO_MAX = ValueKind("io_max", '"{disk} rbps=N wbps=N riops=N wiops=N" (N a number, size or max)',
                   lambda v: _keyed_ok(v, r"\{disk\}|\d+:\d+", ("rbps", "wbps", "riops", "wiops"),
                                       lambda s: s == "max" or _size_or_none(s) is not None))
RDMA_MAX = ValueKind("rdma_max", '"{rdma} hca_handle=N hca_object=N" (N a number or max)',
                     lambda v: _keyed_ok(v, r".+", ("hca_handle", "hca_object"),
                                         lambda s: s == "max" or _WHOLE.match(s) is not None))
CPU_LIST = ValueKind("cpu_list", 'a CPU or node list ("0", "0-1", "0,2")',
                     lambda v: (t := _text_or_none(v)) is not None
                     and re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", t) is not None)


# --- the tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """A version-neutral knob. `v2_file`/`v1_files` None: no counterpart on that hierarchy.
    A controller None means the file is core cgroup (v2 cgroup.freeze). `value` is what a
    scenario may write; `form` names the conversion below (size, swap, cpu.max, cpu.weight,
    io.max, freeze, text)."""

    name: str
    v2_file: str | None
    v1_files: tuple[str, ...] | None
    v2_controller: str | None
    v1_controller: str | None
    value: ValueKind
    note: str = ""
    form: str = "text"


def _k(name: str, v2: str | None, v1: tuple[str, ...] | None, ctrl2: str | None,
       ctrl1: str | None, value: ValueKind, form: str = "text", note: str = "") -> Knob:
    return Knob(name, v2, v1, ctrl2, ctrl1, value, note, form)


_BLKIO = ("blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
          "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device")

KNOBS: dict[str, Knob] = {k.name: k for k in (
    _k("memory.max", "memory.max", ("memory.limit_in_bytes",), "memory", "memory", SIZE_OR_MAX,
       "size", "same bytes; max = -1 on v1 (memsw is rewritten too when memory.swap.max is set)"),
    _k("memory.swap.max", "memory.swap.max", ("memory.memsw.limit_in_bytes",), "memory",
       "memory", SIZE_OR_MAX, "swap",
       "memsw is memory+swap: memsw = memory.max + swap.max (max = -1)"),
    _k("memory.high", "memory.high", None, "memory", None, SIZE_OR_MAX, "size"),
    _k("memory.low", "memory.low", None, "memory", None, SIZE_OR_MAX, "size"),
    _k("memory.min", "memory.min", None, "memory", None, SIZE_OR_MAX, "size"),
    _k("memory.oom.group", "memory.oom.group", None, "memory", None, FLAG),
    _k("memory.reclaim", "memory.reclaim", None, "memory", None, SIZE, "size"),
    _k("memory.soft_limit_in_bytes", None, ("memory.soft_limit_in_bytes",), None, "memory",
       SIZE_OR_MAX, "size"),
    _k("memory.swappiness", None, ("memory.swappiness",), None, "memory", INT),
    _k("memory.oom_control", None, ("memory.oom_control",), None, "memory", FLAG),
    _k("memory.move_charge_at_immigrate", None, ("memory.move_charge_at_immigrate",), None,
       "memory", INT),
    _k("cpu.max", "cpu.max", ("cpu.cfs_quota_us", "cpu.cfs_period_us"), "cpu", "cpu", CPU_MAX,
       "cpu.max", "quota -1, period P, quota Q on v1; max = -1"),
    _k("cpu.weight", "cpu.weight", ("cpu.shares",), "cpu", "cpu", INT, "cpu.weight",
       "shares = 2 + (weight - 1) * 262142 / 9999 (runc, crun)"),
    _k("io.max", "io.max", _BLKIO, "io", "blkio", IO_MAX, "io.max",
       "one v1 blkio.throttle.*_device write per key, MAJ:MIN N; max = 0 on v1"),
    _k("pids.max", "pids.max", ("pids.max",), "pids", "pids", INT_OR_MAX),
    _k("rdma.max", "rdma.max", ("rdma.max",), "rdma", "rdma", RDMA_MAX),
    _k("cgroup.freeze", "cgroup.freeze", ("freezer.state",), None, "freezer", FLAG, "freeze",
       "1/0 = FROZEN/THAWED"),
    _k("cpuset.cpus", "cpuset.cpus", ("cpuset.cpus",), "cpuset", "cpuset", CPU_LIST, "text",
       "v1 needs cpuset.cpus and cpuset.mems set before a task joins"),
    _k("cpuset.mems", "cpuset.mems", ("cpuset.mems",), "cpuset", "cpuset", CPU_LIST, "text",
       "v1 needs cpuset.cpus and cpuset.mems set before a task joins"),
)}


@dataclass(frozen=True)
class Source:
    """Where a metric comes from on one hierarchy, and how it is read.

    form: `value` (the file's number), `keyed` (the `key N` line of a flat-keyed file such as
    memory.events), `device` (the `key=N` of the device's line: io.stat, rdma.current),
    `device_line` (v1 blkio: `MAJ:MIN Key N` lines), `difference` (files[0] - files[1]),
    `equals` (1 if the file's text is `key`, else 0), `sum` (files[0] plus the `optional`
    files that exist). `scale` multiplies the number (usage_usec -> seconds). `device` names
    the context entry that picks the line (`disk` -> "254:0", `rdma` -> "rxe0")."""

    files: tuple[str, ...]
    form: str = "value"
    key: str | None = None
    scale: float = 1
    device: str | None = None
    optional: tuple[str, ...] = ()  # read when present (sum), not required


@dataclass(frozen=True)
class Metric:
    """A version-neutral metric. `unit` says what an expectation compares it with: bytes (the
    value may be a size, 32M), count, seconds or bool (0/1) (plain numbers)."""

    name: str
    v2: Source | None
    v1: Source | None
    unit: str  # bytes, count, seconds, bool
    note: str = ""


def _m(name: str, v2: Source | None, v1: Source | None, unit: str, note: str = "") -> Metric:
    return Metric(name, v2, v1, unit, note)


METRICS: dict[str, Metric] = {m.name: m for m in (
    _m("oom_kill", Source(("memory.events",), "keyed", "oom_kill"),
       Source(("memory.oom_control",), "keyed", "oom_kill"), "count"),
    _m("oom_group_kill", Source(("memory.events",), "keyed", "oom_group_kill"), None, "count"),
    _m("limit_hits", Source(("memory.events",), "keyed", "max"),
       Source(("memory.failcnt",), "sum", optional=("memory.memsw.failcnt",)), "count",
       "v1: memory.failcnt + memory.memsw.failcnt. The charge tries memsw first, so with "
       "memsw = limit (swap.max 0) every hit is in memsw.failcnt and memory.failcnt stays 0 "
       "(measured on 6.1)"),
    _m("usage", Source(("memory.current",)), Source(("memory.usage_in_bytes",)), "bytes"),
    _m("peak", Source(("memory.peak",)), Source(("memory.max_usage_in_bytes",)), "bytes"),
    _m("swap", Source(("memory.swap.current",)),
       Source(("memory.memsw.usage_in_bytes", "memory.usage_in_bytes"), "difference"), "bytes",
       "v1: memsw.usage - usage (memsw counts memory and swap together)"),
    _m("swap_peak", Source(("memory.swap.peak",)), None, "bytes",
       "memory.swap.peak exists from 6.12 (absent on 6.1)"),
    _m("cpu_usage", Source(("cpu.stat",), "keyed", "usage_usec", 1e-6),
       Source(("cpuacct.usage",), scale=1e-9), "seconds"),
    _m("nr_throttled", Source(("cpu.stat",), "keyed", "nr_throttled"),
       Source(("cpu.stat",), "keyed", "nr_throttled"), "count"),
    _m("io_read_bytes", Source(("io.stat",), "device", "rbytes", device="disk"),
       Source(("blkio.throttle.io_service_bytes",), "device_line", "Read", device="disk"),
       "bytes"),
    _m("pids_current", Source(("pids.current",)), Source(("pids.current",)), "count"),
    _m("pids_max_events", Source(("pids.events",), "keyed", "max"),
       Source(("pids.events",), "keyed", "max"), "count"),
    _m("rdma_hca_handle", Source(("rdma.current",), "device", "hca_handle", device="rdma"),
       Source(("rdma.current",), "device", "hca_handle", device="rdma"), "count"),
    _m("rdma_hca_object", Source(("rdma.current",), "device", "hca_object", device="rdma"),
       Source(("rdma.current",), "device", "hca_object", device="rdma"), "count"),
    _m("frozen", Source(("cgroup.events",), "keyed", "frozen"),
       Source(("freezer.state",), "equals", "FROZEN"), "bool"),
)}

# Metrics the runner computes from the samples a `sample: true` run step takes in that cgroup
# (harness/runner.py), not read from a cgroup file: no source on either hierarchy.
SAMPLED_METRICS: dict[str, Metric] = {m.name: m for m in (
    _m("sampled_peak", None, None, "bytes", "the highest usage among the samples"),
    _m("sampled_swap_peak", None, None, "bytes", "the highest swap among the samples"),
)}

# Metrics counted in bytes: an expectation's value may be a size (32M). Derived from the units.
BYTE_METRICS = frozenset(m.name for m in (*METRICS.values(), *SAMPLED_METRICS.values())
                         if m.unit == "bytes")


@dataclass(frozen=True)
class Feature:
    """A named feature (`requires.features`): present when every file exists in a (non-root)
    cgroup of the hierarchy, and, with `device`, when the machine has that device."""

    name: str
    v2_files: tuple[str, ...] | None
    v1_files: tuple[str, ...] | None
    device: str | None = None  # rdma: /sys/class/infiniband/<RDMA_DEVICE>
    note: str = ""


RDMA_DEVICE = "rxe0"

FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("memory.swap", ("memory.swap.max",), ("memory.memsw.limit_in_bytes",),
            note="swap accounting"),
    Feature("memory.peak", ("memory.peak",), ("memory.max_usage_in_bytes",)),
    Feature("memory.swap.peak", ("memory.swap.peak",), None, note="6.12+"),
    Feature("io", ("io.max",), ("blkio.throttle.read_bps_device",), note="IO throttling"),
    Feature("rdma", ("rdma.max",), ("rdma.max",), device="rdma"),
)}

# Controllers, as either hierarchy names them, in the order `requires.controllers` lists them
# (the schema's enum), with the hierarchies that have a controller of that name. A v2 name ->
# its v1 name where they differ, and back. On v2, freezing is core (cgroup.freeze) and
# perf_event is implicit: no controller to enable.
_CONTROLLER_VERSIONS: dict[str, tuple[str, ...]] = {
    "memory": (V1, V2), "cpu": (V1, V2), "cpuacct": (V1,), "io": (V2,), "blkio": (V1,),
    "pids": (V1, V2), "rdma": (V1, V2), "freezer": (V1,), "cpuset": (V1, V2),
    "hugetlb": (V1, V2), "misc": (V1, V2), "perf_event": (V1,), "net_cls": (V1,),
    "net_prio": (V1,), "devices": (V1,),
}
CONTROLLERS = tuple(_CONTROLLER_VERSIONS)
V1_CONTROLLERS = tuple(sorted(c for c, v in _CONTROLLER_VERSIONS.items() if V1 in v))
V2_CONTROLLERS = tuple(sorted(c for c, v in _CONTROLLER_VERSIONS.items() if V2 in v))
_V1_NAME = {"io": "blkio"}
_V2_NAME: dict[str, str | None] = {"blkio": "io", "cpuacct": "cpu", "freezer": None,
                                   "perf_event": None}


# --- lookups ----------------------------------------------------------------------------------


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"hierarchy version must be v1 or v2, not {version!r}")


def knob(name: str) -> Knob:
    try:
        return KNOBS[name]
    except KeyError:
        raise UnknownName(f"unknown knob {name!r} (known: {', '.join(KNOBS)})") from None


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownName(f"unknown metric {name!r} (known: {', '.join(METRICS)})") from None


def feature(name: str) -> Feature:
    try:
        return FEATURES[name]
    except KeyError:
        raise UnknownName(f"unknown feature {name!r} (known: {', '.join(FEATURES)})") from None


def controller_name(name: str, version: str) -> str | None:
    """A controller as `version` calls it: io <-> blkio, cpuacct -> cpu on v2. None when v2 needs
    no controller for it (freezer: cgroup.freeze is core; perf_event is implicit)."""
    _check_version(version)
    if version == V1:
        return _V1_NAME.get(name, name)
    return _V2_NAME.get(name, name)


def file_controller(filename: str, version: str) -> str | None:
    """The controller a cgroup file belongs to (memory.events -> memory, blkio.* -> blkio);
    None for core files (cgroup.procs, cgroup.freeze, tasks, notify_on_release)."""
    _check_version(version)
    prefix = filename.split(".", 1)[0]
    known = V1_CONTROLLERS if version == V1 else V2_CONTROLLERS
    return prefix if prefix in known else None


def knob_controller(name: str, version: str) -> str | None:
    k = knob(name)
    _check_version(version)
    return k.v1_controller if version == V1 else k.v2_controller


def metric_source(name: str, version: str) -> Source:
    """The metric's source on `version`; MetricUnsupported when it has none there."""
    m = metric(name)
    _check_version(version)
    src = m.v1 if version == V1 else m.v2
    if src is None:
        raise MetricUnsupported(name, version, f"{name} has no {version} counterpart")
    return src


def metric_files(name: str, version: str) -> list[str]:
    """The files `parse_metric` needs, so a caller reads exactly those (the optional ones
    last: they count when present)."""
    src = metric_source(name, version)
    return [*src.files, *src.optional]


def metric_required_files(name: str, version: str) -> list[str]:
    """The files without which the metric is unavailable."""
    return list(metric_source(name, version).files)


def metric_controller(name: str, version: str) -> str | None:
    for f in metric_source(name, version).files:
        ctrl = file_controller(f, version)
        if ctrl is not None:
            return ctrl
    return None


def feature_files(name: str, version: str) -> tuple[str, ...] | None:
    f = feature(name)
    _check_version(version)
    return f.v1_files if version == V1 else f.v2_files


# --- knob values -> file writes ---------------------------------------------------------------


def value_text(value: object) -> str:
    """A value as written to a cgroup file: True -> 1, 2.0 -> 2, strings stripped."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _bytes_or_max(value: object) -> int | str | None:
    """A size knob's value: bytes, "max", or None when it is neither."""
    if value_text(value) == "max":
        return "max"
    try:
        return parse_size(value if isinstance(value, int | str | float) else str(value))
    except ValueError:
        return None


def _size_v2(value: object) -> str:
    v = _bytes_or_max(value)
    return value_text(value) if v is None else str(v)


def _size_v1(knob_name: str, value: object) -> str:
    v = _bytes_or_max(value)
    if v is None:
        raise KnobUnsupported(knob_name, V1, f"{knob_name} {value!r} is not a size or max: "
                              "it has no v1 counterpart")
    return "-1" if v == "max" else str(v)


def _cpu_max_parse(value: object) -> tuple[int | str, int | None] | None:
    """cpu.max "Q P", "Q", "max", "max P" -> (Q, P); None when it does not parse."""
    parts = value_text(value).split()
    if not 1 <= len(parts) <= 2:
        return None
    quota: int | str
    if parts[0] == "max":
        quota = "max"
    elif parts[0].isdigit():
        quota = int(parts[0])
    else:
        return None
    period = None
    if len(parts) == 2:
        if not parts[1].isdigit():
            return None
        period = int(parts[1])
    return quota, period


def weight_to_shares(weight: int) -> int:
    """v2 cpu.weight -> v1 cpu.shares, the OCI runtimes' inverse conversion."""
    return 2 + ((weight - 1) * 262142) // 9999


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares -> v2 cpu.weight: runc's ConvertCPUSharesToCgroupV2Value (crun the same)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


_IO_KEYS = {"rbps": "blkio.throttle.read_bps_device", "wbps": "blkio.throttle.write_bps_device",
            "riops": "blkio.throttle.read_iops_device",
            "wiops": "blkio.throttle.write_iops_device"}
_DEVICE = re.compile(r"\d+:\d+")


def _io_lines(value: object) -> list[tuple[str, list[tuple[str, str]]]]:
    """io.max text -> [(MAJ:MIN, [(key, value), ...])], one entry per line; sizes in the bps
    keys become bytes. Raises ValueError when a line does not parse."""
    out = []
    for line in value_text(value).splitlines():
        parts = line.split()
        if not parts:
            continue
        if not _DEVICE.fullmatch(parts[0]):
            raise ValueError(f"io.max line {line!r} does not start with MAJ:MIN")
        pairs = []
        for tok in parts[1:]:
            key, sep, val = tok.partition("=")
            if not sep or not val:
                raise ValueError(f"io.max token {tok!r} is not key=value")
            if val != "max" and key in ("rbps", "wbps"):
                val = str(parse_size(val))
            elif val != "max":
                val = str(int(val))
            pairs.append((key, val))
        out.append((parts[0], pairs))
    return out


def _writes_v2(k: Knob, value: object) -> list[tuple[str, str]]:
    assert k.v2_file is not None
    if k.form in ("size", "swap"):
        return [(k.v2_file, _size_v2(value))]
    if k.form == "cpu.max":
        parsed = _cpu_max_parse(value)
        if parsed is None:
            return [(k.v2_file, value_text(value))]
        quota, period = parsed
        return [(k.v2_file, f"{quota}" if period is None else f"{quota} {period}")]
    if k.form == "io.max":
        try:
            lines = _io_lines(value)
        except ValueError:
            return [(k.v2_file, value_text(value))]
        # the kernel parses one device per write
        return [(k.v2_file, " ".join([dev] + [f"{key}={v}" for key, v in pairs]))
                for dev, pairs in lines]
    return [(k.v2_file, value_text(value))]


def _context_size(context: Mapping[str, object], name: str) -> int | str | None:
    if name not in context or context[name] is None:
        return None
    v = _bytes_or_max(context[name])
    if v is None:
        raise KnobUnsupported(name, V1, f"{name} {context[name]!r} is not a size or max")
    return v


def _memsw_writes(memory: int | str | None, swap: int | str, knob_name: str
                  ) -> list[tuple[str, str]]:
    """The v1 writes that give memory.max=memory, memory.swap.max=swap (the formula above).
    memory None: memory.max is not set by the scenario (unlimited, and left alone)."""
    limit = [] if memory is None else [
        ("memory.limit_in_bytes", "-1" if memory == "max" else str(memory))]
    if swap == "max":
        return [("memory.memsw.limit_in_bytes", "-1"), *limit]
    if memory in (None, "max"):
        raise KnobUnsupported(
            knob_name, V1, f"memory.swap.max {format_size(int(swap))} with memory.max unlimited "
            "has no v1 counterpart: v1 memsw limits memory+swap together, so swap alone cannot "
            "be limited while memory is not")
    assert isinstance(memory, int) and isinstance(swap, int)
    return [("memory.memsw.limit_in_bytes", "-1"), *limit,
            ("memory.memsw.limit_in_bytes", str(memory + swap))]


def _writes_v1(k: Knob, value: object, context: Mapping[str, object]) -> list[tuple[str, str]]:
    assert k.v1_files is not None
    name = k.name
    if k.name == "memory.max":
        swap = _context_size(context, "memory.swap.max")
        memory = _bytes_or_max(value)
        if swap is None or memory is None:
            return [("memory.limit_in_bytes", _size_v1(name, value))]
        return _memsw_writes(memory, swap, name)
    if k.form == "swap":
        swap = _bytes_or_max(value)
        if swap is None:
            raise KnobUnsupported(name, V1, f"{name} {value!r} is not a size or max: "
                                  "it has no v1 counterpart")
        return _memsw_writes(_context_size(context, "memory.max"), swap, name)
    if k.form == "size":
        return [(k.v1_files[0], _size_v1(name, value))]
    if k.form == "cpu.max":
        parsed = _cpu_max_parse(value)
        if parsed is None:
            raise KnobUnsupported(name, V1, f"cpu.max {value!r} is not \"QUOTA PERIOD\": "
                                  "it has no v1 counterpart")
        quota, period = parsed
        q = "-1" if quota == "max" else str(quota)
        if period is None:
            return [("cpu.cfs_quota_us", q)]
        writes = [("cpu.cfs_quota_us", "-1"), ("cpu.cfs_period_us", str(period))]
        if q != "-1":
            writes.append(("cpu.cfs_quota_us", q))
        return writes
    if k.form == "cpu.weight":
        text = value_text(value)
        if not text.isdigit() or not 1 <= int(text) <= 10000:
            raise KnobUnsupported(name, V1, f"cpu.weight {value!r} is outside 1..10000 "
                                  "(v2 rejects it; v1 cpu.shares would clamp it instead)")
        return [("cpu.shares", str(weight_to_shares(int(text))))]
    if k.form == "io.max":
        try:
            lines = _io_lines(value)
        except ValueError as exc:
            raise KnobUnsupported(name, V1, f"{exc}: it has no v1 counterpart") from None
        writes = []
        for dev, pairs in lines:
            for key, val in pairs:
                if key not in _IO_KEYS:
                    raise KnobUnsupported(name, V1, f"io.max key {key!r} has no v1 counterpart "
                                          f"(v1 has {', '.join(_IO_KEYS)})")
                if val == "0":
                    raise KnobUnsupported(name, V1, f"io.max {key}=0 has no v1 counterpart "
                                          "(0 removes a v1 limit; v2 rejects it)")
                writes.append((_IO_KEYS[key], f"{dev} {'0' if val == 'max' else val}"))
        return writes
    if k.form == "freeze":
        text = value_text(value)
        if text not in ("0", "1"):
            raise KnobUnsupported(name, V1, f"cgroup.freeze {value!r} is not 1 or 0: it has "
                                  "no v1 counterpart")
        return [("freezer.state", "FROZEN" if text == "1" else "THAWED")]
    return [(k.v1_files[0], value_text(value))]


def writes_for(name: str, value: object, version: str,
               context: Mapping[str, object] | None = None) -> list[tuple[str, str]]:
    """The (file, text) writes, in order, that set knob `name` to `value` on `version`.

    `context` holds the cgroup's other knob values as the scenario gives them (the v1 memsw
    formula needs memory.max and memory.swap.max). Raises KnobUnsupported when the knob (or this
    value of it) has no counterpart on `version`, UnknownName for a knob not in KNOBS.
    """
    k = knob(name)
    _check_version(version)
    ctx = context or {}
    if version == V2:
        if k.v2_file is None:
            raise KnobUnsupported(name, V2, f"{name} has no v2 counterpart")
        return _writes_v2(k, value)
    if k.v1_files is None:
        raise KnobUnsupported(name, V1, f"{name} has no v1 counterpart")
    return _writes_v1(k, value, ctx)


# --- file texts -> metric values --------------------------------------------------------------


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _keyed(text: str, key: str) -> str | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == key:
            return parts[1]
    return None


def _scaled(n: float | None, scale: float) -> int | float | None:
    if n is None or scale == 1:
        return n
    return n * scale


def metric_value(name: str, version: str, files: Mapping[str, str | None],
                 context: Mapping[str, object] | None = None) -> tuple[int | float | None, str]:
    """(value, reason): the metric from the raw texts of its files; value None with the reason
    when a file is absent (None or missing from `files`) or holds no such entry."""
    src = metric_source(name, version)
    ctx = context or {}
    texts = []
    for f in src.files:
        text = files.get(f)
        if text is None:
            return None, f"{f} does not exist"
        texts.append(text)
    text = texts[0]
    if src.form == "value":
        n = _number(text.strip())
        if n is None:
            return None, f"{src.files[0]} holds {text.strip()!r}"
        return _scaled(n, src.scale), ""
    if src.form == "keyed":
        assert src.key is not None
        raw = _keyed(text, src.key)
        n = None if raw is None else _number(raw)
        if n is None:
            return None, f"{src.files[0]} has no {src.key} entry"
        return _scaled(n, src.scale), ""
    if src.form == "difference":
        a, b = _number(texts[0].strip()), _number(texts[1].strip())
        if a is None or b is None:
            return None, f"{' - '.join(src.files)}: not numbers"
        return a - b, ""
    if src.form == "sum":
        total: int | float = 0
        for f, t in [(src.files[0], text)] + [(o, files.get(o)) for o in src.optional]:
            if t is None:
                continue
            n = _number(t.strip())
            if n is None:
                return None, f"{f} holds {t.strip()!r}"
            total += n
        return total, ""
    if src.form == "equals":
        return (1 if text.strip() == src.key else 0), ""
    if src.form in ("device", "device_line"):
        assert src.key is not None and src.device is not None
        device = ctx.get(src.device)
        if device is None and src.device == "disk":
            return None, f"{name} needs the disk's MAJ:MIN (context {src.device!r})"
        for line in text.splitlines():
            parts = line.split()
            if not parts or (device is not None and parts[0] != str(device)):
                continue
            if src.form == "device_line":
                if len(parts) == 3 and parts[1] == src.key:
                    return _number(parts[2]), ""
                continue
            for tok in parts[1:]:
                key, _, val = tok.partition("=")
                if key == src.key:
                    return _number(val), ""
        if src.device == "disk":
            return 0, ""  # no line: the device has seen no IO in this cgroup
        return None, f"{src.files[0]} has no {device or 'device'} line"
    raise AssertionError(f"unknown source form {src.form!r}")


def parse_metric(name: str, version: str, files: Mapping[str, str | None],
                 context: Mapping[str, object] | None = None) -> int | float | None:
    """The metric from the raw texts of the files `metric_files` named; None when a file is
    absent. `context` picks the device of per-device metrics (`disk`: "254:0", `rdma`:
    "rxe0"; rdma defaults to the first device listed)."""
    return metric_value(name, version, files, context)[0]
