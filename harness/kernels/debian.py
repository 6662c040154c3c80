"""Where a kernel comes from, and the cache it lives in.

A kernel spec names a source:
- `debian:6.1`, `debian:6.12`: the newest `linux-image-<ver>-amd64-unsigned` of that series in
  Debian's archive (the generic flavour: the cloud one lacks rdma_rxe). `debian:6.1.0-56` or
  `debian:6.12.117+deb12` pins an exact ABI.
- `path:/some/bzImage[,modules=/lib/modules/X]`: a kernel the user built (bzImage or ELF vmlinux).
- `build:NAME`: a kernel `kharness kernel build --name NAME` built from kconfig fragments (see
  builds.py); it lives under `$KHARNESS_CACHE/builds/`.

A fetched kernel is unpacked under `$KHARNESS_CACHE/kernels/<release>/`: the ELF vmlinux taken
out of the bzImage (QEMU boots it through its PVH entry, the fastest way in under TCG), the
config, and the modules (decompressed, `depmod -b` run, since the debs ship no modules.dep).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import hostcmd
from .events import EventBus
from .paths import cache_dir

DEFAULT_KERNELS = ("debian:6.1", "debian:6.12")

# Config options that decide what a cgroup experiment can do on a kernel. `kernel list` shows
# them; the hierarchy code explains unavailable v1 controllers with them.
FLAGS = (
    "MEMCG", "MEMCG_V1", "CPUSETS_V1", "CGROUP_RDMA", "BLK_DEV_THROTTLING", "CFS_BANDWIDTH",
    "SWAP", "ZRAM", "CGROUP_PIDS", "CGROUP_FREEZER", "PSI", "PVH", "DEBUG_INFO",
)


class KernelSpecError(ValueError):
    """A kernel spec that cannot be parsed or resolved."""


@dataclass(frozen=True)
class KernelSpec:
    kind: str  # "debian", "path" or "build"
    value: str  # series ("6.1"), pinned ABI ("6.1.0-56"), or a path
    modules: str | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.kind}:{self.value}"


_DEBIAN_VALUE = re.compile(r"^\d+\.\d+(\.\d+(-\d+|\+deb\d+)?)?$")


def parse_spec(text: str) -> KernelSpec:
    """Parse `debian:6.1`, `debian:6.1.0-56`, `path:/x/bzImage[,modules=DIR]`."""
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise KernelSpecError(
            f"bad kernel spec {text!r}: expected debian:SERIES (e.g. debian:6.1), "
            "debian:ABI (e.g. debian:6.1.0-56) or path:/path/to/bzImage[,modules=DIR]"
        )
    if kind == "debian":
        if not _DEBIAN_VALUE.match(value):
            raise KernelSpecError(
                f"bad kernel spec {text!r}: {value!r} is not a Debian kernel series "
                "(6.1, 6.12) or ABI (6.1.0-56, 6.12.117+deb12)"
            )
        return KernelSpec("debian", value, text=text)
    if kind == "path":
        path, _, opts = value.partition(",")
        modules = None
        if opts:
            key, eq, val = opts.partition("=")
            if key != "modules" or not eq or not val:
                raise KernelSpecError(
                    f"bad kernel spec {text!r}: the only option is modules=/lib/modules/RELEASE"
                )
            modules = val
        return KernelSpec("path", path, modules=modules, text=text)
    if kind == "build":
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", value):
            raise KernelSpecError(f"bad kernel spec {text!r}: a build name is letters, digits, "
                                  ". _ + - (as given to `kharness kernel build --name`)")
        return KernelSpec("build", value, text=text)
    raise KernelSpecError(
        f"unknown kernel spec {text!r}: the source must be 'debian:', 'path:' or 'build:' "
        "(e.g. debian:6.1, path:/src/linux/arch/x86/boot/bzImage, build:v612-v1)"
    )


@dataclass(frozen=True)
class Kernel:
    """A kernel ready to boot."""

    spec: str
    release: str
    vmlinux: Path  # ELF, PVH-bootable
    config: Path | None
    modules_dir: Path | None  # .../lib/modules/<release>, with modules.dep
    package: str = ""
    package_version: str = ""
    image: Path | None = None  # the original bzImage, when there was one
    extra: dict = field(default_factory=dict)

    def config_values(self) -> dict[str, str]:
        return read_config(self.config) if self.config else {}

    def flags(self) -> dict[str, str]:
        """FLAGS as `y`, `m`, `n` (`is not set`), `-` (no such option in this kernel's Kconfig,
        e.g. MEMCG_V1 before 6.11, where v1 memcg comes with MEMCG) or `?` (config unknown)."""
        values = self.config_values()
        if not values:
            return {f: "?" for f in FLAGS}
        return {f: values.get(f"CONFIG_{f}", "-") for f in FLAGS}

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", self.release)[:3])

    @property
    def gdb_scripts(self) -> Path | None:
        """The kernel's own gdb helpers (scripts/gdb: lx-dmesg, $lx_current()...) when it was
        built with CONFIG_GDB_SCRIPTS by `kharness kernel build`."""
        script = self.vmlinux.parent / "gdb" / "vmlinux-gdb.py"
        return script if self.spec.startswith("build:") and script.is_file() else None

    @property
    def debug_vmlinux(self) -> Path | None:
        """The vmlinux with DWARF for gdb, or None when it has not been fetched (see
        `fetch_debug`). A `path:` kernel's own file counts when it is an ELF with .debug_info."""
        if self.spec.startswith("path:"):
            return self.image if self.image and has_debug_info(self.image) else None
        debug = self.vmlinux.parent / DEBUG_VMLINUX
        return debug if debug.is_file() else None


