"""One QEMU process running one kernel: launch, console, readiness, shutdown.

    with Machine(MachineConfig(kernel, initrd), bus) as vm:
        vm.ssh.run("uname -r")

The machine owns the console stream: one reader thread writes every byte to the console log,
feeds the console parser (markers, panic/oops detection) and copies it to the serial channel.
It leaves the talking to its channels (SSH, serial). Whatever happens (exception, SIGINT,
SIGTERM, or the harness itself killed: PR_SET_PDEATHSIG), QEMU does not outlive it.

Longer than ~600 lines on purpose: the boot (argv, the private initrd with the keys, the disk),
its retries, the console reader, readiness, shutdown and the accelerator probe all act on one
QEMU process's state (its pipes, reader thread, condition variable, console parser); split,
each part would reach into the others' private fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from .channels.serial import SerialChannel
from .channels.ssh import SSHChannel, host_key_blob, new_client_key, new_dropbear_host_key
from .console import ConsoleEvent, ConsoleEventKind, ConsoleParser, classify
from .events import EventBus
from .images import CpioWriter
from .kernels import Kernel
from .output import OutputError, atomic_write
from .paths import cache_dir
from .units import parse_size

QEMU = "qemu-system-x86_64"

# v1 controllers that newer kernels only offer behind a config option (absent before 6.11).
V1_CONFIG = {"memory": "CONFIG_MEMCG_V1", "cpuset": "CONFIG_CPUSETS_V1"}


class BootError(RuntimeError):
    """The guest did not become ready. Carries the argv, QEMU's exit code and the console tail."""

    def __init__(self, reason: str, argv: list[str], exit_code: int | None, console_tail: str,
                 console_log: Path | None = None, failure: str | None = None) -> None:
        self.reason = reason
        self.argv = argv
        self.exit_code = exit_code
        self.console_tail = console_tail
        self.console_log = console_log
        self.failure = failure  # "panic", "oops"... when the console shows why
        self.retries: list[str] = []  # earlier boots of this machine that failed the same way
        self.timed_out = False  # no ready marker within the boot timeout
        code = "still running" if exit_code is None else f"exit code {exit_code}"
        super().__init__(
            f"boot failed: {reason} (qemu {code})\n"
            f"argv: {shlex.join(redacted(argv))}\n"
            + (f"console log: {console_log}\n" if console_log else "")
            + "console tail:\n" + console_tail
        )


@dataclass(frozen=True)
class ControllerStatus:
    name: str
    available: bool
    reason: str = ""


@dataclass
class MachineConfig:
    kernel: Kernel
    initrd: Path
    memory: str = "512M"
    cpus: int = 2
    hierarchy: str = "v2"  # v1, v2 or none
    swap: str | None = None  # zram size, e.g. "256M"
    rdma: bool = False
    numa: int = 1  # NUMA nodes: -smp and -m split evenly (the last node takes the remainder)
    module_groups: tuple[str, ...] = ()
    disk: str | None = None  # size of a raw virtio disk (/dev/vda in the guest), e.g. "64M"
    # A host directory whose files the disk holds: the disk is then an ext4 filesystem made
    # from it (mkfs.ext4 -d), fresh for each boot (the guest mounts it: module group ext4).
    disk_files: Path | None = None
    # Options for the cgroup2 mount (v2), e.g. ("nsdelegate", "memory_recursiveprot") as
    # systemd mounts it; the kernel's selftests need nsdelegate for their namespace tests.
    cgroup2_options: tuple[str, ...] = ()
    accel: str = "auto"  # auto, kvm or tcg
    cmdline: tuple[str, ...] = ()
    boot_timeout: float = 90.0
    workdir: Path | None = None  # console log and QEMU stderr go here
    qemu: str = QEMU
    extra_args: tuple[str, ...] = ()
    # QEMU's gdbstub on 127.0.0.1:Machine.gdb_port, and `nokaslr` (without it the symbols'
    # addresses are not the running kernel's and no breakpoint hits). The guest boots normally
    # (no -S): a debugger attaches later (channels/gdb.py).
    gdb: bool = False
    # A kernel that dies while booting (a panic or oops on the console before it is ready) or
    # never gets ready within boot_timeout is booted again this many times. Under TCG both
    # happen now and then with the kernels that are not under test for that: Debian's 6.12
    # dies in its text patching (int3 oops in sched_clock_cpu as sched_clock is marked
    # stable), Debian's 6.1 once stopped printing at 0.8 s and never got ready (both in CI
    # runs, not reproduced in 230 boots). Each failed boot's console stays in the workdir
    # (console.boot1.log...) and is listed in BootInfo.retries. A boot that fails otherwise
    # (QEMU exits, SSH refuses) is not retried: a second boot would do the same.
    boot_retries: int = 1


