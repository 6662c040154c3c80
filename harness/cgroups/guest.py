"""A cgroup hierarchy in a running guest: one interface, two implementations (v1, v2).

The scenario speaks version-neutral knobs and metrics; `knobs.py` maps them to files and this
module applies them through a channel (anything with `run(cmd, timeout, check, stdin) ->
CommandResult`; harness.channels.ssh.SSHChannel is the real one). Every path and value sent to
the guest shell is quoted with shlex.quote, and each operation is one round trip: a short
busybox-sh script, not a command per file.

The guest's mounts come from images/init: v2 is cgroup2 on /sys/fs/cgroup with every controller
enabled in the root's cgroup.subtree_control; v1 mounts each controller at
/sys/fs/cgroup/<name> (cpu and cpuacct together at cpu,cpuacct, with cpu and cpuacct links).

Errno names of failed writes: the guest has no tool that prints errno numbers, so the write is
busybox sh's `echo VALUE > FILE`, whose failure message is glibc's strerror text ("sh: write
error: Invalid argument"; busybox-static is built against glibc), and ERRNO_BY_MESSAGE maps the
text back to the name. ash's own words for ENOENT/ENOTDIR when it cannot open the file
("can't create F: nonexistent directory") map to ENOENT.

Exit status versus killing signal: the command runs under busybox `time`, which stays outside
the cgroup, waits for the command and reports "Command terminated by signal N" or "Command
exited with non-zero status N" exactly (a shell's $? cannot tell exit 137 from SIGKILL). See
`run_in` and `parse_status`.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shlex
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from harness.channels import CommandResult

from . import knobs
from .knobs import V1, V2, KnobUnsupported, MetricUnsupported, UnknownName

ROOT = "/sys/fs/cgroup"

# How many more readings a metric computed from two files may take to settle (read_metric).
SETTLE_READS = 5


class Channel(Protocol):
    def run(self, cmd: str, timeout: float | None = 60.0, stdin: str | bytes | None = None,
            check: bool = False) -> CommandResult: ...


class CgroupError(RuntimeError):
    """The harness could not do what was asked with a cgroup (create, remove, join)."""


@dataclass(frozen=True)
class WriteResult:
    """One write to a cgroup file. A failed write is data, not an exception: scenarios expect
    EINVAL. `errno_name` is None for a success, or for a failure that is not the kernel's
    (the controller is not mounted, the channel failed)."""

    file: str  # the guest path written
    value: str
    ok: bool
    errno_name: str | None = None
    message: str = ""

    @property
    def errno(self) -> str | None:
        """Alias of errno_name."""
        return self.errno_name


@dataclass(frozen=True)
class Reading:
    """A metric's value, or None with the reason (file absent on this kernel, no counterpart on
    this hierarchy, controller not available)."""

    value: int | float | None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Sample:
    t: float  # guest uptime, seconds
    usage: int | None  # bytes
    swap: int | None  # bytes


@dataclass(frozen=True)
class Sampler:
    """start_cmd starts the sampling loop; stop_cmd stops it and prints its lines; read_cmd
    prints them again and deletes the file (run it after stop_cmd, or not at all: the file is
    small and in the guest's tmpfs). `start, stop, parse = h.sampler(path)` unpacks."""

    start_cmd: str
    stop_cmd: str
    parse: Callable[[str], list[Sample]]
    read_cmd: str = ""

    def __iter__(self) -> Iterator[object]:
        return iter((self.start_cmd, self.stop_cmd, self.parse))


# --- errno names from busybox messages ----------------------------------------------------------

# glibc's strerror() texts for the errnos cgroup files give. Hard-coded rather than taken from the
# host's libc: the texts are the guest's (glibc) whatever the host runs.
ERRNO_BY_MESSAGE: dict[str, str] = {
    "Operation not permitted": "EPERM",
    "No such file or directory": "ENOENT",
    "No such process": "ESRCH",
    "Interrupted system call": "EINTR",
    "Input/output error": "EIO",
    "No such device or address": "ENXIO",
    "Argument list too long": "E2BIG",
    "Bad file descriptor": "EBADF",
    "Resource temporarily unavailable": "EAGAIN",
    "Cannot allocate memory": "ENOMEM",
    "Permission denied": "EACCES",
    "Bad address": "EFAULT",
    "Device or resource busy": "EBUSY",
    "File exists": "EEXIST",
    "Invalid cross-device link": "EXDEV",
    "No such device": "ENODEV",
    "Not a directory": "ENOTDIR",
    "Is a directory": "EISDIR",
    "Invalid argument": "EINVAL",
    "Too many open files in system": "ENFILE",
    "Too many open files": "EMFILE",
    "File too large": "EFBIG",
    "No space left on device": "ENOSPC",
    "Read-only file system": "EROFS",
    "Too many links": "EMLINK",
    "Numerical argument out of domain": "EDOM",
    "Numerical result out of range": "ERANGE",
    "Resource deadlock avoided": "EDEADLK",
    "Function not implemented": "ENOSYS",
    "Directory not empty": "ENOTEMPTY",
    "Value too large for defined data type": "EOVERFLOW",
    "Operation not supported": "EOPNOTSUPP",
    "Operation canceled": "ECANCELED",
    "Protocol not supported": "EPROTONOSUPPORT",
    # busybox ash's own words when a redirection cannot open the file (ENOENT or ENOTDIR)
    "nonexistent directory": "ENOENT",
    "no such file": "ENOENT",
}


def errno_from_message(message: str) -> str | None:
    """`sh: write error: Invalid argument` -> EINVAL; None when the text is not an errno's."""
    for line in reversed(message.strip().splitlines()):
        text = line.rsplit(": ", 1)[-1].strip()
        if text in ERRNO_BY_MESSAGE:
            return ERRNO_BY_MESSAGE[text]
        for num, name in errno.errorcode.items():  # anything else glibc and the host agree on
            if os.strerror(num) == text:
                return name
    return None


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"SIG{num}"


# --- the command wrapper's status line ----------------------------------------------------------

STATUS_MARKER = "KH-STATUS="
JOIN_FAILED = "KH-JOIN-FAILED"
_STATUS_RE = re.compile(r"\n?KH-STATUS=(-?\d+) ?(.*)\n?\Z")
_TIME_SIGNAL = re.compile(r"Command (?:terminated|stopped) by signal (\d+)")
_TIME_EXIT = re.compile(r"Command exited with non-zero status (\d+)")


def parse_status(stdout: str) -> tuple[str, int, str | None]:
    """Split the output of a `run_in` command line into (the command's own stdout, exit status,
    killing signal name or None). A command killed by signal N has exit status 128 + N (the
    shell's convention) and signal_name e.g. "SIGKILL". Raises CgroupError when the output has
    no status line or the command could not join its cgroup."""
    if f"\n{JOIN_FAILED}\n" in f"\n{stdout}":
        raise CgroupError("the command could not join its cgroup (the write to cgroup.procs "
                          "failed; its message is on stderr)")
    idx = stdout.rfind(STATUS_MARKER)
    if idx < 0:
        raise CgroupError(f"no {STATUS_MARKER} line in the command's output (was it cut off by a "
                          "timeout or a lost connection?)")
    m = _STATUS_RE.match(stdout, idx - 1 if idx > 0 and stdout[idx - 1] == "\n" else idx)
    if m is None:
        raise CgroupError(f"malformed status line: {stdout[idx:idx + 200]!r}")
    before = stdout[:m.start()]
    rc, how = int(m[1]), m[2].strip()
    if sig := _TIME_SIGNAL.search(how):
        num = int(sig[1])
        return before, 128 + num, signal_name(num)
    if ex := _TIME_EXIT.search(how):
        return before, int(ex[1]), None
    if 128 < rc < 255 and how == "":
        # no report from `time` (not there?): fall back to the shell's convention
        return before, rc, signal_name(rc - 128)
    return before, rc, None


# --- helpers ------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z0-9_.:@+,=-]+")


def clean_path(path: str) -> str:
    """A cgroup path relative to the hierarchy root: `kh/scen/hog`. Components are restricted to
    [A-Za-z0-9_.:@+,=-] so that guest scripts can iterate over them safely; `.`/`..` and the
    root itself are refused."""
    parts = [p for p in path.strip().strip("/").split("/") if p]
    if not parts:
        raise ValueError(f"cgroup path {path!r}: the root cgroup cannot be used")
    for p in parts:
        if p in (".", "..") or not _NAME.fullmatch(p):
            raise ValueError(f"cgroup path {path!r}: bad component {p!r} (allowed: letters, "
                             "digits and _.:@+,=-)")
    return "/".join(parts)


def _q(text: str) -> str:
    return shlex.quote(text)


def _echo(value: str, target: str) -> str:
    """`echo VALUE > FILE`: busybox echo reports write errors with strerror. A value echo would
    take as its own option (-n, -e, -E) goes through printf, whose errors carry no message."""
    if re.fullmatch(r"-[neE]+", value):
        return f"printf '%s\\n' {_q(value)} > {_q(target)}"
    return f"echo {_q(value)} > {_q(target)}"


_FILE_MARK = re.compile(r"(?:^|\n)==KH-FILE== (\d+) (ok|absent|nodir|error)\n|\n==KH-END==\n")


def _read_script(targets: list[tuple[str, str]]) -> str:
    """A script printing each (dir, file)'s text between markers, exactly (see _parse_reads)."""
    lines = []
    for i, (d, f) in enumerate(targets):
        p = f"{d}/{f}"
        nl = "\\n" if i else ""
        lines.append(
            f"if [ -e {_q(p)} ]; then printf '{nl}==KH-FILE== {i} ok\\n'; cat {_q(p)} 2>/dev/null"
            f" || printf '\\n==KH-FILE== {i} error\\n'; elif [ -d {_q(d)} ]; then "
            f"printf '{nl}==KH-FILE== {i} absent\\n'; else printf '{nl}==KH-FILE== {i} nodir\\n'; fi")
    lines.append("printf '\\n==KH-END==\\n'")
    return "\n".join(lines)


def _parse_reads(text: str, n: int) -> list[tuple[str, str | None]]:
    """[(status, text or None)] for each of the n targets of _read_script's output."""
    out: list[tuple[str, str | None]] = [("error", None)] * n
    marks = list(_FILE_MARK.finditer(text))
    for here, nxt in itertools.pairwise(marks):
        if here[1] is None:
            continue
        i, status = int(here[1]), here[2]
        if status == "ok":
            out[i] = ("ok", text[here.end():nxt.start()])
        else:
            out[i] = (status, None)
    return out


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
            sections: dict[str, str] = {}
            name = ""
            for line in res.stdout.splitlines():
                if line.startswith("== "):
                    name = line[3:].strip()
                    sections.setdefault(name, "")
                elif name:
                    sections[name] += line + "\n"
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
        path = clean_path(path)
        lines = []
        for d in self._top_dirs(path):
            if recursive:
                lines.append(f"[ -d {_q(d)} ] && for c in $(find {_q(d)} -type d); do "
                             "cat \"$c/cgroup.procs\"; done")
            else:
                lines.append(f"[ -e {_q(d)}/cgroup.procs ] && cat {_q(d)}/cgroup.procs")
        res = self._run("\n".join(lines) + "\ntrue")
        return sorted({int(t) for t in res.stdout.split() if t.isdigit()})

    def _kill_script(self, tops: list[str], rmdir: bool, timeout: float) -> str:
        """Thaw, then SIGKILL every process in the subtrees under `tops` until none is left
        (and with rmdir, remove the directories bottom-up until they are gone). Exit 3 with the
        cgroups, their processes and rmdir's errors when `timeout` passes."""
        qtops = " ".join(_q(d) for d in tops)
        rounds = max(1, int(timeout / 0.05))
        rm = 'rmdir "$c" 2>/dev/null' if rmdir else ":"
        busy = ('[ -d "$top" ] && left=1' if rmdir else
                'read -r x < "$c/cgroup.procs" && left=1')  # cgroupfs sizes are 0: no -s
        report = 'rmdir "$c"' if rmdir else ":"
        return f"""{self._thaw_kill_script(tops)}
i=0
while :; do
    left=
    for top in {qtops}; do
        [ -d "$top" ] || continue
        for c in $(find "$top" -depth -type d); do
            while read -r p; do kill -9 "$p" 2>/dev/null; done < "$c/cgroup.procs"
            {rm}
            {busy}
        done
    done
    [ -z "$left" ] && exit 0
    i=$((i + 1))
    if [ $i -ge {rounds} ]; then
        for top in {qtops}; do
            [ -d "$top" ] || continue
            for c in $(find "$top" -depth -type d); do
                echo "$c: pids $(cat "$c/cgroup.procs" | tr '\\n' ' ')"
                {report}
            done
        done
        exit 3
    fi
    usleep 50000
done"""

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
        lines: list[str] = []
        targets: list[tuple[str, str]] = []
        for filename, value in writes:
            dirs = self._file_dirs(path, filename)
            if not dirs:
                ctrl = knobs.file_controller(filename, self.version) or "?"
                return [*self._results(targets, None), WriteResult(
                    f"{ROOT}/{ctrl}/{path}/{filename}", value, False, None,
                    self._missing_reason(filename))]
            first = len(targets)
            if len(dirs) == 1:
                targets.append((f"{dirs[0]}/{filename}", value))
                lines.append(f"{_echo(value, f'{dirs[0]}/{filename}')} || exit {100 + first}")
                continue
            # a core file on v1 (cgroup.procs...): in each hierarchy the cgroup is in, and in one
            # at least
            lines.append("w=")
            for d in dirs:
                i = len(targets)
                targets.append((f"{d}/{filename}", value))
                lines.append(f"if [ -d {_q(d)} ]; then {_echo(value, f'{d}/{filename}')} || "
                             f"exit {100 + i}; w=1; fi")
            gone = f"kharness: cgroup {path} is in no {self.version} hierarchy: {os.strerror(2)}"
            lines.append(f"[ -n \"$w\" ] || {{ echo {_q(gone)} >&2; exit {100 + first}; }}")
        if len(targets) > 150:
            raise ValueError(f"too many writes at once ({len(targets)})")
        res = self._run("\n".join([*lines, "exit 0"]))
        return self._results(targets, res)

    def _results(self, targets: list[tuple[str, str]], res: CommandResult | None
                 ) -> list[WriteResult]:
        if res is None:
            return [WriteResult(t, v, True) for t, v in targets]
        status = res.exit_status
        if status == 0 and not res.timed_out:
            return [WriteResult(t, v, True) for t, v in targets]
        if 100 <= status < 100 + len(targets):
            failed = status - 100
            message = res.stderr.strip()
            out = [WriteResult(t, v, True) for t, v in targets[:failed]]
            t, v = targets[failed]
            out.append(WriteResult(t, v, False, errno_from_message(message), message))
            return out
        why = "timed out" if res.timed_out else f"exited {status}"
        t, v = targets[0]
        return [WriteResult(t, v, False, None, f"the write script {why}: "
                            f"{(res.stderr or res.stdout).strip()[-300:]}")]

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
        res = self._run(_read_script(targets))
        for f, (status, text) in zip(owner, _parse_reads(res.stdout, len(targets)), strict=True):
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
            for _ in range(SETTLE_READS):
                again = self._read(path, files)
                if again == raw:
                    break
                raw = again
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
        """The guest shell command line that runs `command` inside the cgroup and prints its
        status line last; parse its stdout with parse_status().

        `time` (busybox) forks a shell that writes its own PID to cgroup.procs (of each needed v1
        hierarchy) and execs `sh -c COMMAND`; ash execs a simple command in place, so the
        cgroup holds exactly the command's processes. `time` stays outside the cgroup (an OOM
        kill cannot take it), waits, and writes "Command terminated by signal N" / "Command
        exited with non-zero status N" to a file; the line printed last is
        `KH-STATUS=<rc> <that report>`, after a newline so it never joins the command's output.
        The whole line is one `{ ...; }` group: a caller may redirect it or append `&`.
        """
        path = clean_path(path)
        fail = f"{{ printf '\\n{JOIN_FAILED}\\n'; exit 125; }}"
        steps = ["j="]
        for procs, guarded in self._join_targets(path, self._native(controllers)):
            join = f"echo $$ > {_q(procs)} || {fail}; j=1"
            if guarded:
                join = f"if [ -d {_q(procs.rsplit('/', 1)[0])} ]; then {join}; fi"
            steps.append(join)
        steps += [f'[ -n "$j" ] || {fail}', 'exec sh -c "$1"']
        inner = "; ".join(steps)
        status_file = "/tmp/kh-status.$$"
        return (f"{{ time -o {status_file} -f '' sh -c {_q(inner)} kh-run {_q(command)}\n"
                "kh_rc=$?; kh_how=\n"
                f"read -r kh_how < {status_file}; rm -f {status_file}\n"
                f"printf '\\n{STATUS_MARKER}%s %s\\n' \"$kh_rc\" \"$kh_how\"; }}")

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
        tag = re.sub(r"[^A-Za-z0-9]+", "_", path)
        out = f"/tmp/kh-sample.{tag}.{self._samplers}.{os.getpid()}"
        usec = max(1000, int(interval * 1e6))
        loop = (f"while :; do read -r t _ < /proc/uptime; u=-; s=-; {self._sample_reads(path)}"
                f'; echo "$t $u $s"; usleep {usec}; done')
        start = (f"( {loop} ) > {_q(out)} 2>/dev/null < /dev/null &\n"
                 f"echo $! > {_q(out + '.pid')}")
        stop = (f"read -r pid < {_q(out + '.pid')} && kill \"$pid\" 2>/dev/null\n"
                f"rm -f {_q(out + '.pid')}; cat {_q(out)} 2>/dev/null; true")
        read = f"cat {_q(out)} 2>/dev/null; rm -f {_q(out)}; true"
        return Sampler(start, stop, parse_samples, read)


def parse_samples(text: str) -> list[Sample]:
    """The sampler's "uptime usage swap" lines -> samples ("-" -> None; a v1 swap that reads a
    few pages below zero because usage and memsw are read one after the other -> 0)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            t = float(parts[0])
        except ValueError:
            continue
        usage = int(parts[1]) if parts[1].lstrip("-").isdigit() else None
        swap = int(parts[2]) if parts[2].lstrip("-").isdigit() else None
        out.append(Sample(t, usage, None if swap is None else max(0, swap)))
    return out


class V2Hierarchy(Hierarchy):
    """cgroup2 at /sys/fs/cgroup: one tree, controllers enabled per level in subtree_control."""

    version = V2

    def _probe_script(self) -> str:
        probe = f"{ROOT}/kh-probe.$$"
        return f"""echo '== uname'; uname -r
echo '== controllers'; cat {ROOT}/cgroup.controllers
echo '== files'
if mkdir {probe} 2>/dev/null; then for f in {probe}/*; do echo "${{f##*/}}"; done; rmdir {probe}; fi
echo '== devices'; ls /sys/class/infiniband 2>/dev/null; true"""

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
        lines = []
        enable = sorted(controllers)
        parts = path.split("/")
        for depth in range(len(parts) + 1):
            d = "/".join([ROOT, *parts[:depth]])
            if depth:
                lines.append(f"[ -d {_q(d)} ] || mkdir {_q(d)} || exit 1")
            if depth < len(parts):  # an ancestor: enable the controllers for its children
                sc = f"{d}/cgroup.subtree_control"
                for c in enable:
                    why = _q(f"kharness: cannot enable {c} in {sc}")
                    lines.append(f"echo +{c} > {_q(sc)} || {{ echo {why} >&2; exit 1; }}")
        return "\n".join(lines)

    def _thaw_kill_script(self, tops: list[str]) -> str:
        top = _q(tops[0])
        return (f"if [ -d {top} ]; then\n"
                f"    for c in $(find {top} -type d); do echo 0 > \"$c/cgroup.freeze\"; done\n"
                f"    [ -e {top}/cgroup.kill ] && echo 1 > {top}/cgroup.kill\n"
                "fi 2>/dev/null")

    def _join_targets(self, path: str, controllers: set[str]) -> list[tuple[str, bool]]:
        return [(f"{self.cgroup_dir(path)}/cgroup.procs", False)]

    def _sample_reads(self, path: str) -> str:
        d = _q(self.cgroup_dir(path))
        return f"read -r u < {d}/memory.current; read -r s < {d}/memory.swap.current"


class V1Hierarchy(Hierarchy):
    """cgroup v1: one hierarchy per controller at /sys/fs/cgroup/<name> (cpu,cpuacct shared)."""

    version = V1

    def _probe_script(self) -> str:
        return f"""echo '== uname'; uname -r