def read_config(path: Path) -> dict[str, str]:
    """A kernel .config as {CONFIG_X: value}; `# CONFIG_X is not set` gives 'n'."""
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("CONFIG_"):
            key, _, val = line.partition("=")
            values[key] = val.strip('"')
        else:
            m = re.match(r"# (CONFIG_\w+) is not set", line)
            if m:
                values[m.group(1)] = "n"
    return values


# --- images: bzImage -> ELF vmlinux, release string, embedded config ---------------------------

def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage, found through the boot header's payload fields."""
    if bzimage[:4] == b"\x7fELF":
        return bzimage
    if bzimage[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS boot header) and not an ELF vmlinux")
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start:start + payload_length]
    if payload[:6] == b"\xfd7zXZ\x00":
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload[:4] == b"\x28\xb5\x2f\xfd":
        # The kernel appends the decompressed size (4 bytes) after the zstd frame.
        out = _pipe(["zstd", "-dc"], payload[:-4])
    elif payload[:2] == b"\x1f\x8b":
        out = gzip.GzipFile(fileobj=io.BytesIO(payload)).read()
    elif payload[:4] == b"\x02\x21\x4c\x18":
        out = _pipe(["lz4", "-dc"], payload)
    else:
        raise ValueError(f"unsupported bzImage payload compression (magic {payload[:6].hex()})")
    if out[:4] != b"\x7fELF":
        raise ValueError("the decompressed bzImage payload is not an ELF vmlinux")
    return out


def _pipe(argv: list[str], data: bytes) -> bytes:
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    if not proc.stdout:
        raise hostcmd.HostCommandError("decompressing the kernel", argv, proc.returncode,
                                       proc.stderr.decode(errors="replace"))
    return proc.stdout


def release_of(image: bytes) -> str | None:
    """The release (`uname -r`) of a bzImage (boot header) or an ELF vmlinux (banner)."""
    if image[0x202:0x206] == b"HdrS":
        ptr = struct.unpack_from("<H", image, 0x20E)[0]
        if ptr:
            raw = image[ptr + 0x200:ptr + 0x200 + 256]
            return raw.split(b" ", 1)[0].decode(errors="replace") or None
    m = re.search(rb"Linux version (\S+) \(", image)
    return m.group(1).decode(errors="replace") if m else None


def extract_ikconfig(vmlinux: bytes) -> str | None:
    """The config embedded by CONFIG_IKCONFIG, as scripts/extract-ikconfig finds it."""
    start = vmlinux.find(b"IKCFG_ST")
    if start < 0:
        return None
    end = vmlinux.find(b"IKCFG_ED", start)
    try:
        return gzip.decompress(vmlinux[start + 8:end]).decode(errors="replace")
    except OSError:
        return None


# --- the cache -------------------------------------------------------------------------------

