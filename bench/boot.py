#!/usr/bin/env python3
"""Boot-to-SSH-ready time of a kharness machine next to a raw QEMU boot of the same kernel.

    .venv/bin/python bench/boot.py [--kernel debian:6.1] [--runs 5]

The raw boot is what nothing can beat: the same qemu-system-x86_64 accelerator, CPU, memory and
kernel, with a busybox-only initramfs whose /init prints a line; it is timed from launch to that
line. The kharness boot is timed from launch to an SSH session that ran `true` (modules loaded,
eth0 up, cgroups mounted, dropbear answering). Runs alternate so both see the same load.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import images, kernels
from harness.events import EventBus
from harness.machine import Machine, MachineConfig, detect_accel

RAW_INIT = b"#!/bin/busybox sh\n/bin/busybox echo RAW-INIT-REACHED\n/bin/busybox poweroff -f\n"


def raw_initramfs(path: Path) -> None:
    cpio = images.CpioWriter()
    cpio.file("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
    cpio.file("init", RAW_INIT, 0o755)
    for d in ("dev", "proc", "sys"):
        cpio.dir(d)
    path.write_bytes(cpio.finish())


def raw_boot(config: MachineConfig, accel: str, initrd: Path) -> float:
    argv = [
        config.qemu, "-nodefaults", "-no-user-config", "-display", "none",
        "-accel", accel, "-cpu", "max", "-smp", str(config.cpus), "-m", config.memory,
        "-kernel", str(config.kernel.vmlinux), "-initrd", str(initrd),
        "-append", "console=ttyS0 loglevel=5 panic=-1",
        "-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0", "-no-reboot",
    ]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    buf = b""
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"RAW-INIT-REACHED" not in buf:
            ready, _, _ = select.select([fd], [], [], 60)
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                raise RuntimeError("raw boot produced no marker:\n" + buf.decode()[-2000:])
            buf += chunk
        return time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", action="append", help="kernel spec (default: debian:6.1)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cpus", type=int, default=None, help="guest CPUs (default: kharness's)")
    args = ap.parse_args()
    bus = EventBus()
    worst = 0.0
    for spec in args.kernel or ["debian:6.1"]:
        kernel = kernels.resolve(spec, bus)
        config = MachineConfig(kernel=kernel, initrd=images.initrd_for(kernel, bus))
        if args.cpus:
            config.cpus = args.cpus
        accel = detect_accel(config, bus)
        raw, ready = [], []
        with tempfile.TemporaryDirectory() as tmp:
            raw_initrd = Path(tmp) / "raw.cpio"
            raw_initramfs(raw_initrd)
            for _ in range(args.runs):
                raw.append(raw_boot(config, accel, raw_initrd))
                config.accel = accel
                with Machine(config, bus) as vm:
                    assert vm.ssh is not None
                    vm.ssh.run("true", check=True)
                    ready.append(time.monotonic() - vm._start_time)
        med_raw, med_ready = statistics.median(raw), statistics.median(ready)
        ratio = med_ready / med_raw
        worst = max(worst, ratio)
        print(f"{kernel.release} ({accel}, {config.cpus} CPU, {config.memory}, {args.runs} runs)")
        print(f"  raw boot to /init      median {med_raw:5.2f}s  "
              f"runs {' '.join(f'{x:.2f}' for x in raw)}")
        print(f"  kharness SSH-ready     median {med_ready:5.2f}s  "
              f"runs {' '.join(f'{x:.2f}' for x in ready)}")
        print(f"  ratio                  {ratio:5.2f}x (target <= 1.50x)")
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
