"""`debian:` kernels: Debian's packaged kernels, fetched with apt.

- `debian:6.1`, `debian:6.12`: the newest `linux-image-<ver>-amd64-unsigned` of that series in
  Debian's archive (the generic flavour: the cloud one lacks rdma_rxe). `debian:6.1.0-56` or
  `debian:6.12.117+deb12` pins an exact ABI.

A fetched kernel is unpacked under `$KHARNESS_CACHE/kernels/<release>/`: the ELF vmlinux taken
out of the bzImage (QEMU boots it through its PVH entry, the fastest way in under TCG), the
config, and the modules (decompressed, `depmod -b` run, since the debs ship no modules.dep).
`kharness kernel fetch --debug` adds `vmlinux.debug`, out of `linux-image-<release>-dbg`.

What a spec asks for is a `Wanted` (a version and a flavour); the releases come from an
`Archive` (apt's lists today). A flavour in the spec (`debian:6.1-rt`) is a change to `wanted()`
alone; releases that left the archive (a bisect's `debian:6.1.0-50`) are another `Archive`
(snapshot.debian.org) given to `DebianSource`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from .. import hostcmd
from ..events import EventBus
from .cache import entries, kernels_root, load_entry, write_entry
from .image import build_id, extract_vmlinux, file_sha256
from .kernel import DEBUG_VMLINUX, DebugSymbolsError, Kernel, KernelSpec, KernelSpecError

# Debian's amd64 kernel flavours as the package names spell them
# (linux-image-<ABI>-<FLAVOUR>-unsigned), longest first. kharness boots the generic one: the
# cloud one lacks rdma_rxe, the rt one is PREEMPT_RT.
FLAVOURS = ("cloud-amd64", "rt-amd64", "amd64")
FLAVOUR = "amd64"

_VALUE = re.compile(r"^(?P<version>\d+\.\d+(\.\d+(-\d+|\+deb\d+)?)?)(?:-(?P<flavour>rt|cloud))?$")


def split_release(release: str) -> tuple[str, str]:
    """`6.1.0-56-amd64` -> (`6.1.0-56`, `amd64`); `6.1.0-56-rt-amd64` -> (.., `rt-amd64`)."""
    for flavour in FLAVOURS:
        if release.endswith("-" + flavour):
            return release[:-len(flavour) - 1], flavour
    return release, ""


def release_key(release: str) -> tuple[int, ...]:
    """Newest last: the numbers of a release, compared as numbers (6.1.0-56 > 6.1.0-9)."""
    return tuple(int(x) for x in re.findall(r"\d+", release))


@dataclass(frozen=True)
class Wanted:
    """What a `debian:` spec asks for: a series (`6.1`) or an ABI (`6.1.0-56`, `6.12.117+deb12`,
    `6.12.117`), of one flavour."""

    version: str
    flavour: str = FLAVOUR

    def matches(self, release: str) -> bool:
        """Does a release like `6.1.0-56-amd64` belong to the series, or the pin?"""
        abi, flavour = split_release(release)
        if flavour != self.flavour:
            return False
        if re.fullmatch(r"\d+\.\d+", self.version):
            return bool(re.match(rf"^{re.escape(self.version)}[.]", abi))
        return abi == self.version or abi.startswith((self.version + "+", self.version + "-"))


def wanted(spec: KernelSpec) -> Wanted:
    m = _VALUE.match(spec.value)
    if not m:
        raise KernelSpecError(
            f"bad kernel spec {str(spec)!r}: {spec.value!r} is not a Debian kernel series "
            "(6.1, 6.12) or ABI (6.1.0-56, 6.12.117+deb12), optionally with a flavour "
            "(6.1-rt, 6.1.0-56-cloud)"
        )
    flavour = m.group("flavour")
    return Wanted(m.group("version"), f"{flavour}-amd64" if flavour else FLAVOUR)


def spec_of(release: str) -> str:
    """The spec that pins a release: `6.1.0-56-amd64` -> `debian:6.1.0-56`,
    `6.1.0-56-rt-amd64` -> `debian:6.1.0-56-rt`."""
    abi, flavour = split_release(release)
    suffix = "" if flavour in (FLAVOUR, "") else "-" + flavour.removesuffix("-amd64")
    return f"debian:{abi}{suffix}"


def image_package(release: str) -> str:
    return f"linux-image-{release}-unsigned"


def dbg_package(release: str) -> str:
    return f"linux-image-{release}-dbg"


# --- where the packages come from -------------------------------------------------------------

class Archive(Protocol):
    def releases(self, flavour: str, bus: EventBus) -> list[str]:
        """Every release of a flavour the archive has a kernel package for."""
        ...

    def download(self, name: str, work: Path) -> None:
        """Download a package (`NAME` or `NAME=VERSION`) into `work`; raises
        hostcmd.HostCommandError."""
        ...


class Apt:
    """Debian's archive as the host's apt lists know it."""

    def releases(self, flavour: str, bus: EventBus) -> list[str]:
        def search() -> list[str]:
            proc = subprocess.run(
                ["apt-cache", "search", "--names-only",
                 rf"^linux-image-.*-{re.escape(flavour)}-unsigned$"],
                capture_output=True, text=True, check=False,
            )
            names = re.findall(rf"^linux-image-(\S+-{re.escape(flavour)})-unsigned ",
                               proc.stdout, re.MULTILINE)
            return [r for r in names if split_release(r)[1] == flavour]

        releases = search()
        if not releases and os.geteuid() == 0:
            bus.emit("kernel.apt_update", "apt lists are empty: running apt-get update")
            hostcmd.run(["apt-get", "update", "-q"], "apt-get update")
            releases = search()
        return releases

    def download(self, name: str, work: Path) -> None:
        hostcmd.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", name],
                    f"downloading {name}", cwd=work)


def _one_deb(work: Path, package: str) -> Path:
    debs = list(work.glob("*.deb"))
    if len(debs) != 1:
        raise hostcmd.HostCommandError(f"downloading {package}", ["apt-get", "download"], 1,
                                       f"expected one .deb, found {debs}")
    return debs[0]


# --- the source -------------------------------------------------------------------------------

class DebianSource:
    prefix = "debian"
    usage = ("debian:SERIES (e.g. debian:6.1), debian:ABI (e.g. debian:6.1.0-56), either with "
             "-rt or -cloud for that flavour (debian:6.1-rt)")
    example = "debian:6.1"

    def __init__(self, archive: Archive | None = None) -> None:
        self.archive = archive or Apt()

    def parse(self, value: str, text: str) -> KernelSpec:
        spec = KernelSpec(self.prefix, value, text=text)
        wanted(spec)
        return spec

    def resolve(self, spec: KernelSpec, bus: EventBus, *, fetch: bool,
                refresh: bool) -> Kernel:
        """The newest cached kernel of the series (apt is not asked), else the archive's."""
        if not refresh:
            cached = self.find_cached(spec)
            if cached:
                return cached
        if not fetch:
            raise KernelSpecError(f"kernel {spec} is not cached: run `kharness kernel fetch "
                                  f"{spec}`")
        return self.fetch(spec, bus)

    def cached(self) -> list[Kernel]:
        return [_with_debug_file(k) for k in _entries()]

    def find_cached(self, spec: KernelSpec) -> Kernel | None:
        """The newest cached kernel that satisfies the spec, without asking apt."""
        want = wanted(spec)
        matches = [k for k in self.cached() if want.matches(k.release)]
        return max(matches, key=lambda k: release_key(k.release), default=None)

    def candidates(self, spec: KernelSpec, bus: EventBus) -> list[str]:
        """Releases in the archive matching the spec, newest first."""
        want = wanted(spec)
        matches = [r for r in self.archive.releases(want.flavour, bus) if want.matches(r)]
        return sorted(matches, key=release_key, reverse=True)

    def fetch(self, spec: KernelSpec, bus: EventBus) -> Kernel:
        """Download, unpack and prepare the newest Debian kernel matching the spec."""
        candidates = self.candidates(spec, bus)
        if not candidates:
            raise KernelSpecError(
                f"no Debian package linux-image-*-{wanted(spec).flavour}-unsigned matches "
                f"{spec}: `apt-cache search linux-image` lists what the archive has"
            )
        release = candidates[0]
        entry = kernels_root() / release
        cached = _load(entry)
        if cached:
            bus.emit("kernel.cached", f"{spec}: {release} is cached", release=release)
            return cached
        package = image_package(release)
        bus.emit("kernel.fetch", f"{spec}: downloading {package}", release=release,
                 package=package)
        work = Path(tempfile.mkdtemp(prefix=f".fetch-{release}-", dir=kernels_root()))
        try:
            self.archive.download(package, work)
            deb = _one_deb(work, package)
            sha256 = file_sha256(deb)
            version = deb.name.split("_")[1].replace("%3a", ":")
            bus.emit("kernel.unpack", f"{spec}: unpacking {deb.name}", release=release)
            staged = work / "entry"
            root = staged / "root"
            root.mkdir(parents=True)
            hostcmd.run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
            deb.unlink()
            kernel = _prepare_tree(
                staged, root, release, spec=spec_of(release), entry=entry, bus=bus,
                origin={"package": package, "package_version": version, "deb_sha256": sha256},
            )
            os.replace(staged, entry)
            write_entry(entry, kernel)
            bus.emit("kernel.ready", f"{spec}: {release} ready", release=release)
            return kernel
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def fetch_debug(self, kernel: Kernel, bus: EventBus) -> Path:
        """`linux-image-<release>-dbg` is downloaded (858 MB for 6.1, 1034 MB for 6.12), only
        `usr/lib/debug/boot/vmlinux-<release>` is extracted from it, stored as `vmlinux.debug`
        in the kernel's cache entry, and the deb is deleted. Its build ID must be the booted
        vmlinux's. Idempotent."""
        entry = kernel.vmlinux.parent
        target = entry / DEBUG_VMLINUX
        if target.is_file():
            bus.emit("kernel.debug.cached", f"{kernel.release}: debug symbols are cached",
                     release=kernel.release, path=str(target), bytes=target.stat().st_size)
            return target
        release = kernel.release
        package = dbg_package(release)
        start = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".fetch-dbg-{release}-", dir=kernels_root()))
        try:
            bus.emit("kernel.debug.download", f"{release}: downloading {package} (about 1 GB)",
                     release=release, package=package)
            deb = self._download_dbg(package, kernel.origin.get("package_version", ""), work)
            deb_bytes = deb.stat().st_size
            downloaded = time.monotonic()
            bus.emit("kernel.debug.extract",
                     f"{release}: downloaded {deb.name} ({deb_bytes / 2**20:.0f} MiB) in "
                     f"{downloaded - start:.1f}s; extracting vmlinux-{release}",
                     release=release, bytes=deb_bytes, seconds=downloaded - start)
            member = f"./usr/lib/debug/boot/vmlinux-{release}"
            extracted = _extract_member(deb, member, work / "tree")
            deb.unlink()
            want, got = build_id(kernel.vmlinux), build_id(extracted)
            if want and got != want:
                raise DebugSymbolsError(
                    f"{package} does not match {kernel.vmlinux}: build ID {got} != {want} (the "
                    f"archive has another build of {release}: `kharness kernel fetch --debug "
                    f"{spec_of(release)}` after removing {entry})")
            os.replace(extracted, target)
            done = time.monotonic()
            size = target.stat().st_size
            bus.emit("kernel.debug.ready",
                     f"{release}: debug vmlinux ready ({size / 2**20:.0f} MiB, extracted in "
                     f"{done - downloaded:.1f}s, {done - start:.1f}s in all)",
                     release=release, path=str(target), bytes=size, deb_bytes=deb_bytes,
                     download_seconds=downloaded - start, extract_seconds=done - downloaded,
                     seconds=done - start)
            return target
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _download_dbg(self, package: str, version: str, work: Path) -> Path:
        """The dbg package: the version of the booted image first, else the archive's
        candidate (the build ID check then decides)."""
        tries = [f"{package}={version}", package] if version else [package]
        error: hostcmd.HostCommandError | None = None
        for name in tries:
            try:
                self.archive.download(name, work)
                break
            except hostcmd.HostCommandError as exc:
                error = exc
        else:
            assert error is not None
            raise DebugSymbolsError(f"{error} (`apt-cache policy {package}` shows what the "
                                    "archive has; run `apt-get update` if it has nothing)")
        return _one_deb(work, package)