def kernels_root() -> Path:
    root = cache_dir() / "kernels"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _load_cached(entry: Path) -> Kernel | None:
    meta_path = entry / "kernel.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    return Kernel(
        spec=meta["spec"],
        release=meta["release"],
        vmlinux=entry / "vmlinux",
        config=entry / "config" if (entry / "config").is_file() else None,
        modules_dir=Path(meta["modules_dir"]) if meta.get("modules_dir") else None,
        package=meta.get("package", ""),
        package_version=meta.get("package_version", ""),
        image=Path(meta["image"]) if meta.get("image") else None,
        extra=meta.get("extra", {}),
    )


def cached_kernels() -> list[Kernel]:
    """Fetched kernels, then built ones (`build:NAME`)."""
    from . import builds

    out = []
    for entry in sorted(kernels_root().iterdir()):
        k = _load_cached(entry) if entry.is_dir() else None
        if k:
            out.append(k)
    return out + builds.named_builds()


def _write_meta(entry: Path, kernel: Kernel) -> None:
    meta = asdict(kernel)
    for key in ("vmlinux", "config", "modules_dir", "image"):
        meta[key] = str(meta[key]) if meta[key] else None
    meta["fetched_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (entry / "kernel.json").write_text(json.dumps(meta, indent=2) + "\n")


# --- Debian -----------------------------------------------------------------------------------

def _debian_release_key(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", release))


def _series_matches(value: str, release: str) -> bool:
    """Does a Debian release like `6.1.0-56-amd64` belong to the series or pin `value`?"""
    base = release.removesuffix("-amd64")
    if re.fullmatch(r"\d+\.\d+", value):
        return bool(re.match(rf"^{re.escape(value)}[.]", base))
    return base == value or base.startswith((value + "+", value + "-"))


def debian_candidates(value: str, bus: EventBus) -> list[str]:
    """Releases in Debian's archive (apt's lists) matching a series or pin, newest first."""
    def search() -> list[str]:
        proc = subprocess.run(
            ["apt-cache", "search", "--names-only", r"^linux-image-.*-amd64-unsigned$"],
            capture_output=True, text=True, check=False,
        )
        names = re.findall(r"^linux-image-(\S+-amd64)-unsigned ", proc.stdout, re.MULTILINE)
        return [r for r in names if not r.endswith(("-cloud-amd64", "-rt-amd64"))]

    releases = search()
    if not releases and os.geteuid() == 0:
        bus.emit("kernel.apt_update", "apt lists are empty: running apt-get update")
        hostcmd.run(["apt-get", "update", "-q"], "apt-get update")
        releases = search()
    matches = [r for r in releases if _series_matches(value, r)]
    return sorted(matches, key=_debian_release_key, reverse=True)


def find_cached(spec: KernelSpec) -> Kernel | None:
    """The newest cached kernel that satisfies a debian: spec, without asking apt."""
    matches = [
        k for k in cached_kernels()
        if k.spec.startswith("debian:") and _series_matches(spec.value, k.release)
    ]
    return max(matches, key=lambda k: _debian_release_key(k.release), default=None)


def fetch_debian(spec: KernelSpec, bus: EventBus) -> Kernel:
    """Download, unpack and prepare the newest Debian kernel matching the spec."""
    candidates = debian_candidates(spec.value, bus)
    if not candidates:
        raise KernelSpecError(
            f"no Debian package linux-image-*-amd64-unsigned matches {spec}: "
            "`apt-cache search linux-image` lists what the archive has"
        )
    release = candidates[0]
    entry = kernels_root() / release
    cached = _load_cached(entry)
    if cached:
        bus.emit("kernel.cached", f"{spec}: {release} is cached", release=release)
        return cached
    package = f"linux-image-{release}-unsigned"
    bus.emit("kernel.fetch", f"{spec}: downloading {package}", release=release, package=package)
    work = Path(tempfile.mkdtemp(prefix=f".fetch-{release}-", dir=kernels_root()))
    try:
        hostcmd.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
                    f"downloading {package}", cwd=work)
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise hostcmd.HostCommandError(f"downloading {package}", ["apt-get", "download"], 1,
                                           f"expected one .deb, found {debs}")
        deb = debs[0]
        sha256 = _sha256(deb)
        version = deb.name.split("_")[1].replace("%3a", ":")
        bus.emit("kernel.unpack", f"{spec}: unpacking {deb.name}", release=release)
        staged = work / "entry"
        root = staged / "root"
        root.mkdir(parents=True)
        hostcmd.run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
        deb.unlink()
        kernel = _prepare_tree(
            staged, root, release, spec=f"debian:{release.removesuffix('-amd64')}",
            package=package, package_version=version, entry=entry, bus=bus,
            extra={"deb_sha256": sha256},
        )
        os.replace(staged, entry)
        _write_meta(entry, kernel)
        bus.emit("kernel.ready", f"{spec}: {release} ready", release=release)
        return kernel
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prepare_tree(staged: Path, root: Path, release: str, *, spec: str, package: str,
                  package_version: str, entry: Path, bus: EventBus, extra: dict) -> Kernel:
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
        modules_dir=entry / rel_mods, package=package, package_version=package_version,
        image=entry / "root" / "boot" / f"vmlinuz-{release}",
        extra=extra,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- path: kernels ------------------------------------------------------------------------------

def from_path(spec: KernelSpec, bus: EventBus) -> Kernel:
    image_path = Path(spec.value).expanduser().resolve()
    if not image_path.is_file():
        raise KernelSpecError(f"kernel spec {spec}: {image_path} does not exist")
    image = image_path.read_bytes()
    try:
        vmlinux = extract_vmlinux(image)
    except ValueError as exc:
        raise KernelSpecError(f"kernel spec {spec}: {image_path}: {exc}") from None
    release = release_of(image) or release_of(vmlinux) or "unknown"
    digest = hashlib.sha256(image).hexdigest()[:16]
    entry = kernels_root() / f"path-{digest}"
    modules_dir = None
    if spec.modules:
        modules_dir = Path(spec.modules).expanduser().resolve()
        if not (modules_dir / "modules.dep").is_file():
            raise KernelSpecError(
                f"kernel spec {spec}: {modules_dir} has no modules.dep "
                f"(run: depmod -b {modules_dir.parent.parent} {modules_dir.name})"
            )
    cached = _load_cached(entry)
    if cached and cached.modules_dir == modules_dir:
        return cached
    bus.emit("kernel.path", f"{spec}: preparing {image_path.name} ({release})")
    entry.mkdir(parents=True, exist_ok=True)
    if vmlinux is not image:
        (entry / "vmlinux").write_bytes(vmlinux)
    else:
        _link_or_copy(image_path, entry / "vmlinux")
    config = _find_path_config(image_path, vmlinux, modules_dir, release)
    if config:
        (entry / "config").write_text(config)
    kernel = Kernel(
        spec=str(spec), release=release, vmlinux=entry / "vmlinux",
        config=entry / "config" if config else None, modules_dir=modules_dir,
        image=image_path, extra={"image_sha256": hashlib.sha256(image).hexdigest()},
    )
    _write_meta(entry, kernel)
    return kernel


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _find_path_config(image_path: Path, vmlinux: bytes, modules_dir: Path | None,
                      release: str) -> str | None:
    """A built kernel's config: embedded (IKCONFIG), in its build tree, or in /boot."""
    embedded = extract_ikconfig(vmlinux)
    if embedded:
        return embedded
    candidates = [image_path.parent / ".config", image_path.parent / f"config-{release}",
                  Path(f"/boot/config-{release}")]
    candidates += [p / ".config" for p in image_path.parents[:5]]
    if modules_dir:
        candidates.append(modules_dir / "build" / ".config")
        candidates.append(modules_dir / "config")
    for cand in candidates:
        if cand.is_file():
            return cand.read_text(errors="replace")
    return None


# --- debug symbols -----------------------------------------------------------------------------

DEBUG_VMLINUX = "vmlinux.debug"  # in the kernel's cache entry


class DebugSymbolsError(KernelSpecError):
    """No vmlinux with DWARF for a kernel: the message says what to do."""


def has_debug_info(path: Path) -> bool:
    """Is `path` an ELF file with a .debug_info section (`readelf -S`)?"""
    cached = _debug_info_cache.get(path)
    try:
        st = path.stat()
    except OSError:
        return False
    key = (st.st_size, st.st_mtime_ns)
    if cached and cached[0] == key:
        return cached[1]
    with path.open("rb") as f:
        is_elf = f.read(4) == b"\x7fELF"
    answer = False
    if is_elf:
        proc = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True,
                              check=False, stdin=subprocess.DEVNULL)
        answer = proc.returncode == 0 and re.search(r"\s\.debug_info\s", proc.stdout) is not None
    _debug_info_cache[path] = (key, answer)
    return answer


