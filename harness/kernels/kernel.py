"""What every kernel source hands back: the `Kernel` record, the parsed `KernelSpec`, the
config flags kharness looks at, and the errors. Nothing here knows any one source."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .image import read_config

# Config options that decide what a cgroup experiment can do on a kernel. `kernel list` shows
# them; the hierarchy code explains unavailable v1 controllers with them.
FLAGS = (
    "MEMCG", "MEMCG_V1", "CPUSETS_V1", "CGROUP_RDMA", "BLK_DEV_THROTTLING", "CFS_BANDWIDTH",
    "SWAP", "ZRAM", "CGROUP_PIDS", "CGROUP_FREEZER", "PSI", "PVH", "DEBUG_INFO",
)

DEBUG_VMLINUX = "vmlinux.debug"  # the vmlinux with DWARF, in a kernel's cache entry


class KernelSpecError(ValueError):
    """A kernel spec that cannot be parsed or resolved."""


class DebugSymbolsError(KernelSpecError):
    """No vmlinux with DWARF for a kernel: the message says what to do."""


class BuildError(KernelSpecError):
    """A build that cannot be done; the message says which file, option or step."""


@dataclass(frozen=True)
class KernelSpec:
    """A parsed spec: `kind` picks the source (the text before the colon), `value` is what
    that source reads (a series, a path, a build name), `options` the `,key=value` parts."""

    kind: str
    value: str
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.kind}:{self.value}"

    @property
    def modules(self) -> str | None:
        """`path:` specs: the modules directory given with `,modules=DIR`."""
        return self.options.get("modules")


@dataclass(frozen=True)
class Kernel:
    """A kernel ready to boot, whichever source it came from."""

    spec: str
    release: str
    vmlinux: Path  # ELF, PVH-bootable
    config: Path | None
    modules_dir: Path | None  # .../lib/modules/<release>, with modules.dep
    image: Path | None = None  # the original bzImage, when there was one
    # Where the source keeps the vmlinux with DWARF: it may not be there yet (`fetch_debug`).
    debug_file: Path | None = None
    # The kernel's own gdb helpers (scripts/gdb: lx-dmesg, $lx_current()...): vmlinux-gdb.py
    # of a kernel built with CONFIG_GDB_SCRIPTS by `kharness kernel build`.
    gdb_scripts: Path | None = None
    # Provenance, as the source records it: Debian's {package, package_version, deb_sha256},
    # path:'s {image_sha256}, build:'s {build: {key, source, fragments, reproducer...}}.
    origin: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The source's prefix: `debian`, `path`, `build`."""
        return self.spec.partition(":")[0]

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
    def debug_vmlinux(self) -> Path | None:
        """The vmlinux with DWARF for gdb, or None when it has not been fetched (see
        `harness.kernels.fetch_debug`)."""
        return self.debug_file if self.debug_file and self.debug_file.is_file() else None
