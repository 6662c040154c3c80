"""Running host tools (apt-get, dpkg-deb, depmod, gcc...) with argv lists and clear errors."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

# Debian packages the harness needs on the host, with the commands that prove they are there.
# One list: `kharness setup` installs it, `./kh` bootstraps through it.
HOST_PACKAGES: dict[str, str] = {
    "qemu-system-x86": "qemu-system-x86_64",
    "busybox-static": "/bin/busybox",
    "dropbear-bin": "/usr/sbin/dropbear",
    "cpio": "cpio",
    "kmod": "depmod",
    "gdb": "gdb",
    "xz-utils": "xz",
    "zstd": "zstd",
    "iproute2": "/usr/bin/rdma",
    "libibverbs1": "/usr/lib/x86_64-linux-gnu/libibverbs.so.1",
    "ibverbs-providers": "/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so",
    "ibverbs-utils": "/usr/bin/ibv_devices",
    "gcc": "gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
    "libibverbs-dev": "/usr/lib/x86_64-linux-gnu/libibverbs.a",
    "libnl-3-dev": "/usr/lib/x86_64-linux-gnu/libnl-3.a",
    "libnl-route-3-dev": "/usr/lib/x86_64-linux-gnu/libnl-route-3.a",
}

# Packages only the test suite needs (tests/test_report_integration.py screenshots the HTML
# report with headless Chromium): `kharness setup --debug`, which `./kh test` runs, installs them.
TEST_PACKAGES: dict[str, str] = {
    "chromium": "chromium",
}


class HostCommandError(RuntimeError):
    """A host command failed; carries the argv, the exit code and the tail of its stderr."""

    def __init__(self, what: str, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.what = what
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        super().__init__(
            f"{what} failed (exit {returncode}): {shlex.join(self.argv)}"
            + (f"\n{tail}" if tail else "")
        )


def run(
    argv: Sequence[str],
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a host command, capture its output, raise HostCommandError when it fails."""
    try:
        proc = subprocess.run(
            list(argv), check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise HostCommandError(what, argv, 127, f"{argv[0]}: not found ({exc})") from None
    except subprocess.TimeoutExpired as exc:
        raise HostCommandError(what, argv, -1, f"timed out after {timeout}s: {exc.stderr or ''}")
    if proc.returncode != 0:
        raise HostCommandError(what, argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


def missing_host_packages(packages: dict[str, str] | None = None) -> list[str]:
    """Debian packages from `packages` (default HOST_PACKAGES) whose proving command or file
    is absent."""
    missing = []
    for package, probe in (HOST_PACKAGES if packages is None else packages).items():
        present = Path(probe).exists() if probe.startswith("/") else shutil.which(probe)
        if not present:
            missing.append(package)
    return missing


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages with apt-get (root only); runs `apt-get update` first."""
    if not packages:
        return
    if os.geteuid() != 0:
        raise HostCommandError(
            "installing host packages", ["apt-get", "install", *packages], 1,
            "not root: run as root, or install them yourself: "
            f"sudo apt-get install {' '.join(packages)}",
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], "apt-get update", env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        "apt-get install", env=env)


def pids_of(program: str, parent: int | None = None) -> set[int]:
    """PIDs of running processes whose argv[0] is `program` (a name; any directory), only the
    children of `parent` when given. The tests use it to prove nothing was left running."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if os.path.basename(argv0) == program.encode():
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if parent is None or ppid == parent:
                pids.add(int(entry.name))
    return pids
