"""Where a kernel comes from, and the cache it lives in.

A kernel spec is `SOURCE:VALUE`; the source is a plug-in chosen by the prefix in `SOURCES`:
- `debian:6.1`, `debian:6.12.117+deb12`: Debian's packaged kernels, fetched with apt (debian.py);
- `path:/some/bzImage[,modules=/lib/modules/X]`: a kernel the user built (path.py);
- `build:NAME`: a kernel `kharness kernel build --name NAME` built from kconfig fragments
  (build.py, with kconfig.py and trees.py).

Each hands back a `Kernel` (kernel.py). The floors, each importing only those below it:
image.py (what is in a kernel's files) -> kernel.py (the record, the errors) -> cache.py (the
cache layout, kernel.json) -> kconfig.py, trees.py -> debian.py, path.py, build.py -> this
registry. A new source (a Fedora RPM, a tuxmake artefact URL) is one module with a class that
has the `KernelSource` methods and a `SOURCE` instance, added to `SOURCES` below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..events import EventBus
from . import build, debian, path
from .cache import kernels_root
from .image import (
    build_id,
    disk_usage,
    extract_ikconfig,
    extract_vmlinux,
    has_debug_info,
    read_config,
    release_of,
)
from .kernel import (
    DEBUG_VMLINUX,
    FLAGS,
    BuildError,
    DebugSymbolsError,
    Kernel,
    KernelSpec,
    KernelSpecError,
)

__all__ = [
    "DEBUG_VMLINUX", "DEFAULT_KERNELS", "FLAGS", "SOURCES", "BuildError", "DebugSymbolsError",
    "Kernel", "KernelSource", "KernelSpec", "KernelSpecError", "build_id", "cached_kernels",
    "disk_usage", "extract_ikconfig", "extract_vmlinux", "fetch_debug", "has_debug_info",
    "kernels_root", "parse_spec", "read_config", "release_of", "resolve",
]

DEFAULT_KERNELS = ("debian:6.1", "debian:6.12")


class KernelSource(Protocol):
    """Where kernels of one spec prefix come from. Errors are KernelSpecError (one line, exit
    status 2 at the command line), host command failures hostcmd.HostCommandError."""

    prefix: str  # the spec's text before the colon: "debian"
    usage: str  # the spec's forms, for "bad kernel spec": "path:/path/to/bzImage[,modules=DIR]"
    example: str  # one spec, for "unknown kernel spec": "debian:6.1"

    def parse(self, value: str, text: str) -> KernelSpec:
        """`value` is the text after the prefix, `text` the whole spec (for messages)."""
        ...

    def resolve(self, spec: KernelSpec, bus: EventBus, *, fetch: bool, refresh: bool) -> Kernel:
        """A ready-to-boot kernel: from the cache unless `refresh`, else fetched when `fetch`
        (each source decides what that means: a local file is always looked at again)."""
        ...

    def cached(self) -> list[Kernel]:
        """The kernels of this source in the cache, for `kharness kernel list`."""
        ...

    def fetch(self, spec: KernelSpec, bus: EventBus) -> Kernel:
        """Get and prepare the kernel now, whatever the cache holds."""
        ...

    def fetch_debug(self, kernel: Kernel, bus: EventBus) -> Path:
        """The vmlinux with DWARF for gdb (fetched when it has to be; idempotent), or a
        DebugSymbolsError saying what to do."""
        ...


# The registry: the spec's prefix -> its source. `kernel list` shows them in this order.
SOURCES: dict[str, KernelSource] = {
    s.prefix: s for s in (debian.SOURCE, path.SOURCE, build.SOURCE)
}


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def parse_spec(text: str) -> KernelSpec:
    """Parse `debian:6.1`, `debian:6.1.0-56`, `path:/x/bzImage[,modules=DIR]`, `build:NAME`."""
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise KernelSpecError(f"bad kernel spec {text!r}: expected "
                              f"{_either([s.usage for s in SOURCES.values()])}")
    source = SOURCES.get(kind)
    if source is None:
        prefixes = _either([f"'{prefix}:'" for prefix in SOURCES])
        examples = ", ".join(s.example for s in SOURCES.values())
        raise KernelSpecError(f"unknown kernel spec {text!r}: the source must be {prefixes} "
                              f"(e.g. {examples})")
    return source.parse(value, text)


def resolve(text: str, bus: EventBus, *, fetch: bool = True, refresh: bool = False) -> Kernel:
    """A ready-to-boot kernel for a spec: from the cache, else fetched (when `fetch`)."""
    spec = parse_spec(text)
    return SOURCES[spec.kind].resolve(spec, bus, fetch=fetch, refresh=refresh)


def cached_kernels() -> list[Kernel]:
    """Every source's cached kernels: fetched ones, then built ones (`build:NAME`)."""
    return [k for source in SOURCES.values() for k in source.cached()]


def fetch_debug(kernel: Kernel, bus: EventBus) -> Path:
    """The vmlinux with DWARF for `kernel`, for gdb. Idempotent. Debian kernels: extracted
    from the -dbg package (about 1 GB); `path:` kernels: the file given, when it carries
    .debug_info; `build:` kernels: the build's vmlinux.debug (a debug.config build)."""
    source = SOURCES.get(kernel.source)
    if source is None:
        raise DebugSymbolsError(f"kernel {kernel.spec}: no kernel source {kernel.source!r} "
                                f"(known: {', '.join(SOURCES)})")
    return source.fetch_debug(kernel, bus)