SOURCE = DebianSource()


def unnamed(kernels: list[Kernel] | None = None) -> list[Kernel]:
    """Cached Debian kernels no series name points at: older than the newest cached one of
    their series and flavour (`debian:6.1` resolves to the newest), e.g. what a bisection
    fetched. An exact pin (`debian:6.1.0-50`) fetches them again when asked."""
    cached = SOURCE.cached() if kernels is None else kernels
    newest: dict[tuple[str, str], Kernel] = {}
    for k in cached:
        abi, flavour = split_release(k.release)
        key = (".".join(abi.split(".")[:2]), flavour)
        if key not in newest or release_key(abi) > release_key(split_release(
                newest[key].release)[0]):
            newest[key] = k
    keep = {k.release for k in newest.values()}
    return [k for k in cached if k.release not in keep]


def available(series: str | None, bus: EventBus, archive: Archive | None = None) -> list[str]:
    """Every release of every flavour the archive offers (apt's lists: nothing downloaded),
    oldest first; `series` (`6.1`, `6.12`) keeps that series' only."""
    archive = archive or SOURCE.archive
    if series is not None and not re.fullmatch(r"\d+\.\d+", series):
        raise KernelSpecError(f"bad series {series!r}: give major.minor, e.g. 6.1")
    out = []
    for flavour in FLAVOURS:
        for release in archive.releases(flavour, bus):
            if series is None or re.match(rf"^{re.escape(series)}[.]", release):
                out.append(release)
    return sorted(set(out), key=lambda r: (release_key(split_release(r)[0]),
                                           split_release(r)[1]))


