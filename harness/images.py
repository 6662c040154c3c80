"""The guest image: an uncompressed initramfs built from Debian packages installed on the host.

Two cpio archives, concatenated into the initrd QEMU loads (the kernel unpacks both):
- the base: busybox-static, dropbear and the shared libraries it needs, iproute2's `rdma`,
  libibverbs with the rxe provider, the static workloads from images/workloads/, /init. Cached by
  the hash of everything that goes into it.
- the modules of one kernel: virtio net/blk, zram, ext4, rdma_rxe with their dependencies, in
  load order per group (there is no modprobe in the guest), plus the crypto modules the kernel
  would request through modprobe (crc32c for ext4, crc32 for rdma_rxe).

Uncompressed on purpose: under TCG decompressing an initramfs costs more than reading it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import hostcmd, workloads
from .events import EventBus
from .kernels import Kernel
from .paths import REPO_ROOT, cache_dir

IMAGE_FORMAT = 1  # bump when the layout below changes

INIT_SCRIPT = REPO_ROOT / "images" / "init"

# Dynamically linked host binaries copied with the libraries `ldd` names.
BINARIES = {
    "/usr/sbin/dropbear": "bin/dropbear",
    "/usr/bin/dropbearkey": "bin/dropbearkey",
    "/usr/bin/rdma": "bin/rdma",
    "/usr/bin/ibv_devices": "bin/ibv_devices",
    "/usr/bin/ibv_devinfo": "bin/ibv_devinfo",
}
# dlopen()ed, so ldd on the binaries does not see them.
EXTRA_LIBS = ("/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so",)
EXTRA_FILES = {"/etc/libibverbs.d/rxe.driver": "etc/libibverbs.d/rxe.driver"}

# Module groups, by module name; each is expanded with its modules.dep closure. Crypto
# algorithms the kernel would ask modprobe for are named explicitly.
MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "boot": ("virtio_pci", "virtio_net"),
    "disk": ("virtio_pci", "virtio_blk"),
    "swap": ("zram",),
    "ext4": ("crc32c_generic", "ext4"),
    "rdma": ("crc32_generic", "rdma_rxe"),
}

ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\ntty:x:5:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",
    "etc/shells": "/bin/sh\n",
    "etc/hosts": "127.0.0.1 localhost\n10.0.2.15 kharness\n",
    "etc/profile": "export PATH=/bin\nexport PS1='kharness# '\n",
    "etc/inittab": (
        "ttyS0::respawn:-/bin/sh\n"
        "::ctrlaltdel:/bin/poweroff -f\n"
        "::shutdown:/bin/swapoff -a\n"
    ),
}


class ImageError(RuntimeError):
    pass


# --- cpio (newc) --------------------------------------------------------------------------------

class CpioWriter:
    """A deterministic newc archive: mtime 0, root-owned, inodes counted from 1."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 0
        self.names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        name = name.strip("/")
        if name in self.names:
            return
        self.names.add(name)
        self.ino += 1
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08x}" for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
        self.buf.write(header.encode() + encoded)
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name: str, perm: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | 0o755)
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.dir(parent)
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.dir(parent)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


# --- the base image -----------------------------------------------------------------------------

def _ldd(path: str) -> list[str]:
    out = hostcmd.run(["ldd", path], f"ldd {path}").stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m:
            libs.append(m.group(1))
    return libs