_debug_info_cache: dict[Path, tuple[tuple[int, int], bool]] = {}


def build_id(path: Path) -> str | None:
    """The GNU build ID of an ELF file (`readelf -n`), None when it has none."""
    proc = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    m = re.search(r"Build ID: ([0-9a-f]+)", proc.stdout)
    return m.group(1) if m else None


def fetch_debug(kernel: Kernel, bus: EventBus) -> Path:
    """The vmlinux with DWARF for `kernel`, for gdb. Idempotent.

    Debian kernels: `linux-image-<release>-dbg` is downloaded (858 MB for 6.1, 1034 MB for
    6.12), only `usr/lib/debug/boot/vmlinux-<release>` is extracted from it, stored as
    `vmlinux.debug` in the kernel's cache entry, and the deb is deleted. Its build ID must be
    the booted vmlinux's. `path:` kernels: the file given, when it carries .debug_info.
    """
    if kernel.spec.startswith("path:"):
        return _path_debug(kernel)
    if kernel.spec.startswith("build:"):
        if kernel.debug_vmlinux:
            return kernel.debug_vmlinux
        raise DebugSymbolsError(
            f"{kernel.spec} was built without debug info: build it again with the debug "
            f"fragment (`{kernel.extra.get('build', {}).get('reproducer', 'kharness kernel build')}"
            " --config kconfig/debug.config`)")
    entry = kernel.vmlinux.parent
    target = entry / DEBUG_VMLINUX
    if target.is_file():
        bus.emit("kernel.debug.cached", f"{kernel.release}: debug symbols are cached",
                 release=kernel.release, path=str(target), bytes=target.stat().st_size)
        return target
    release = kernel.release
    package = f"linux-image-{release}-dbg"
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".fetch-dbg-{release}-", dir=kernels_root()))
    try:
        bus.emit("kernel.debug.download", f"{release}: downloading {package} (about 1 GB)",
                 release=release, package=package)
        deb = _download_dbg(package, kernel.package_version, work)
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
                f"debian:{release.removesuffix('-amd64')}` after removing {entry})")
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