@dataclass
class BootInfo:
    """What the guest reported while booting, from its console markers."""

    markers: list[ConsoleEvent] = field(default_factory=list)
    controllers: dict[str, ControllerStatus] = field(default_factory=dict)
    swap: str | None = None
    rdma: str | None = None
    boot_seconds: float = 0.0
    ready_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)  # boots that failed before this one


_RIP = re.compile(r"RIP: (?:[0-9a-f]{4}:)?(\S+)")

# The console failures that mean the kernel died: a boot that shows one gets booted again
# (MachineConfig.boot_retries), and the runner gives one more boot to a kernel that dies so
# right after booting, before the first scenario's first step.
RETRIED_FAILURES = frozenset({"panic", "oops"})


def _launcher() -> list[str]:
    """QEMU is started through util-linux's setpriv with a parent-death signal: if the harness
    dies in a way no `finally` sees (SIGKILL, OOM kill), the kernel kills QEMU too. (A
    preexec_fn prctl would do the same but is unsafe with the console reader threads.)"""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


# Kernel parameters whose values must not be written to disk or shown (none is set by kharness
# itself any more: its keys go in the machine's initrd; a user's --cmdline might carry one).
SECRET_PARAMS = ("kharness.hostkey=", "kharness.authkey=")


def redacted(argv: list[str]) -> list[str]:
    """`argv` with the values of SECRET_PARAMS in -append replaced, for qemu.argv and errors."""
    out = list(argv)
    for i, arg in enumerate(out):
        if i and out[i - 1] == "-append":
            out[i] = " ".join(
                next((p + "<redacted>" for p in SECRET_PARAMS if word.startswith(p)), word)
                for word in arg.split(" "))
    return out


def private_dir() -> Path:
    """A fresh 0700 directory under $KHARNESS_CACHE/private for one machine. Directories left
    by a kharness that was killed (SIGKILL: no `finally` ran) are removed on the way."""
    root = cache_dir() / "private"
    root.mkdir(mode=0o700, exist_ok=True)
    os.chmod(root, 0o700)
    for entry in root.iterdir():
        pid = entry.name.split("-")[1] if entry.name.startswith("m-") else ""
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"m-{os.getpid()}-", dir=root))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mib(size: str) -> int:
    """`512M`, `1G`, `2048` (MiB) -> MiB."""
    text = size.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    if text and text[-1] in mult:
        return int(float(text[:-1]) * mult[text[-1]])
    return int(text)