def _host_inputs() -> dict[str, str]:
    """Host file -> path in the guest, for everything the base image copies from the host."""
    missing = [p for p in (*BINARIES, *EXTRA_LIBS, *EXTRA_FILES, "/bin/busybox")
               if not os.path.exists(p)]
    if missing:
        raise ImageError(
            "missing host files for the guest image: " + ", ".join(missing)
            + " (run `kharness setup`, which installs "
            + " ".join(sorted(hostcmd.HOST_PACKAGES)) + ")"
        )
    files = {"/bin/busybox": "bin/busybox", **BINARIES, **EXTRA_FILES}
    for lib in EXTRA_LIBS:
        files[lib] = "lib/" + lib.split("/lib/", 1)[1]
    for src in [*BINARIES, *EXTRA_LIBS]:
        for lib in _ldd(src):
            real = os.path.realpath(lib)
            if "ld-linux" in lib:
                files[real] = "lib64/ld-linux-x86-64.so.2"
            else:
                files[real] = "lib/x86_64-linux-gnu/" + os.path.basename(lib)
    return files


def base_key() -> str:
    """Content hash of the base image: init, workload sources, host files, format."""
    h = hashlib.sha256(f"format={IMAGE_FORMAT}\n".encode())
    h.update(INIT_SCRIPT.read_bytes())
    h.update(json.dumps(ETC_FILES, sort_keys=True).encode())
    h.update(workloads.sources_digest().encode())
    for src, dst in sorted(_host_inputs().items()):
        h.update(f"{src}->{dst}\n".encode())
        h.update(hashlib.sha256(Path(src).read_bytes()).digest())
    return h.hexdigest()[:16]


def _busybox_applets() -> list[str]:
    out = hostcmd.run(["/bin/busybox", "--list"], "busybox --list").stdout
    return [a for a in out.split() if a and a != "busybox"]


def build_base(bus: EventBus) -> Path:
    key = base_key()
    out = images_root() / f"base-{key}.cpio"
    if out.exists():
        return out
    bus.emit("image.build", f"building the guest base image {key}")
    cpio = CpioWriter()
    for d in ("bin", "lib", "lib64", "dev", "proc", "sys", "tmp", "run", "root", "etc", "var",
              "mnt", "etc/kharness/modules", "usr"):
        cpio.dir(d, 0o700 if d == "root" else 0o755)
    # Merged layout: everything in /bin and /lib, the other paths are links.
    for link, target in (("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin"),
                         ("usr/lib", "../lib"), ("usr/local/bin", "../../bin")):
        cpio.symlink(link, target)
    for src, dst in sorted(_host_inputs().items()):
        mode = os.stat(src).st_mode & 0o777
        cpio.file(dst, Path(src).read_bytes(), mode)
    cpio.symlink("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2")
    for applet in _busybox_applets():
        cpio.symlink(f"bin/{applet}", "busybox")
    with tempfile.TemporaryDirectory(prefix="kharness-workloads-") as tmp:
        built = workloads.build_workloads(Path(tmp))
        for name, path in sorted(built.items()):
            cpio.file(f"bin/{name}", path.read_bytes(), 0o755)
    for name, text in ETC_FILES.items():
        cpio.file(name, text.encode())
    cpio.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    _atomic_write(out, cpio.finish())
    bus.emit("image.built", f"guest base image {out.name} ({out.stat().st_size >> 20} MiB)")
    return out


# --- the modules of one kernel ------------------------------------------------------------------