def _download_dbg(package: str, version: str, work: Path) -> Path:
    """`apt-get download` the dbg package: the version of the booted image first, else the
    archive's candidate (the build ID check then decides)."""
    tries = [f"{package}={version}", package] if version else [package]
    error: hostcmd.HostCommandError | None = None
    for name in tries:
        try:
            hostcmd.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", name],
                        f"downloading {name}", cwd=work)
            break
        except hostcmd.HostCommandError as exc:
            error = exc
    else:
        assert error is not None
        raise DebugSymbolsError(f"{error} (`apt-cache policy {package}` shows what the "
                                "archive has; run `apt-get update` if it has nothing)")
    debs = list(work.glob("*.deb"))
    if len(debs) != 1:
        raise hostcmd.HostCommandError(f"downloading {package}", ["apt-get", "download"], 1,
                                       f"expected one .deb, found {debs}")
    return debs[0]


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


def _path_debug(kernel: Kernel) -> Path:
    image = kernel.image
    if image and has_debug_info(image):
        return image
    hint = ""
    if image:
        for parent in image.parents[:5]:
            cand = parent / "vmlinux"
            if cand != image and cand.is_file() and has_debug_info(cand):
                hint = f": the build tree has one, use the spec path:{cand}"
                break
        else:
            hint = (": give the spec the ELF vmlinux of a build with CONFIG_DEBUG_INFO "
                    "(e.g. CONFIG_DEBUG_INFO_DWARF5=y), not the bzImage")
    raise DebugSymbolsError(f"kernel {kernel.spec}: {image} has no debug info (no .debug_info "
                            f"section){hint}")


# --- the entry point --------------------------------------------------------------------------

def resolve(text: str, bus: EventBus, *, fetch: bool = True, refresh: bool = False) -> Kernel:
    """A ready-to-boot kernel for a spec: from the cache, else fetched (when `fetch`)."""
    spec = parse_spec(text)
    if spec.kind == "path":
        return from_path(spec, bus)
    if spec.kind == "build":
        from . import builds

        return builds.load(spec.value)
    if not refresh:
        cached = find_cached(spec)
        if cached:
            return cached
    if not fetch:
        raise KernelSpecError(f"kernel {spec} is not cached: run `kharness kernel fetch {spec}`")
    return fetch_debian(spec, bus)


def disk_usage(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total