class Machine:
    def __init__(self, config: MachineConfig, bus: EventBus) -> None:
        self.config = config
        self.bus = bus
        self.key = new_client_key()
        self.port = free_port()
        self.gdb_port: int | None = free_port() if config.gdb else None
        self.proc: subprocess.Popen[bytes] | None = None
        # printk timestamps (Debian's PRINTK_TIME, forced with printk.time=1) tell kernel lines
        # from userspace output: only timestamped lines can be kernel reports.
        self.console = ConsoleParser(require_timestamp=True)
        self.info = BootInfo()
        self.ssh: SSHChannel | None = None
        self.serial: SerialChannel | None = None
        self.accel = config.accel
        # A workdir the caller did not choose is removed after a clean run, kept otherwise.
        self._own_workdir = config.workdir is None
        self.keep_workdir = False
        self._booted = False
        self.workdir = config.workdir or Path(
            os.path.join(cache_dir(), "runs", f"machine-{os.getpid()}-{self.port}"))
        self.console_log = self.workdir / "console.log"
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._serial_peer: socket.socket | None = None
        self._eof = False
        self._start_time = 0.0
        self.host_key_file: bytes = b""  # dropbear's host key, handed to the guest
        self.host_key: str | None = None  # its public blob, pinned by the SSH channel
        self.marker_times: dict[str, float] = {}  # first time each marker was seen, since launch
        # What only the harness may read (the initrd with the keys, the scratch disk): a 0700
        # directory of its own, outside the workdir (whose files end up in results and CI
        # artefacts), removed at stop.
        self.private: Path | None = None
        self.initrd: Path = config.initrd
        # The first write into the workdir that failed (a full disk): the boot or the run stops.
        self.output_error: OutputError | None = None
        self.on_output_error: Callable[[OutputError], None] | None = None
        self._stopping = False

    # --- argv ------------------------------------------------------------------------------

    def kernel_cmdline(self) -> list[str]:
        c = self.config
        # No key material here: the command line is world-readable (ps, /proc/PID/cmdline,
        # qemu.argv in the results). The keys go in the machine's own initrd (_keys_initrd).
        args = ["console=ttyS0", "loglevel=5", "printk.time=1", "panic=-1",
                f"kharness.hierarchy={c.hierarchy}"]
        if c.swap:
            args.append(f"kharness.swap={c.swap}")
        if c.cgroup2_options:
            args.append("kharness.cgroup2opts=" + ",".join(c.cgroup2_options))
        if c.rdma:
            args.append("kharness.rdma=1")
        if c.gdb:
            args.append("nokaslr")
        groups = list(c.module_groups)
        if c.disk and "disk" not in groups:
            groups.append("disk")
        if groups:
            args.append("kharness.modules=" + ",".join(groups))
        args.extend(c.cmdline)
        return [a for a in args if a]

    def argv(self) -> list[str]:
        c = self.config
        accel = self.accel if self.accel != "auto" else "tcg"
        return [
            c.qemu, "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", accel, "-cpu", "max", "-smp", str(c.cpus), "-m", c.memory,
            "-kernel", str(c.kernel.vmlinux), "-initrd", str(self.initrd),
            "-append", " ".join(self.kernel_cmdline()),
            "-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-no-reboot",
            *self._numa_args(),
            *self._disk_args(),
            *(["-gdb", f"tcp:127.0.0.1:{self.gdb_port}"] if self.gdb_port else []),
            *c.extra_args,
        ]

    def _numa_args(self) -> list[str]:
        c = self.config
        if c.numa <= 1:
            return []
        total = parse_size(c.memory) >> 20
        per_cpu, per_mem = c.cpus // c.numa, total // c.numa
        args: list[str] = []
        for node in range(c.numa):
            size = per_mem if node < c.numa - 1 else total - per_mem * (c.numa - 1)
            first = node * per_cpu
            cpus = f"{first}-{first + per_cpu - 1}" if per_cpu > 1 else str(first)
            args += ["-object", f"memory-backend-ram,id=ram{node},size={size}M",
                     "-numa", f"node,nodeid={node},cpus={cpus},memdev=ram{node}"]
        return args

    def _disk_args(self) -> list[str]:
        if not self.config.disk:
            return []
        drive = f"file={self.disk_image},if=none,id=disk0,format=raw,cache=unsafe"
        return ["-drive", drive, "-device", "virtio-blk-pci,drive=disk0"]

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def disk_image(self) -> Path:
        assert self.private is not None
        return self.private / "disk.img"

    def start(self) -> None:
        if self.accel == "auto":
            self.accel = detect_accel(self.config, self.bus)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.workdir, exc) from exc
        self.private = private_dir()
        self.host_key_file, self.host_key = new_dropbear_host_key(self.private)
        self.initrd = self._keys_initrd()
        attempts = 1 + max(0, self.config.boot_retries)
        retries: list[str] = []
        for attempt in range(1, attempts + 1):
            try:
                self._boot(attempt)
            except BootError as exc:
                exc.retries = list(retries)
                if (exc.failure not in RETRIED_FAILURES and not exc.timed_out) \
                        or attempt == attempts or self._stopping:
                    raise
                retries.append(self._discard_boot(attempt, exc))
                continue
            self.info.retries = retries
            return

    def _keys_initrd(self) -> Path:
        """The initrd this machine boots: the shared one (base + the kernel's modules) with a
        third archive appended that holds the SSH keys (the kernel unpacks them over the
        others): root's authorized key and dropbear's host key, 0600 in the guest, in a 0600
        file in the private directory. Copying ~17 MiB costs a few ms."""
        assert self.private is not None
        cpio = CpioWriter()
        cpio.dir("etc/kharness/secret", 0o700)
        cpio.file("etc/kharness/secret/authorized_keys",
                  f"ssh-ed25519 {self.key.get_base64()} kharness\n".encode(), 0o600)
        cpio.file("etc/kharness/secret/dropbear_ed25519_host_key", self.host_key_file, 0o600)
        out = self.private / "initrd.cpio"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as dst:
            with open(self.config.initrd, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
            dst.write(cpio.finish())
        return out

    def _boot(self, attempt: int) -> None:
        if self.config.disk:
            with open(self.disk_image, "wb") as f:  # sparse, empty for each boot
                f.truncate(memory_mib(self.config.disk) << 20)
            if self.config.disk_files is not None:
                proc = subprocess.run(
                    ["mkfs.ext4", "-q", "-F", "-L", "kharness", "-d",
                     str(self.config.disk_files), str(self.disk_image)],
                    capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
                if proc.returncode != 0:
                    raise BootError(f"mkfs.ext4 -d {self.config.disk_files} failed: "
                                    f"{proc.stderr.strip()}", [], None, "")
        argv = self.argv()
        atomic_write(self.workdir / "qemu.argv", shlex.join(redacted(argv)) + "\n")
        again = f", boot {attempt}" if attempt > 1 else ""
        self.bus.emit("machine.boot", f"booting {self.config.kernel.release} "
                      f"({self.accel}, {self.config.hierarchy}, {self.config.memory}{again})",
                      argv=argv, release=self.config.kernel.release)
        self._start_time = time.monotonic()
        self._launch(argv)
        self._wait_ready(argv)
        host_key = self.host_key or next((host_key_blob(m.payload) for m in self.info.markers
                                          if m.name == "hostkey"), None)
        self.ssh = SSHChannel("127.0.0.1", self.port, self.key, host_key=host_key)
        try:
            self.ssh.connect(timeout=max(5.0, self._remaining()))
        except Exception as exc:
            raise self._boot_error(f"SSH did not come up: {exc}", argv) from exc
        self.info.ready_seconds = time.monotonic() - self._start_time
        self._booted = True
        self.bus.emit("machine.ready", f"{self.config.kernel.release} ready over SSH in "
                      f"{self.info.ready_seconds:.1f}s", seconds=self.info.ready_seconds)

    def _discard_boot(self, attempt: int, exc: BootError) -> str:
        """Kill the boot that died, keep its console as console.boot<N>.log, reset the state a
        boot builds; returns the line that records it."""
        self.stop(soft_timeout=0, final=False)
        kept = self.workdir / f"console.boot{attempt}.log"
        for name, keep in (("console.log", kept.name),
                           ("qemu.stderr", f"qemu.boot{attempt}.stderr")):
            with contextlib.suppress(OSError):
                (self.workdir / name).rename(self.workdir / keep)
        what = exc.reason
        first = next(iter(self.console.failures), None)
        if first is not None:
            what += f": {first.line.split('] ', 1)[-1].strip()}"
            rip = next((m.group(1) for line in self.console.lines[first.lineno - 1:]
                        if (m := _RIP.search(line))), None)
            what += f" at {rip}" if rip else ""
        elif exc.timed_out:
            last = next((line for line in reversed(self.console.lines) if line.strip()), "")
            what += f"; the console's last line: {last.strip()}" if last else \
                "; the console stayed empty"
        record = f"boot {attempt}: {what} (console: {kept})"
        self.keep_workdir = True  # the failed boot's console is the record
        self.bus.emit("machine.retry", f"{self.config.kernel.release}: boot {attempt} failed "
                      f"({what}); booting once more; console in {kept}",
                      release=self.config.kernel.release, console=str(kept))
        self.console = ConsoleParser(require_timestamp=True)
        self.info = BootInfo()
        self.proc = None
        self._reader = None
        self._eof = False
        self.marker_times = {}
        return record

    def _remaining(self) -> float:
        return self._start_time + self.config.boot_timeout - time.monotonic()

    def _launch(self, argv: list[str]) -> None:
        try:
            stderr = open(self.workdir / "qemu.stderr", "wb")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(self.workdir / "qemu.stderr", exc) from exc
        try:
            self.proc = subprocess.Popen(
                [*_launcher(), *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, start_new_session=True,
            )
        except FileNotFoundError:
            raise BootError(f"{argv[0]} not found: run `kharness setup` "
                            "(apt-get install qemu-system-x86)", argv, None, "") from None
        finally:
            stderr.close()
        ours, theirs = socket.socketpair()
        # The reader must never block on the serial copy (nobody reads it until the serial
        # channel is used): the copy is dropped when its buffer is full, the log keeps all.
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self._serial_peer = ours
        self.serial = SerialChannel(theirs)
        self._reader = threading.Thread(target=self._read_console, name="console", daemon=True)
        self._reader.start()
        threading.Thread(target=self._write_console, name="console-in", daemon=True).start()

    def _read_console(self) -> None:
        """The one console reader: log file, parser, serial channel copy. It reads until QEMU
        is gone whatever happens to the log: a write that fails (a full disk) is recorded in
        `output_error` (the boot, and through on_output_error the run, stops) and the parser
        and serial copy go on, so the machine is never taken for a silent one."""
        assert self.proc and self.proc.stdout
        fd = self.proc.stdout.fileno()
        log = None
        try:
            log = open(self.console_log, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            self._output_failed(OutputError(self.console_log, exc))
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                if log is not None:
                    try:
                        log.write(data)
                    except OSError as exc:
                        with contextlib.suppress(OSError):
                            log.close()
                        log = None
                        self._output_failed(OutputError(self.console_log, exc))
                events = self.console.feed(data)
                if self._serial_peer is not None:
                    try:
                        self._serial_peer.send(data)
                    except OSError:  # BlockingIOError when full: drop the copy
                        pass
                if events:
                    for ev in events:
                        if ev.kind == ConsoleEventKind.MARKER:
                            elapsed = time.monotonic() - self._start_time
                            self.marker_times.setdefault(ev.name, elapsed)
                            self.bus.emit("debug.marker", f"{elapsed:5.2f}s {ev.line.strip()}")
                        else:
                            self.bus.emit(f"console.{ev.kind.name.lower()}",
                                          f"console: {ev.line.strip()}", line=ev.line)
                    with self._cond:
                        self._cond.notify_all()
        finally:
            if log is not None:
                with contextlib.suppress(OSError):
                    log.close()
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _output_failed(self, exc: OutputError) -> None:
        if self.output_error is None:
            self.output_error = exc
            self.bus.emit("debug.output", f"{self.config.kernel.release}: {exc}",
                          path=str(exc.path))
            if self.on_output_error is not None:
                self.on_output_error(exc)
        with self._cond:
            self._cond.notify_all()

    def _write_console(self) -> None:
        """What the serial channel writes goes to QEMU's stdin (the guest's ttyS0)."""
        assert self.proc and self.proc.stdin and self._serial_peer
        peer = self._serial_peer
        while True:
            try:
                select.select([peer], [], [])
                data = peer.recv(4096)
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                return
            if not data:
                return
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                return

    def _wait_ready(self, argv: list[str]) -> None:
        deadline = self._start_time + self.config.boot_timeout
        with self._cond:
            while True:
                if any(e.kind == ConsoleEventKind.MARKER and e.name == "ready"
                       for e in self.console.events):
                    break
                if self.output_error is not None:
                    raise self.output_error
                failure = classify(self.console.failures)
                if failure == "panic":
                    raise self._boot_error("kernel panic during boot", argv, failure)
                if self._eof or self._stopping:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(timeout=5) if self.proc else None
                    what = self.exit_description() or "QEMU was stopped"
                    raise self._boot_error(f"{what} before the guest was ready", argv, failure)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    exc = self._boot_error(
                        f"no ready marker within {self.config.boot_timeout:g}s", argv, failure)
                    exc.timed_out = True
                    raise exc
                self._cond.wait(min(remaining, 1.0))
        self.info.boot_seconds = time.monotonic() - self._start_time
        self._collect_markers()

    def _collect_markers(self) -> None:
        info = self.info
        info.markers = [e for e in self.console.events if e.kind == ConsoleEventKind.MARKER]
        config = self.config.kernel.config_values()
        for m in info.markers:
            words = m.payload.split()
            if m.name == "cgroup" and len(words) >= 2:
                version = words[0]
                if version == "v1" and words[1] == "mounted":
                    for c in words[2:]:
                        info.controllers[c] = ControllerStatus(c, True)
                elif version == "v1" and len(words) >= 3 and words[2] == "fail":
                    name = words[1]
                    reason = " ".join(words[3:])
                    option = V1_CONFIG.get(name)
                    if option and config.get(option) == "n":
                        reason = (f"{option} is not set in {self.config.kernel.release}"
                                  f" (mount -t cgroup -o {name}: {reason})")
                    info.controllers[name] = ControllerStatus(name, False, reason)
                elif version == "v2" and words[1] == "enabled":
                    for c in words[2:]:
                        info.controllers[c] = ControllerStatus(c, True)
                elif version == "v2" and len(words) >= 3 and words[2] == "fail":
                    info.controllers[words[1]] = ControllerStatus(words[1], False,
                                                                  " ".join(words[3:]))
            elif m.name == "swap":
                info.swap = m.payload
                if m.payload.startswith("fail"):
                    info.problems.append(f"swap: {m.payload}")
            elif m.name == "rdma":
                info.rdma = m.payload
                if m.payload.startswith("fail"):
                    info.problems.append(f"rdma: {m.payload}")
            elif m.name in ("module", "net", "sshd", "cgroup2opts") and "fail" in words:
                info.problems.append(f"{m.name}: {m.payload}")

    def _boot_error(self, reason: str, argv: list[str], failure: str | None = None) -> BootError:
        exit_code = self.proc.poll() if self.proc else None
        return BootError(reason, redacted(argv), exit_code, self.console_tail(), self.console_log,
                         failure=failure or classify(self.console.failures))

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])

    # --- shutdown --------------------------------------------------------------------------

    def stop(self, soft_timeout: float = 5.0, final: bool = True) -> int | None:
        """Soft first (poweroff in the guest), then hard (SIGTERM, SIGKILL). Idempotent.
        A final stop (any but the one between two boots of a retry) also ends a start() in
        progress in another thread: no boot is retried after it."""
        if final:
            self._stopping = True
            with self._cond:
                self._cond.notify_all()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            soft = False
            if self.ssh is not None and self.ssh.client is not None:
                try:
                    self.ssh.start("poweroff -f")
                    soft = True
                except Exception as exc:  # noqa: BLE001 - the guest may be gone; go hard
                    self.bus.emit("debug.shutdown", f"soft shutdown failed: {exc}")
            elif self.serial is not None and self.info.markers:
                try:
                    self.serial.send("poweroff -f\n")
                    soft = True
                except OSError:
                    pass
            if soft:
                try:
                    proc.wait(timeout=soft_timeout)
                except subprocess.TimeoutExpired:
                    pass
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                if proc.poll() is not None:
                    break
                try:
                    proc.send_signal(sig)
                    proc.wait(timeout=wait)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
            self.bus.emit("machine.stopped", f"{self.config.kernel.release} stopped "
                          f"({'soft' if soft else 'hard'})", exit_code=proc.returncode)
        if self.ssh is not None:
            if self.ssh.retries or self.ssh.reconnects:
                self.bus.emit("debug.ssh", f"{self.config.kernel.release}: {self.ssh.retries} SSH "
                              f"exec(s) retried, {self.ssh.reconnects} reconnect(s)")
            self.ssh.close()
            self.ssh = None
        if self.serial is not None:
            self.serial.close()
            self.serial = None
        if self._serial_peer is not None:
            try:
                self._serial_peer.close()
            except OSError:
                pass
            self._serial_peer = None
        # The console reader reads QEMU's stdout by fd number: close that pipe only once the
        # reader has seen its EOF (QEMU is gone), or a number reused meanwhile by another
        # machine's socket (parallel jobs) would be read from, stealing its SSH bytes.
        if self._reader is not None:
            self._reader.join(timeout=10)
        if proc is not None:
            streams = [proc.stdin]
            if self._reader is None or not self._reader.is_alive():
                streams.append(proc.stdout)
            for stream in streams:
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
        if self.private is not None and final:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None
        if self._own_workdir and self._booted and not self.keep_workdir \
                and not self.console.failures:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return proc.returncode if proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_description(self, wait: float = 0.0) -> str | None:
        """`QEMU exited (killed by signal 9)` / `QEMU exited with status 1` once the QEMU
        process is gone (waiting up to `wait` seconds for it), None while it runs."""
        if self.proc is None:
            return None
        if wait > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
        code = self.proc.poll()
        if code is None:
            return None
        if code < 0:
            return f"QEMU exited (killed by signal {-code})"
        return f"QEMU exited with status {code}"


# --- accelerator ---------------------------------------------------------------------------------

def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def detect_accel(config: MachineConfig, bus: EventBus, timeout: float = 8.0) -> str:
    """`kvm` only when a real guest boots to /init under KVM here, else `tcg`.

    /dev/kvm can exist and still hang a Linux guest (it does on these machines), so the probe
    boots the kernel under test with `kharness.probe` and waits for the init marker, with a
    short timeout. The verdict is cached for this host boot (boot_id) and QEMU binary.
    `KHARNESS_ACCEL=tcg|kvm` overrides it.
    """
    forced = os.environ.get("KHARNESS_ACCEL")
    if forced in ("tcg", "kvm"):
        return forced
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        bus.emit("accel.tcg", f"using TCG: /dev/kvm unusable ({exc.strerror})")
        return "tcg"
    cache_file = cache_dir() / "accel.json"
    key = f"{_boot_id()}:{shutil.which(config.qemu)}"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return cached["accel"]
    except (OSError, ValueError):
        pass
    probe_cfg = MachineConfig(
        kernel=config.kernel, initrd=config.initrd, memory="256M", cpus=1, hierarchy="none",
        accel="kvm", cmdline=("kharness.probe=1",), boot_timeout=timeout,
        workdir=cache_dir() / "runs" / f"kvm-probe-{os.getpid()}", qemu=config.qemu,
    )
    probe = Machine(probe_cfg, bus)
    verdict, why = "tcg", ""
    try:
        probe.workdir.mkdir(parents=True, exist_ok=True)
        probe._start_time = time.monotonic()
        probe._launch(probe.argv())
        with probe._cond:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if any(e.name == "init" for e in probe.console.events
                       if e.kind == ConsoleEventKind.MARKER):
                    verdict = "kvm"
                    break
                if probe._eof:
                    break
                probe._cond.wait(0.5)
        if verdict == "tcg":
            err = (probe.workdir / "qemu.stderr").read_text(errors="replace").strip()
            why = err.splitlines()[0] if err else f"no guest output within {timeout:.0f}s"
    finally:
        probe.stop(soft_timeout=0.5)
        shutil.rmtree(probe.workdir, ignore_errors=True)
    if verdict == "tcg":
        bus.emit("accel.tcg", f"using TCG: a KVM guest did not boot here ({why})")
    cache_file.write_text(json.dumps({"key": key, "accel": verdict, "why": why}))
    return verdict