@dataclass(frozen=True)
class ModuleIndex:
    """modules.dep and modules.builtin of one kernel, by module name (`-` read as `_`)."""

    deps: dict[str, list[str]]  # name -> [relative .ko paths, the module first, then its deps]
    builtin: set[str]

    @classmethod
    def load(cls, modules_dir: Path) -> ModuleIndex:
        deps: dict[str, list[str]] = {}
        for line in (modules_dir / "modules.dep").read_text().splitlines():
            mod, _, rest = line.partition(":")
            deps[_modname(mod)] = [mod, *rest.split()]
        builtin = set()
        builtin_file = modules_dir / "modules.builtin"
        if builtin_file.exists():
            builtin = {_modname(p) for p in builtin_file.read_text().split()}
        return cls(deps, builtin)

    def load_order(self, names: tuple[str, ...], release: str, group: str) -> list[str]:
        """Relative .ko paths to insmod, dependencies before their users, built-ins skipped."""
        order: list[str] = []

        def visit(path: str) -> None:
            name = _modname(path)
            for dep in self.deps.get(name, [path])[1:]:
                visit(dep)
            if path not in order:
                order.append(path)

        for name in names:
            key = name.replace("-", "_")
            if key in self.builtin:
                continue
            if key not in self.deps:
                raise ImageError(
                    f"module {name} (group {group}) is neither built into {release} nor among "
                    "its modules: the kernel config lacks it"
                )
            visit(self.deps[key][0])
        return order

    def levels(self, order: list[str]) -> list[list[str]]:
        """`order` cut into levels whose modules only need modules of earlier levels: the
        guest loads each level's modules concurrently (one insmod is ~25 ms under TCG)."""
        level_of: dict[str, int] = {}
        for path in order:
            deps = self.deps.get(_modname(path), [path])[1:]
            level_of[path] = 1 + max((level_of[d] for d in deps if d in level_of), default=-1)
        out: list[list[str]] = [[] for _ in range(max(level_of.values(), default=-1) + 1)]
        for path in order:
            out[level_of[path]].append(path)
        return out


def _modname(path: str) -> str:
    name = os.path.basename(path)
    for suffix in (".xz", ".zst", ".gz", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("-", "_")


def modules_cpio(kernel: Kernel, bus: EventBus) -> Path | None:
    """The module archive for one kernel, or None when it has no module tree (built-ins)."""
    if kernel.modules_dir is None:
        return None
    index = ModuleIndex.load(kernel.modules_dir)
    groups: dict[str, list[str]] = {}
    for g, names in MODULE_GROUPS.items():
        try:
            groups[g] = index.load_order(names, kernel.release, g)
        except ImageError as exc:
            # Left out: the guest reports `module-group G missing` if a machine asks for it.
            # A kernel built without RDMA can still run everything else.
            bus.emit("image.warning", f"{kernel.spec}: {exc}", group=g)
    h = hashlib.sha256(f"format={IMAGE_FORMAT}\n{kernel.release}\n".encode())
    h.update(json.dumps(groups, sort_keys=True).encode())
    for path in sorted({p for paths in groups.values() for p in paths}):
        st = (kernel.modules_dir / path).stat()
        h.update(f"{path} {st.st_size} {st.st_mtime_ns}\n".encode())
    out = images_root() / f"modules-{kernel.release}-{h.hexdigest()[:12]}.cpio"
    if out.exists():
        return out
    bus.emit("image.modules", f"packing {kernel.release} modules for the guest")
    cpio = CpioWriter()
    prefix = f"lib/modules/{kernel.release}"
    for group, paths in groups.items():
        for path in paths:
            cpio.file(f"{prefix}/{path}", (kernel.modules_dir / path).read_bytes())
        # One line per level; the modules on a line can be loaded at the same time.
        listing = "".join(" ".join(f"/{prefix}/{p}" for p in level) + "\n"
                          for level in index.levels(paths))
        cpio.file(f"etc/kharness/modules/{group}", listing.encode())
    _atomic_write(out, cpio.finish())
    return out


# --- the initrd for one kernel ------------------------------------------------------------------

def images_root() -> Path:
    root = cache_dir() / "images"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def initrd_for(kernel: Kernel, bus: EventBus) -> Path:
    """The initramfs QEMU loads for `kernel`: base + its modules, built on first need."""
    base = build_base(bus)
    mods = modules_cpio(kernel, bus)
    if mods is None:
        return base
    out = images_root() / f"initrd-{base.stem.removeprefix('base-')}-{mods.stem}.cpio"
    if not out.exists():
        with tempfile.NamedTemporaryFile(dir=out.parent, delete=False, prefix=".initrd-") as tmp:
            for part in (base, mods):
                with part.open("rb") as f:
                    shutil.copyfileobj(f, tmp)
        os.replace(tmp.name, out)
    return out