echo '== mounts'; grep ' cgroup ' /proc/mounts
echo '== files'
for d in {ROOT}/*; do
    [ -L "$d" ] && continue
    p="$d/kh-probe.$$"
    mkdir "$p" 2>/dev/null || continue
    for f in "$p"/*; do echo "${{f##*/}}"; done
    rmdir "$p"
done
echo '== devices'; ls /sys/class/infiniband 2>/dev/null; true"""

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
        cpuset = self._mount("cpuset")
        lines = []
        parts = path.split("/")
        for mount in mounts:
            for depth in range(1, len(parts) + 1):
                d = "/".join([mount, *parts[:depth]])
                parent = d.rsplit("/", 1)[0]
                lines.append(f"[ -d {_q(d)} ] || mkdir {_q(d)} || exit 1")
                if mount == cpuset:
                    # v1 cpuset: a task cannot join (ENOSPC) while cpus or mems is empty
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        lines.append(
                            f"x=; read -r x < {_q(f'{d}/{f}')}; [ -n \"$x\" ] || "
                            f"{{ read -r x < {_q(f'{parent}/{f}')}; echo \"$x\" > {_q(f'{d}/{f}')}"
                            f"; }} || {{ echo {_q(f'kharness: cannot copy {parent}/{f}')} >&2;"
                            " exit 1; }")
        return "\n".join(lines)

    def _thaw_kill_script(self, tops: list[str]) -> str:
        freezer = self._mount("freezer")
        if freezer is None:
            return ":"
        top = _q(next(t for t in tops if t.startswith(freezer + "/")))
        # thaw top-down: a cgroup frozen by itself stays frozen when its parent thaws
        return (f"[ -d {top} ] && for c in $(find {top} -type d); do "
                f"echo THAWED > \"$c/freezer.state\"; done 2>/dev/null")

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
        d = _q(f"{mount}/{path}")
        # memsw is read before and after usage and the smaller one taken: the two counters
        # move one after the other (charge, uncharge), so a skewed pair must never show
        # memory that is moving as swap; a negative difference is 0 (parse_samples).
        return (f"read -r m1 < {d}/memory.memsw.usage_in_bytes && "
                f"read -r u < {d}/memory.usage_in_bytes && "
                f"read -r m2 < {d}/memory.memsw.usage_in_bytes && "
                "s=$(( (m1 < m2 ? m1 : m2) - u ))")


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
