"""The guest-shell protocol of the cgroup hierarchies: every shell line kharness sends a guest
for its cgroups is built here, and every output that comes back is parsed here. `hierarchy.py`
decides what to do (which directories and files, in which order); this module says it in
busybox sh and reads the answer. Nothing here talks to a channel.

Quoting: every path and value goes through shlex.quote, whole (`'/a b/cgroup.kill'`, not
`'/a b'/cgroup.kill`). The loops over `find`'s output (kill, thaw, recursive procs) split it at
newlines only, with globbing off, so a directory whose name has a space or a quote stays one
word. hierarchy.clean_path keeps cgroup names to [A-Za-z0-9_.:@+,=-] besides; what is sent
does not rely on it.

Errno names of failed writes: the guest has no tool that prints errno numbers, so the write is
busybox sh's `echo VALUE > FILE`, whose failure message is glibc's strerror text ("sh: write
error: Invalid argument"; busybox-static is built against glibc), and ERRNO_BY_MESSAGE maps the
text back to the name. ash's own words for ENOENT/ENOTDIR when it cannot open the file
("can't create F: nonexistent directory") map to ENOENT.

Exit status versus killing signal: the command runs under busybox `time`, which stays outside
the cgroup, waits for the command and reports "Command terminated by signal N" or "Command
exited with non-zero status N" exactly (a shell's $? cannot tell exit 137 from SIGKILL). See
`run_in_line` and `parse_status`.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shlex
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from harness.channels import CommandResult

# How many more readings a metric computed from two files may take to settle (`settled`).
SETTLE_READS = 5


class CgroupError(RuntimeError):
    """The harness could not do what was asked with a cgroup (create, remove, join)."""


def _q(text: str) -> str:
    return shlex.quote(text)


# Before a loop over `find`'s output: split it at newlines only, expand no globs.
_BY_LINE = "IFS='\n'; set -f"


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


# --- running a command in a cgroup, and its status line -----------------------------------------

STATUS_MARKER = "KH-STATUS="
JOIN_FAILED = "KH-JOIN-FAILED"
_STATUS_RE = re.compile(r"\n?KH-STATUS=(-?\d+) ?(.*)\n?\Z")
_TIME_SIGNAL = re.compile(r"Command (?:terminated|stopped) by signal (\d+)")
_TIME_EXIT = re.compile(r"Command exited with non-zero status (\d+)")


def run_in_line(joins: Iterable[tuple[str, bool]], command: str) -> str:
    """The command line that runs `command` after writing its PID to each cgroup.procs of
    `joins` ((file, guarded): guarded, only when the cgroup's directory exists; one join at
    least), and prints its status line last; parse its stdout with parse_status().

    `time` (busybox) forks a shell that writes its own PID to the cgroup.procs files and execs
    `sh -c COMMAND`; ash execs a simple command in place, so the cgroup holds exactly the
    command's processes. `time` stays outside the cgroup (an OOM kill cannot take it), waits,
    and writes "Command terminated by signal N" / "Command exited with non-zero status N" to a
    file; the line printed last is `KH-STATUS=<rc> <that report>`, after a newline so it never
    joins the command's output. The whole line is one `{ ...; }` group: a caller may redirect
    it or append `&`.
    """
    fail = f"{{ printf '\\n{JOIN_FAILED}\\n'; exit 125; }}"
    steps = ["j="]
    for procs, guarded in joins:
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


def parse_status(stdout: str) -> tuple[str, int, str | None]:
    """Split the output of a `run_in_line` command line into (the command's own stdout, exit
    status, killing signal name or None). A command killed by signal N has exit status 128 + N
    (the shell's convention) and signal_name e.g. "SIGKILL". Raises CgroupError when the output
    has no status line or the command could not join its cgroup."""
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


# --- writes -------------------------------------------------------------------------------------


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


MAX_WRITES = 150  # in one script: its exit status 100 + i names the failed write


def echo_line(value: str, target: str) -> str:
    """`echo VALUE > FILE`: busybox echo reports write errors with strerror. A value echo would
    take as its own option (-n, -e, -E) goes through printf, whose errors carry no message."""
    if re.fullmatch(r"-[neE]+", value):
        return f"printf '%s\\n' {_q(value)} > {_q(target)}"
    return f"echo {_q(value)} > {_q(target)}"


def write_script(writes: Sequence[tuple[Sequence[str], str]], gone: str
                 ) -> tuple[str, list[tuple[str, str]]]:
    """(script, targets) for `writes` in order, each (its files, value): one file is written;
    several (a core file on v1, one per hierarchy) are each written when their directory
    exists, one at least, else `gone` is the message. The script stops at the first failure
    with exit status 100 + i, i the failed one of `targets` ((file, value), in order); its
    message is stderr (see write_results)."""
    lines: list[str] = []
    targets: list[tuple[str, str]] = []
    for files, value in writes:
        first = len(targets)
        if len(files) == 1:
            targets.append((files[0], value))
            lines.append(f"{echo_line(value, files[0])} || exit {100 + first}")
            continue
        lines.append("w=")
        for f in files:
            i = len(targets)
            targets.append((f, value))
            lines.append(f"if [ -d {_q(f.rsplit('/', 1)[0])} ]; then {echo_line(value, f)} || "
                         f"exit {100 + i}; w=1; fi")
        lines.append(f"[ -n \"$w\" ] || {{ echo {_q(gone)} >&2; exit {100 + first}; }}")
    if len(targets) > MAX_WRITES:
        raise ValueError(f"too many writes at once ({len(targets)})")
    return "\n".join([*lines, "exit 0"]), targets


def write_results(targets: Sequence[tuple[str, str]], res: CommandResult | None
                  ) -> list[WriteResult]:
    """The writes done and the failed one last, from the result of write_script's script
    (None: every target is done)."""
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


# --- reads --------------------------------------------------------------------------------------

_FILE_MARK = re.compile(r"(?:^|\n)==KH-FILE== (\d+) (ok|absent|nodir|error)\n|\n==KH-END==\n")


def read_script(targets: Sequence[tuple[str, str]]) -> str:
    """A script printing each (dir, file)'s text between markers, exactly (see parse_reads)."""
    lines = []
    for i, (d, f) in enumerate(targets):
        p = f"{d}/{f}"
        nl = "\\n" if i else ""
        lines.append(
            f"if [ -e {_q(p)} ]; then printf '{nl}==KH-FILE== {i} ok\\n'; cat {_q(p)} 2>/dev/null"
            f" || printf '\\n==KH-FILE== {i} error\\n'; elif [ -d {_q(d)} ]; then "
            f"printf '{nl}==KH-FILE== {i} absent\\n'; "
            f"else printf '{nl}==KH-FILE== {i} nodir\\n'; fi")
    lines.append("printf '\\n==KH-END==\\n'")
    return "\n".join(lines)


def parse_reads(text: str, n: int) -> list[tuple[str, str | None]]:
    """[(status, text or None)] for each of the n targets of read_script's output; status ok,
    absent (the directory exists, the file does not), nodir or error."""
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


T = TypeVar("T")


def settled(read: Callable[[], T], first: T, tries: int = SETTLE_READS) -> T:
    """Read again until two readings in a row agree, at most `tries` more times; the last one.
    Two counters read one after the other are not one snapshot (see Hierarchy.read_metric)."""
    raw = first
    for _ in range(tries):
        again = read()
        if again == raw:
            break
        raw = again
    return raw


def procs_script(dirs: Iterable[str], recursive: bool) -> str:
    """Print the PIDs in each cgroup directory (and its descendants with recursive)."""
    lines = [_BY_LINE] if recursive else []
    for d in dirs:
        if recursive:
            lines.append(f"[ -d {_q(d)} ] && for c in $(find {_q(d)} -type d); do "
                         "cat \"$c/cgroup.procs\"; done")
        else:
            procs = _q(f"{d}/cgroup.procs")
            lines.append(f"[ -e {procs} ] && cat {procs}")
    return "\n".join(lines) + "\ntrue"


def parse_pids(stdout: str) -> list[int]:
    return sorted({int(t) for t in stdout.split() if t.isdigit()})


def probe_sections(stdout: str) -> dict[str, str]:
    """A probe script's output, `== NAME` lines opening each section -> {NAME: its lines}."""
    sections: dict[str, str] = {}
    name = ""
    for line in stdout.splitlines():
        if line.startswith("== "):
            name = line[3:].strip()
            sections.setdefault(name, "")
        elif name:
            sections[name] += line + "\n"
    return sections


def v2_probe_script(root: str) -> str:
    """Sections uname, controllers, files (of a fresh child cgroup), devices (RDMA)."""
    return f"""echo '== uname'; uname -r
echo '== controllers'; cat {_q(f'{root}/cgroup.controllers')}
echo '== files'
p={_q(root)}/kh-probe.$$
if mkdir "$p" 2>/dev/null; then for f in "$p"/*; do echo "${{f##*/}}"; done; rmdir "$p"; fi
echo '== devices'; ls /sys/class/infiniband 2>/dev/null; true"""


def v1_probe_script(root: str) -> str:
    """Sections uname, mounts (the cgroup lines of /proc/mounts), files (of a fresh child
    cgroup in each hierarchy under `root`), devices (RDMA)."""
    return f"""echo '== uname'; uname -r
echo '== mounts'; grep ' cgroup ' /proc/mounts
echo '== files'
for d in {_q(root)}/*; do
    [ -L "$d" ] && continue
    p="$d/kh-probe.$$"
    mkdir "$p" 2>/dev/null || continue
    for f in "$p"/*; do echo "${{f##*/}}"; done
    rmdir "$p"
done
echo '== devices'; ls /sys/class/infiniband 2>/dev/null; true"""


# --- create, kill, remove -----------------------------------------------------------------------

def v2_create_script(root: str, parts: Sequence[str], controllers: Iterable[str]) -> str:
    """mkdir root/parts[0]/... down to the cgroup, enabling `controllers` in the
    subtree_control of root and of each ancestor (not of the cgroup itself: its processes
    live there)."""
    lines = []
    enable = sorted(controllers)
    for depth in range(len(parts) + 1):
        d = "/".join([root, *parts[:depth]])
        if depth:
            lines.append(f"[ -d {_q(d)} ] || mkdir {_q(d)} || exit 1")
        if depth < len(parts):  # an ancestor: enable the controllers for its children
            sc = f"{d}/cgroup.subtree_control"
            for c in enable:
                why = _q(f"kharness: cannot enable {c} in {sc}")
                lines.append(f"echo {_q(f'+{c}')} > {_q(sc)} || {{ echo {why} >&2; exit 1; }}")
    return "\n".join(lines)


def v1_create_script(mounts: Iterable[str], parts: Sequence[str], cpuset: str | None) -> str:
    """mkdir mount/parts[0]/... in each hierarchy; in the cpuset one (`cpuset`, its mount),
    each new cgroup gets its parent's cpuset.cpus and cpuset.mems when empty."""
    lines = []
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


def v2_thaw_kill_script(top: str) -> str:
    """Thaw the subtree (top-down) and cgroup.kill it, where the kernel has cgroup.kill: the
    `thaw` of kill_script, whose loops split find's output by line."""
    return (f"if [ -d {_q(top)} ]; then\n"
            f"    for c in $(find {_q(top)} -type d); do echo 0 > \"$c/cgroup.freeze\"; done\n"
            f"    [ -e {_q(f'{top}/cgroup.kill')} ] && echo 1 > {_q(f'{top}/cgroup.kill')}\n"
            "fi 2>/dev/null")


def v1_thaw_script(top: str | None) -> str:
    """Thaw the subtree under `top` (its freezer hierarchy directory; None: no freezer): the
    `thaw` of kill_script, whose loops split find's output by line."""
    if top is None:
        return ":"
    # thaw top-down: a cgroup frozen by itself stays frozen when its parent thaws
    return (f"[ -d {_q(top)} ] && for c in $(find {_q(top)} -type d); do "
            f"echo THAWED > \"$c/freezer.state\"; done 2>/dev/null")


def kill_script(tops: Sequence[str], thaw: str, rmdir: bool, timeout: float) -> str:
    """Run `thaw`, then SIGKILL every process in the subtrees under `tops` until none is left
    (and with rmdir, remove the directories bottom-up until they are gone). Exit 3 with the
    cgroups, their processes and rmdir's errors when `timeout` passes."""
    qtops = " ".join(_q(d) for d in tops)
    rounds = max(1, int(timeout / 0.05))
    rm = 'rmdir "$c" 2>/dev/null' if rmdir else ":"
    busy = ('[ -d "$top" ] && left=1' if rmdir else
            'read -r x < "$c/cgroup.procs" && left=1')  # cgroupfs sizes are 0: no -s
    report = 'rmdir "$c"' if rmdir else ":"
    return f"""{_BY_LINE}
{thaw}
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


# --- sampling -----------------------------------------------------------------------------------


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


def v2_sample_reads(cgroup_dir: str) -> str:
    """Shell that sets $u (usage) and $s (swap) for one sample, "-" when unreadable."""
    return (f"read -r u < {_q(f'{cgroup_dir}/memory.current')}; "
            f"read -r s < {_q(f'{cgroup_dir}/memory.swap.current')}")


def v1_sample_reads(cgroup_dir: str) -> str:
    """v2_sample_reads on v1 (the memory hierarchy's directory), swap = memsw - usage."""
    memsw = _q(f"{cgroup_dir}/memory.memsw.usage_in_bytes")
    usage = _q(f"{cgroup_dir}/memory.usage_in_bytes")
    # memsw is read before and after usage and the smaller one taken: the two counters
    # move one after the other (charge, uncharge), so a skewed pair must never show
    # memory that is moving as swap; a negative difference is 0 (parse_samples).
    return (f"read -r m1 < {memsw} && read -r u < {usage} && read -r m2 < {memsw} && "
            "s=$(( (m1 < m2 ? m1 : m2) - u ))")


def sampler(cgroup: str, serial: int, reads: str, interval: float) -> Sampler:
    """Commands that run `reads` (see v2_sample_reads) every `interval` seconds in a background
    loop outside any cgroup, writing "uptime usage swap" lines to a file named for the cgroup,
    `serial` and this process; parse(stop output) gives the samples."""
    tag = re.sub(r"[^A-Za-z0-9]+", "_", cgroup)
    out = f"/tmp/kh-sample.{tag}.{serial}.{os.getpid()}"
    usec = max(1000, int(interval * 1e6))
    loop = (f"while :; do read -r t _ < /proc/uptime; u=-; s=-; {reads}"
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
