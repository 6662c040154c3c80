"""The cache layout under `$KHARNESS_CACHE`: `kernels/` (fetched and prepared kernels, one
directory each with a kernel.json), `builds/` (`kharness kernel build`), `sources/` (unpacked
source trees). The kernel.json format is read by older kharness versions sharing the cache:
it keeps its keys (package and package_version on top, the rest of the provenance in extra)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..paths import cache_dir
from .kernel import Kernel


def kernels_root() -> Path:
    root = cache_dir() / "kernels"
    root.mkdir(parents=True, exist_ok=True)
    return root


def builds_root() -> Path:
    root = cache_dir() / "builds"
    (root / "names").mkdir(parents=True, exist_ok=True)
    return root


def sources_root() -> Path:
    root = cache_dir() / "sources"
    root.mkdir(parents=True, exist_ok=True)
    return root


def load_entry(entry: Path) -> Kernel | None:
    """The kernel a `kernels/<entry>/kernel.json` describes, None without one. The source
    that wrote it adds what it knows beyond the file (`debug_file`)."""
    meta_path = entry / "kernel.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    origin = {k: meta[k] for k in ("package", "package_version") if meta.get(k)}
    origin.update(meta.get("extra", {}))
    return Kernel(
        spec=meta["spec"],
        release=meta["release"],
        vmlinux=entry / "vmlinux",
        config=entry / "config" if (entry / "config").is_file() else None,
        modules_dir=Path(meta["modules_dir"]) if meta.get("modules_dir") else None,
        image=Path(meta["image"]) if meta.get("image") else None,
        origin=origin,
    )


def entries() -> list[Kernel]:
    """Every kernel under `kernels/`, by directory name."""
    out = []
    for entry in sorted(kernels_root().iterdir()):
        k = load_entry(entry) if entry.is_dir() else None
        if k:
            out.append(k)
    return out


def write_entry(entry: Path, kernel: Kernel) -> None:
    def text(p: Path | None) -> str | None:
        return str(p) if p else None

    extra = dict(kernel.origin)
    meta = {
        "spec": kernel.spec, "release": kernel.release, "vmlinux": text(kernel.vmlinux),
        "config": text(kernel.config), "modules_dir": text(kernel.modules_dir),
        "package": extra.pop("package", ""), "package_version": extra.pop("package_version", ""),
        "image": text(kernel.image), "extra": extra,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (entry / "kernel.json").write_text(json.dumps(meta, indent=2) + "\n")