# --- the cache entry --------------------------------------------------------------------------

def _entries() -> list[Kernel]:
    return [k for k in entries() if k.source == DebianSource.prefix]


def _with_debug_file(kernel: Kernel) -> Kernel:
    return replace(kernel, debug_file=kernel.vmlinux.parent / DEBUG_VMLINUX)


def _load(entry: Path) -> Kernel | None:
    kernel = load_entry(entry)
    return _with_debug_file(kernel) if kernel else None


def _prepare_tree(staged: Path, root: Path, release: str, *, spec: str, entry: Path,
                  bus: EventBus, origin: dict) -> Kernel:
    """vmlinux out of the bzImage, modules decompressed, depmod run. `staged` becomes `entry`."""
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    image = vmlinuz.read_bytes()
    (staged / "vmlinux").write_bytes(extract_vmlinux(image))
    shutil.copy2(root / "boot" / f"config-{release}", staged / "config")
    mods = root / "lib" / "modules" / release
    if not mods.is_dir() and (root / "usr" / "lib" / "modules" / release).is_dir():
        (root / "lib").symlink_to("usr/lib")  # depmod -b looks under BASE/lib/modules
    compressed = [str(p) for p in mods.rglob("*.ko.xz")]
    if compressed:
        bus.emit("kernel.modules", f"{release}: decompressing {len(compressed)} modules")
        for i in range(0, len(compressed), 400):
            hostcmd.run(["xz", "-d", "-T0", *compressed[i:i + 400]], "decompressing modules")
    zst = [str(p) for p in mods.rglob("*.ko.zst")]
    for i in range(0, len(zst), 400):
        hostcmd.run(["zstd", "-d", "-q", "--rm", *zst[i:i + 400]], "decompressing modules")
    hostcmd.run(["depmod", "-b", str(root), release], f"depmod for {release}")
    rel_mods = mods.relative_to(staged)
    return Kernel(
        spec=spec, release=release, vmlinux=entry / "vmlinux", config=entry / "config",
        modules_dir=entry / rel_mods, image=entry / "root" / "boot" / f"vmlinuz-{release}",
        debug_file=entry / DEBUG_VMLINUX, origin=origin,
    )


