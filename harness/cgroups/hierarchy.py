"""A cgroup hierarchy in a running guest: one interface, two implementations (v1, v2).

The scenario speaks version-neutral knobs and metrics; `knobs.py` maps them to files and this
module applies them through a channel (anything with `run(cmd, timeout, check, stdin) ->
CommandResult`; harness.channels.ssh.SSHChannel is the real one). Each operation is one round
trip: a short busybox-sh script, not a command per file. What the scripts say and how their
output reads is `guest.py`'s (the guest-shell protocol: quoting, status lines, errno names);
this module decides what to do: which directories and files, in which order, on which kernel.

The guest's mounts come from images/init: v2 is cgroup2 on /sys/fs/cgroup with every controller
enabled in the root's cgroup.subtree_control; v1 mounts each controller at
/sys/fs/cgroup/<name> (cpu and cpuacct together at cpu,cpuacct, with cpu and cpuacct links).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from harness.channels import CommandResult

from . import guest, knobs
from .guest import (
    SETTLE_READS,
    CgroupError,
    Sample,
    Sampler,
    WriteResult,
    errno_from_message,
    parse_samples,
    parse_status,
)
from .knobs import V1, V2, KnobUnsupported, MetricUnsupported, UnknownName

ROOT = "/sys/fs/cgroup"


class Channel(Protocol):
    def run(self, cmd: str, timeout: float | None = 60.0, stdin: str | bytes | None = None,
            check: bool = False) -> CommandResult: ...


@dataclass(frozen=True)
class Reading:
    """A metric's value, or None with the reason (file absent on this kernel, no counterpart on
    this hierarchy, controller not available)."""

    value: int | float | None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.value is not None


# --- paths ----------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_.:@+,=-]+")


def clean_path(path: str) -> str:
    """A cgroup path relative to the hierarchy root: `kh/scen/hog`. Components are restricted to
    [A-Za-z0-9_.:@+,=-], what scenario cgroup names (the schema's pattern) and the runner's
    scenario slugs are made of; `.`/`..` and the root itself are refused. The guest scripts do
    not rely on it: guest.py quotes every path it sends."""
    parts = [p for p in path.strip().strip("/").split("/") if p]
    if not parts:
        raise ValueError(f"cgroup path {path!r}: the root cgroup cannot be used")
    for p in parts:
        if p in (".", "..") or not _NAME.fullmatch(p):
            raise ValueError(f"cgroup path {path!r}: bad component {p!r} (allowed: letters, "
                             "digits and _.:@+,=-)")
    return "/".join(parts)


# --- the hierarchy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Probe:
    release: str
    controllers: frozenset[str]
    mounts: Mapping[str, str]  # v1: controller -> mount dir
    files: frozenset[str]  # files of a fresh child cgroup (all hierarchies)
    devices: frozenset[str]  # RDMA devices


class Hierarchy(ABC):
    """The cgroups of one guest, as version-neutral operations. Use make_hierarchy()."""

    version: str = ""

    def __init__(self, channel: Channel, timeout: float = 60.0) -> None:
        self.channel = channel
        self.timeout = timeout
        self._probe_cache: _Probe | None = None
        self._samplers = 0

    # --- plumbing ---------------------------------------------------------------------------

    def _run(self, script: str, timeout: float | None = None) -> CommandResult:
        return self.channel.run(script, timeout=timeout or self.timeout)

    @abstractmethod
    def _probe_script(self) -> str: ...

    @abstractmethod
    def _parse_probe(self, sections: dict[str, str]) -> _Probe: ...

    def _probe(self) -> _Probe:
        """What the guest has, asked once: kernel release, controllers, the files of a fresh child
        cgroup (for features and supports), RDMA devices."""
        if self._probe_cache is None:
            res = self._run(self._probe_script())
            sections = guest.probe_sections(res.stdout)
            if "uname" not in sections:
                raise CgroupError(f"probing the {self.version} hierarchy failed: "
                                  f"{(res.stderr or res.stdout).strip()[-300:]}")
            self._probe_cache = self._parse_probe(sections)
        return self._probe_cache

    @property
    def release(self) -> str:
        """The guest kernel's release (uname -r)."""
        return self._probe().release

    # --- controllers ------------------------------------------------------------------------

    def controllers(self) -> set[str]:
        """Available controllers, as this hierarchy names them (v1: blkio, cpuacct, freezer...)."""
        return set(self._probe().controllers)

    def has_controller(self, name: str) -> tuple[bool, str]:
        """(available, reason) for a controller named either way (io or blkio)."""
        native = knobs.controller_name(name, self.version)
        if native is None:
            return True, ""
        if native in self._probe().controllers:
            return True, ""
        have = " ".join(sorted(self._probe().controllers)) or "none"
        return False, (f"{native} controller not available on {self.version} "
                       f"({self.release}; available: {have})")

    def knob_controllers(self, knob: str) -> set[str]:
        """The controllers (as this hierarchy names them) a knob needs; empty for a core file
        (v2 cgroup.freeze) or a knob without counterpart here (see supports())."""
        ctrl = knobs.knob_controller(knob, self.version)
        return {ctrl} if ctrl else set()

    def metric_controllers(self, metric: str) -> set[str]:
        """The controllers a metric needs here (v2: enable them with create() for nested
        cgroups); empty for a core file or a metric without counterpart here."""
        try:
            ctrl = knobs.metric_controller(metric, self.version)
        except MetricUnsupported:
            return set()
        return {ctrl} if ctrl else set()

    def _native(self, controllers: Iterable[str]) -> set[str]:
        out = set()
        for c in controllers:
            native = knobs.controller_name(c, self.version)
            if native is None:
                continue
            ok, reason = self.has_controller(native)
            if not ok:
                raise CgroupError(reason)
            out.add(native)
        return out

    # --- paths ------------------------------------------------------------------------------

    @abstractmethod
    def cgroup_dir(self, path: str, controller: str | None = None) -> str:
        """The cgroup's directory in the guest (v1: in `controller`'s hierarchy)."""

    @abstractmethod
    def _file_dirs(self, path: str, filename: str) -> list[str]:
        """The directories where `filename` of the cgroup lives (several for a core file on
        v1: one per hierarchy)."""

    # --- create / remove --------------------------------------------------------------------

    @abstractmethod
    def _create_script(self, path: str, controllers: set[str]) -> str: ...

    def create(self, path: str, controllers: Iterable[str] = ()) -> None:
        """Create the cgroup and its missing parents so that `controllers` (named either way:
        the ones its knobs, metrics and sampling need) work in it. Raises CgroupError."""
        path = clean_path(path)
        script = self._create_script(path, self._native(controllers))
        res = self._run(script)
        if not res.ok:
            raise CgroupError(f"cannot create cgroup {path} on {self.version} ({self.release}): "
                              f"{(res.stderr or res.stdout).strip()}")

    @abstractmethod
    def _top_dirs(self, path: str) -> list[str]:
        """Every directory of the cgroup (one per v1 hierarchy), for procs and remove."""

    def procs(self, path: str, recursive: bool = False) -> list[int]:
        """PIDs in the cgroup (and its descendants with recursive=True), sorted."""
        res = self._run(guest.procs_script(self._top_dirs(clean_path(path)), recursive))
        return guest.parse_pids(res.stdout)

    def _kill_script(self, tops: list[str], rmdir: bool, timeout: float) -> str:
        """Thaw, then SIGKILL every process in the subtrees under `tops` until none is left
        (and with rmdir, remove the directories bottom-up); see guest.kill_script."""
        return guest.kill_script(tops, self._thaw_kill_script(tops), rmdir, timeout)

    def kill(self, path: str, timeout: float = 20.0) -> None:
        """SIGKILL every process in the cgroup's subtree (thawing it first: it stays thawed) and
        wait until none is left; the cgroups stay. Raises CgroupError naming the cgroup and the
        processes left."""
        path = clean_path(path)
        res = self._run(self._kill_script(self._top_dirs(path), False, timeout),
                        timeout=timeout + 30)
        if not res.ok:
            detail = (res.stdout + res.stderr).strip()
            raise CgroupError(f"cannot kill the processes of cgroup {path} on {self.version} "
                              f"({self.release}) within {timeout:.0f}s: "
                              f"{detail or f'exit {res.exit_status}'}")

    def remove(self, path: str, timeout: float = 20.0) -> None:
        """Kill every process in the cgroup's subtree (thawing it first), remove the directories
        bottom-up in every hierarchy, and check they are gone. Raises CgroupError naming the
        cgroup, the processes left and the rmdir error otherwise. Absent cgroups are fine."""
        path = clean_path(path)
        res = self._run(self._kill_script(self._top_dirs(path), True, timeout),
                        timeout=timeout + 30)
        if not res.ok:
            detail = (res.stdout + res.stderr).strip()
            raise CgroupError(f"cannot remove cgroup {path} on {self.version} ({self.release}) "
                              f"within {timeout:.0f}s: {detail or f'exit {res.exit_status}'}")

    @abstractmethod
    def _thaw_kill_script(self, tops: list[str]) -> str: ...

    # --- files and knobs ---------------------------------------------------------------------

    def _write_many(self, path: str, writes: list[tuple[str, str]]) -> list[WriteResult]:
        """Write in order and stop at the first failure: the results are the writes done, the
        failed one last. Exit status 100 + i names the failed write; its message is stderr."""
        path = clean_path(path)
        planned: list[tuple[list[str], str]] = []
        for filename, value in writes:
            dirs = self._file_dirs(path, filename)
            if not dirs:
                ctrl = knobs.file_controller(filename, self.version) or "?"
                done = [(f, v) for files, v in planned for f in files]
                return [*guest.write_results(done, None), WriteResult(
                    f"{ROOT}/{ctrl}/{path}/{filename}", value, False, None,
                    self._missing_reason(filename))]
            # a core file on v1 (cgroup.procs...): in each hierarchy the cgroup is in, and in one
            # at least
            planned.append(([f"{d}/{filename}" for d in dirs], value))
        gone = f"kharness: cgroup {path} is in no {self.version} hierarchy: {os.strerror(2)}"
        script, targets = guest.write_script(planned, gone)
        return guest.write_results(targets, self._run(script))

    def _missing_reason(self, filename: str) -> str:
        ctrl = knobs.file_controller(filename, self.version)
        ok, reason = self.has_controller(ctrl) if ctrl else (True, "")
        return reason if not ok else f"{filename}: no hierarchy for it on {self.version}"

    def write_file(self, path: str, filename: str, value: object) -> WriteResult:
        """Write a raw cgroup file verbatim (`echo VALUE > FILE`); the result carries the errno
        name when the kernel refuses."""
        text = knobs.value_text(value)
        results = self._write_many(path, [(filename, text)])
        bad = [r for r in results if not r.ok]
        return bad[0] if bad else results[0]

    def write_knob(self, path: str, knob: str, value: object,
                   context: Mapping[str, object] | None = None) -> list[WriteResult]:
        """Set a version-neutral knob through the mapping table. Writes stop at the first failure
        (the last result). Raises KnobUnsupported when the knob has no counterpart here."""
        writes = knobs.writes_for(knob, value, self.version, context or {})
        return self._write_many(path, writes)

    def read_files(self, path: str, filenames: Iterable[str]) -> dict[str, str | None]:
        """The texts of several files of the cgroup in one round trip; None for an absent one."""
        return {f: text for f, (_, text) in self._read(clean_path(path), list(filenames)).items()}

    def _read(self, path: str, filenames: list[str]) -> dict[str, tuple[str, str | None]]:
        targets: list[tuple[str, str]] = []
        owner: list[str] = []
        for f in filenames:
            dirs = self._file_dirs(path, f)
            for d in dirs:
                targets.append((d, f))
                owner.append(f)
        out: dict[str, tuple[str, str | None]] = {f: ("nocontroller", None) for f in filenames}
        if not targets:
            return out
        res = self._run(guest.read_script(targets))
        for f, (status, text) in zip(owner, guest.parse_reads(res.stdout, len(targets)),
                                     strict=True):
            if out[f][1] is None and (status == "ok" or out[f][0] in ("nocontroller", "nodir")):
                out[f] = (status, text)
        return out

    def _absent_reason(self, path: str, filename: str) -> str:
        if filename in self._probe().files:
            ctrl = knobs.file_controller(filename, self.version)
            return (f"{filename} does not exist in cgroup {path}, though {self.release} has it "
                    f"({ctrl or 'core'}: was the cgroup created with that controller?)")
        return f"{filename} does not exist on {self.release} ({self.version})"

    def read_file(self, path: str, filename: str) -> str | None:
        """A cgroup file's text, None when it does not exist."""
        return self.read_files(path, [filename])[filename]

    def read_metric(self, path: str, metric: str,
                    context: Mapping[str, object] | None = None) -> Reading:
        """A version-neutral metric of the cgroup, or Reading(None, reason)."""
        path = clean_path(path)
        try:
            files = knobs.metric_files(metric, self.version)
        except MetricUnsupported as exc:
            return Reading(None, exc.reason)
        ctrl = knobs.metric_controller(metric, self.version)
        if ctrl is not None:
            ok, reason = self.has_controller(ctrl)
            if not ok:
                return Reading(None, f"{metric}: {reason}")
        raw = self._read(path, files)
        if knobs.metric_source(metric, self.version).form == "difference":
            # Two counters read one after the other (v1 swap = memsw.usage - usage) are not one
            # snapshot: the kernel uncharges memory, then memsw, and a page freed between the
            # two reads shows as swap (seen on 6.1 right after an OOM kill: 4096 of "swap" with
            # memory.stat swap 0, 2 reads in 40). Read again until two readings agree.
            raw = guest.settled(lambda: self._read(path, files), raw, SETTLE_READS)
        for f in knobs.metric_required_files(metric, self.version):
            status, _ = raw[f]
            if status == "nodir":
                return Reading(None, f"{metric}: cgroup {path} does not exist")
            if status == "error":
                return Reading(None, f"{metric}: {f} of cgroup {path} could not be read")
            if status != "ok":
                return Reading(None, f"{metric}: {self._absent_reason(path, f)}")
        texts = {f: raw[f][1] for f in files}
        value, reason = knobs.metric_value(metric, self.version, texts, context)
        return Reading(value, "" if value is not None else f"{metric}: {reason}")

    # --- running commands -------------------------------------------------------------------

    @abstractmethod
    def _join_targets(self, path: str, controllers: set[str]) -> list[tuple[str, bool]]:
        """(cgroup.procs file, guarded) for each hierarchy the command joins; guarded: only if
        the directory exists (v1 with no controllers named: every hierarchy the cgroup is in)."""

    def run_in(self, path: str, command: str, controllers: Iterable[str] = ()) -> str:
        """The guest shell command line that runs `command` inside the cgroup (joining each
        hierarchy `controllers` need on v1) and prints its status line last; parse its stdout
        with parse_status(). See guest.run_in_line."""
        path = clean_path(path)
        return guest.run_in_line(self._join_targets(path, self._native(controllers)), command)

    parse_status = staticmethod(parse_status)

    # --- features ---------------------------------------------------------------------------

    def feature(self, name: str) -> tuple[bool, str]:
        """(present, reason) for a FEATURES entry. Raises UnknownName for an unknown feature."""
        f = knobs.feature(name)
        files = knobs.feature_files(name, self.version)
        if files is None:
            return False, f"feature {name} has no {self.version} counterpart"
        probe = self._probe()
        missing = [x for x in files if x not in probe.files]
        if missing:
            ctrl = knobs.file_controller(missing[0], self.version)
            ok, reason = self.has_controller(ctrl) if ctrl else (True, "")
            if not ok:
                return False, f"feature {name}: {reason}"
            return False, (f"feature {name}: {', '.join(missing)} does not exist on "
                           f"{self.release} ({self.version})")
        if f.device == "rdma" and knobs.RDMA_DEVICE not in probe.devices:
            return False, (f"feature {name}: the machine has no {knobs.RDMA_DEVICE} "
                           "(machine: rdma: true)")
        return True, ""

    def supports(self, knob: str) -> tuple[bool, str]:
        """(supported, reason) for a knob on this hierarchy and kernel."""
        k = knobs.knob(knob)
        files = k.v1_files if self.version == V1 else (k.v2_file,) if k.v2_file else None
        if files is None:
            return False, f"{knob} has no {self.version} counterpart"
        ctrl = knobs.knob_controller(knob, self.version)
        if ctrl is not None:
            ok, reason = self.has_controller(ctrl)
            if not ok:
                return False, f"{knob}: {reason}"
        missing = [f for f in files if f not in self._probe().files]
        if missing:
            return False, (f"{knob}: {', '.join(missing)} does not exist on {self.release} "
                           f"({self.version})")
        return True, ""

    # --- sampling ---------------------------------------------------------------------------

    @abstractmethod
    def _sample_reads(self, path: str) -> str:
        """Shell that sets $u (usage) and $s (swap) for one sample, "-" when unreadable."""

    def sampler(self, path: str, interval: float = 0.1) -> Sampler:
        """Commands that sample the cgroup's memory usage and swap in the guest every `interval`
        seconds while a step runs: start_cmd starts a background loop (outside the cgroup)
        writing "uptime usage swap" lines to a file; stop_cmd stops it and prints the lines;
        parse(stop_output) gives the samples."""
        path = clean_path(path)
        self._samplers += 1
        return guest.sampler(path, self._samplers, self._sample_reads(path), interval)


class V2Hierarchy(Hierarchy):
    """cgroup2 at /sys/fs/cgroup: one tree, controllers enabled per level in subtree_control."""

    version = V2

    def _probe_script(self) -> str:
        return guest.v2_probe_script(ROOT)

    def _parse_probe(self, sections: dict[str, str]) -> _Probe:
        return _Probe(sections["uname"].strip(),
                      frozenset(sections.get("controllers", "").split()), {},
                      frozenset(sections.get("files", "").split()),
                      frozenset(sections.get("devices", "").split()))

    def cgroup_dir(self, path: str, controller: str | None = None) -> str:
        return f"{ROOT}/{clean_path(path)}"

    def _file_dirs(self, path: str, filename: str) -> list[str]:
        return [self.cgroup_dir(path)]

    def _top_dirs(self, path: str) -> list[str]:
        return [self.cgroup_dir(path)]

    def _create_script(self, path: str, controllers: set[str]) -> str:
        return guest.v2_create_script(ROOT, path.split("/"), controllers)

    def _thaw_kill_script(self, tops: list[str]) -> str:
        return guest.v2_thaw_kill_script(tops[0])

    def _join_targets(self, path: str, controllers: set[str]) -> list[tuple[str, bool]]:
        return [(f"{self.cgroup_dir(path)}/cgroup.procs", False)]

    def _sample_reads(self, path: str) -> str:
        return guest.v2_sample_reads(self.cgroup_dir(path))


class V1Hierarchy(Hierarchy):
    """cgroup v1: one hierarchy per controller at /sys/fs/cgroup/<name> (cpu,cpuacct shared)."""

    version = V1

    def _probe_script(self) -> str:
        return guest.v1_probe_script(ROOT)

    def _parse_probe(self, sections: dict[str, str]) -> _Probe:
        mounts: dict[str, str] = {}
        for line in sections.get("mounts", "").splitlines():
            parts = line.split()
            if len(parts) < 4 or parts[2] != "cgroup" or not parts[1].startswith(ROOT + "/"):
                continue
            for opt in parts[3].split(","):
                if opt in knobs.V1_CONTROLLERS:
                    mounts[opt] = parts[1]
        return _Probe(sections["uname"].strip(), frozenset(mounts), mounts,
                      frozenset(sections.get("files", "").split()),
                      frozenset(sections.get("devices", "").split()))

    def _mount(self, controller: str) -> str | None:
        return self._probe().mounts.get(controller)

    def _all_mounts(self) -> list[str]:
        return sorted(set(self._probe().mounts.values()))

    def cgroup_dir(self, path: str, controller: str | None = None) -> str:
        if controller is None:
            raise ValueError("a v1 cgroup directory needs a controller (its hierarchy)")
        mount = self._mount(knobs.controller_name(controller, V1) or controller)
        if mount is None:
            raise CgroupError(self.has_controller(controller)[1])
        return f"{mount}/{clean_path(path)}"

    def _file_dirs(self, path: str, filename: str) -> list[str]:
        ctrl = knobs.file_controller(filename, V1)
        if ctrl is None:  # cgroup.procs, tasks...: every hierarchy the cgroup is in
            return [f"{m}/{path}" for m in self._all_mounts()]
        mount = self._mount(ctrl)
        return [f"{mount}/{path}"] if mount else []

    def _top_dirs(self, path: str) -> list[str]:
        return [f"{m}/{path}" for m in self._all_mounts()]

    def _create_script(self, path: str, controllers: set[str]) -> str:
        mounts = sorted({self._mount(c) or "" for c in controllers} - {""}) or self._all_mounts()
        if not mounts:
            raise CgroupError(f"no v1 hierarchy is mounted ({self.release})")
        return guest.v1_create_script(mounts, path.split("/"), self._mount("cpuset"))

    def _thaw_kill_script(self, tops: list[str]) -> str:
        freezer = self._mount("freezer")
        if freezer is None:
            return guest.v1_thaw_script(None)
        return guest.v1_thaw_script(next(t for t in tops if t.startswith(freezer + "/")))

    def _join_targets(self, path: str, controllers: set[str]) -> list[tuple[str, bool]]:
        if controllers:
            mounts = sorted({m for c in controllers if (m := self._mount(c))})
            return [(f"{m}/{path}/cgroup.procs", False) for m in mounts]
        return [(f"{m}/{path}/cgroup.procs", True) for m in self._all_mounts()]

    def _sample_reads(self, path: str) -> str:
        mount = self._mount("memory")
        if mount is None:
            raise CgroupError(f"sampling needs the memory controller: "
                              f"{self.has_controller('memory')[1]}")
        return guest.v1_sample_reads(f"{mount}/{path}")


def make_hierarchy(version: str, channel: Channel, timeout: float = 60.0) -> Hierarchy:
    """The hierarchy of a guest booted with `hierarchy: version` (v1 or v2)."""
    if version == V2:
        return V2Hierarchy(channel, timeout)
    if version == V1:
        return V1Hierarchy(channel, timeout)
    raise ValueError(f"hierarchy version must be v1 or v2, not {version!r}")


__all__ = [
    "CgroupError", "Hierarchy", "KnobUnsupported", "MetricUnsupported", "Reading", "Sample",
    "Sampler", "UnknownName", "V1Hierarchy", "V2Hierarchy", "WriteResult", "clean_path",
    "errno_from_message", "make_hierarchy", "parse_samples", "parse_status",
]
