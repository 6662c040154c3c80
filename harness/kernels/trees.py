"""The source trees `kharness kernel build` compiles: `debian:6.1` / `debian:6.12` (Debian's
linux-source-<series> package, unpacked once into `$KHARNESS_CACHE/sources/`) or
`path:/a/linux/tree` (a user's checkout, built out of tree with `O=` so that it is not
dirtied). A tree's identity (package version, or git HEAD plus the uncommitted changes, or the
files' sizes and times) goes into the build's cache key."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import hostcmd
from ..events import EventBus
from .cache import sources_root
from .kernel import BuildError

DEBIAN_SERIES = ("6.1", "6.12")


@dataclass(frozen=True)
class Source:
    """A kernel source tree to build (not a `KernelSource`, where a ready kernel comes from)."""

    spec: str  # as given: debian:6.12, path:/src/linux
    tree: Path
    version: str  # `make kernelversion`: 6.12.117
    identity: str  # what the cache key hashes: package version, git state, file times


def _apt_version(package: str) -> str | None:
    proc = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    m = re.search(r"^Version: (\S+)", proc.stdout, re.MULTILINE)
    return m.group(1) if m else None


def _kernelversion(tree: Path) -> str:
    head = (tree / "Makefile").read_text(errors="replace")[:2000]
    parts = {k: (re.search(rf"^{k}[ \t]*=[ \t]*(\S*)", head, re.MULTILINE) or [None, ""])[1]
             for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION")}
    version = f"{parts['VERSION']}.{parts['PATCHLEVEL']}"
    if parts["SUBLEVEL"] and parts["SUBLEVEL"] != "0":
        version += f".{parts['SUBLEVEL']}"
    return version + parts["EXTRAVERSION"]


def debian_source(series: str, bus: EventBus) -> Source:
    """Debian's linux-source-<series>, unpacked once into the cache."""
    if series not in DEBIAN_SERIES and not re.fullmatch(r"\d+\.\d+", series):
        raise BuildError(f"debian:{series}: a Debian source is a series such as "
                         f"{' or '.join(DEBIAN_SERIES)}")
    package = f"linux-source-{series}"
    version = _apt_version(package)
    if version is None and os.geteuid() == 0:
        bus.emit("build.apt_update", f"{package} unknown to apt: running apt-get update")
        hostcmd.run(["apt-get", "update", "-q"], "apt-get update")
        version = _apt_version(package)
    if version is None:
        cached = sorted(sources_root().glob(f"{package}_*/.kharness-source.json"))
        if not cached:
            raise BuildError(f"debian:{series}: Debian's archive has no package {package} "
                             "(`apt-cache policy linux-source-*` lists the series it has)")
        version = json.loads(cached[-1].read_text())["package_version"]
        bus.emit("build.warning", f"apt does not know {package}: using the unpacked {version}")
    top = sources_root() / f"{package}_{version}"
    tree = top / package
    marker = top / ".kharness-source.json"
    if not marker.is_file():
        _unpack_debian_source(package, version, top, tree, bus)
        marker.write_text(json.dumps({"package": package, "package_version": version,
                                      "version": _kernelversion(tree)}) + "\n")
    return Source(f"debian:{series}", tree, _kernelversion(tree), f"{package} {version}")


def _unpack_debian_source(package: str, version: str, top: Path, tree: Path,
                          bus: EventBus) -> None:
    start = time.monotonic()
    bus.emit("build.source", f"downloading {package} {version}")
    work = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=sources_root()))
    try:
        hostcmd.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
                     f"{package}={version}"], f"downloading {package}", cwd=work)
        deb = next(work.glob("*.deb"))
        bus.emit("build.source", f"unpacking {deb.name} ({deb.stat().st_size >> 20} MiB)")
        member = f"./usr/src/{package}.tar.xz"
        _pipeline([["dpkg-deb", "--fsys-tarfile", str(deb)], ["tar", "-xO", member],
                   ["xz", "-dc", "-T0"], ["tar", "-x", "-C", str(work)]],
                  f"unpacking {member} from {deb.name}")
        deb.unlink()
        if not (work / package / "Makefile").is_file():
            raise BuildError(f"{deb.name}: {member} has no {package}/Makefile")
        staged = work / "top"
        staged.mkdir()
        (work / package).rename(staged / package)
        if top.exists():
            shutil.rmtree(top)
        staged.rename(top)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bus.emit("build.source", f"{package} {version} unpacked in {time.monotonic() - start:.0f}s "
             f"({tree})")


def _pipeline(argvs: list[list[str]], what: str) -> None:
    """`a | b | c` without a shell; every stage must succeed."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        prev = subprocess.DEVNULL
        for i, argv in enumerate(argvs):
            last = i == len(argvs) - 1
            proc = subprocess.Popen(argv, stdin=prev, stderr=subprocess.PIPE,
                                    stdout=None if last else subprocess.PIPE)
            if procs:
                procs[-1].stdout.close()  # type: ignore[union-attr]
            procs.append(proc)
            prev = proc.stdout  # type: ignore[assignment]
        errors = [(p, p.stderr.read().decode(errors="replace")) for p in procs[::-1]]  # type: ignore[union-attr]
        for p, err in errors[::-1]:
            if p.wait() != 0:
                raise hostcmd.HostCommandError(what, p.args, p.returncode, err)  # type: ignore[arg-type]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def path_source(value: str) -> Source:
    """A user's kernel tree; it must be clean (`make mrproper`) for an O= build."""
    tree = Path(value).expanduser().resolve()
    if not (tree / "Makefile").is_file() or not (tree / "Kconfig").is_file():
        raise BuildError(f"path:{value}: {tree} is not a Linux source tree (no Makefile and "
                         "Kconfig at its top)")
    for leftover in (".config", "include/config", "include/generated"):
        if (tree / leftover).exists():
            raise BuildError(
                f"path:{value}: {tree / leftover} exists: kharness builds out of tree (O=) and "
                f"the kernel's make refuses a configured source tree; run `make -C {tree} "
                "mrproper` (it deletes that tree's .config and build output)")
    return Source(f"path:{tree}", tree, _kernelversion(tree), _tree_identity(tree))


def _tree_identity(tree: Path) -> str:
    """git HEAD plus a hash of the uncommitted changes and untracked files; without git, a
    hash of every file's path, size and mtime."""
    def git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, check=False,
                              stdin=subprocess.DEVNULL)

    head = git("rev-parse", "HEAD")
    if head.returncode == 0:
        h = hashlib.sha256(git("diff", "HEAD", "--binary").stdout)
        for name in sorted(git("ls-files", "-z", "--others", "--exclude-standard").stdout
                           .split(b"\0")):
            if name:
                h.update(name + b"\0")
                with contextlib.suppress(OSError):
                    h.update(hashlib.sha256((tree / name.decode()).read_bytes()).digest())
        return f"git {head.stdout.decode().strip()} changes {h.hexdigest()[:16]}"
    h = hashlib.sha256()
    for root, dirs, files in os.walk(tree):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            p = os.path.join(root, name)
            with contextlib.suppress(OSError):
                st = os.stat(p)
                h.update(f"{os.path.relpath(p, tree)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return f"files {h.hexdigest()[:16]}"


def resolve_source(text: str, bus: EventBus) -> Source:
    kind, sep, value = text.partition(":")
    if sep and kind == "debian" and value:
        return debian_source(value, bus)
    if sep and kind == "path" and value:
        return path_source(value)
    raise BuildError(f"bad source {text!r}: debian:SERIES ({', '.join(DEBIAN_SERIES)}) or "
                     "path:/a/linux/tree")
