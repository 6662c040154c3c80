"""`path:` kernels: one the user built, `path:/some/bzImage[,modules=/lib/modules/X]` (a bzImage
or an ELF vmlinux). It is prepared into `$KHARNESS_CACHE/kernels/path-<sha256 of the image>/`:
the ELF vmlinux (hard-linked when the image is one), the config when one can be found."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import replace
from pathlib import Path

from ..events import EventBus
from .cache import entries, kernels_root, load_entry, write_entry
from .image import extract_ikconfig, extract_vmlinux, has_debug_info, release_of
from .kernel import DebugSymbolsError, Kernel, KernelSpec, KernelSpecError


class PathSource:
    prefix = "path"
    usage = "path:/path/to/bzImage[,modules=DIR]"
    example = "path:/src/linux/arch/x86/boot/bzImage"

    def parse(self, value: str, text: str) -> KernelSpec:
        path, _, opts = value.partition(",")
        options = {}
        if opts:
            key, eq, val = opts.partition("=")
            if key != "modules" or not eq or not val:
                raise KernelSpecError(
                    f"bad kernel spec {text!r}: the only option is modules=/lib/modules/RELEASE"
                )
            options["modules"] = val
        return KernelSpec(self.prefix, path, options=options, text=text)

    def resolve(self, spec: KernelSpec, bus: EventBus, *, fetch: bool,
                refresh: bool) -> Kernel:
        """Always the file as it is now: preparing it is local, so `fetch` and `refresh` do not
        apply (an unchanged image is a cache hit)."""
        return self.fetch(spec, bus)

    def cached(self) -> list[Kernel]:
        return [_with_debug_file(k) for k in entries() if k.source == self.prefix]

    def fetch(self, spec: KernelSpec, bus: EventBus) -> Kernel:
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
        cached = load_entry(entry)
        if cached and cached.modules_dir == modules_dir:
            return _with_debug_file(cached)
        bus.emit("kernel.path", f"{spec}: preparing {image_path.name} ({release})")
        entry.mkdir(parents=True, exist_ok=True)
        if vmlinux is not image:
            (entry / "vmlinux").write_bytes(vmlinux)
        else:
            _link_or_copy(image_path, entry / "vmlinux")
        config = _find_config(image_path, vmlinux, modules_dir, release)
        if config:
            (entry / "config").write_text(config)
        kernel = Kernel(
            spec=str(spec), release=release, vmlinux=entry / "vmlinux",
            config=entry / "config" if config else None, modules_dir=modules_dir,
            image=image_path, origin={"image_sha256": hashlib.sha256(image).hexdigest()},
        )
        write_entry(entry, kernel)
        return _with_debug_file(kernel)

    def fetch_debug(self, kernel: Kernel, bus: EventBus) -> Path:
        """The file given, when it carries .debug_info; else what to give instead."""
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
        raise DebugSymbolsError(f"kernel {kernel.spec}: {image} has no debug info (no "
                                f".debug_info section){hint}")


SOURCE = PathSource()


def _with_debug_file(kernel: Kernel) -> Kernel:
    """A `path:` kernel's own file is its debug vmlinux when it is an ELF with .debug_info."""
    image = kernel.image
    return replace(kernel, debug_file=image if image and has_debug_info(image) else None)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _find_config(image_path: Path, vmlinux: bytes, modules_dir: Path | None,
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