def _extract_member(deb: Path, member: str, dest: Path) -> Path:
    """One file out of a deb's data tarball: `dpkg-deb --fsys-tarfile DEB | tar -x MEMBER`.

    tar stops at the first match (`--occurrence`): the debug vmlinux sorts before the modules'
    debug files, so most of the ~5 GB tarball is never decompressed. dpkg-deb then dies of the
    closed pipe, which is expected; tar's status and the file decide."""
    dest.mkdir(parents=True, exist_ok=True)
    dpkg_argv = ["dpkg-deb", "--fsys-tarfile", str(deb)]
    tar_argv = ["tar", "-x", "-C", str(dest), "--occurrence=1", member]
    dpkg = subprocess.Popen(dpkg_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        tar = subprocess.Popen(tar_argv, stdin=dpkg.stdout, stderr=subprocess.PIPE)
    except BaseException:
        dpkg.kill()
        dpkg.wait()
        raise
    assert dpkg.stdout is not None
    dpkg.stdout.close()  # tar holds the read end: dpkg-deb gets SIGPIPE when tar exits
    _, tar_err = tar.communicate()
    try:
        _, dpkg_err = dpkg.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        dpkg.kill()
        _, dpkg_err = dpkg.communicate()
    out = dest / member
    if tar.returncode != 0 or not out.is_file():
        argv = [*dpkg_argv, "|", *tar_argv]
        err = tar_err.decode(errors="replace") + dpkg_err.decode(errors="replace")
        raise hostcmd.HostCommandError(f"extracting {member} from {deb.name}", argv,
                                       tar.returncode or dpkg.returncode or 1,
                                       err or f"{member} is not in {deb.name}")
    return out
