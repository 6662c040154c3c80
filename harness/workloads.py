"""Build the static C workload programs that go into the guest image.

The guest is a busybox userland with no shared libc, so every program in
``images/workloads/`` is compiled with ``gcc -static``.  Deliberately no ``-O2``:
an optimizing build may fold away the memory-touching loops that are the whole
point of ``memhog``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

WORKLOADS_DIR = Path(__file__).resolve().parent.parent / "images" / "workloads"

#: Extra link flags per program (appended after the source file, as the linker
#: resolves static archives left to right).  rdma_open compiles its verbs
#: providers in via ``RDMA_STATIC_PROVIDERS`` (a static binary cannot dlopen
#: them): ``librxe``/``libsiw`` must come before ``libibverbs``, which needs
#: libnl-route-3 before libnl-3, and pthreads.  The ``-rdmav34`` suffix is the
#: provider file name Debian 12's rdma-core 44 uses.
LINK_FLAGS: dict[str, list[str]] = {
    "rdma_open": [
        "-lrxe-rdmav34",
        "-lsiw-rdmav34",
        "-libverbs",
        "-lnl-route-3",
        "-lnl-3",
        "-lpthread",
    ],
}

#: Debian packages needed to build every workload (``apt-get install -y ...``).
APT_PACKAGES: list[str] = [
    "gcc",
    "libc6-dev",
    "libibverbs-dev",
    "libnl-3-dev",
    "libnl-route-3-dev",
]

_BASE_HINT = "install gcc libc6-dev"
_PACKAGE_HINTS: dict[str, str] = {
    "rdma_open": "install libibverbs-dev libnl-3-dev libnl-route-3-dev",
}


class WorkloadBuildError(RuntimeError):
    """gcc failed (or is missing) for one workload program."""

    def __init__(self, name: str, argv: list[str], stderr: str) -> None:
        self.name = name
        self.argv = argv
        self.stderr = stderr
        self.hint = _PACKAGE_HINTS.get(name, _BASE_HINT)
        super().__init__(
            f"building workload {name!r} failed (hint: {self.hint})\n"
            f"command: {' '.join(argv)}\n{stderr.strip()}"
        )


def gcc_argv(name: str, out_dir: Path) -> list[str]:
    """The exact gcc command line that builds workload ``name`` into ``out_dir``."""
    return [
        "gcc",
        "-static",
        "-Wall",
        "-o",
        str(out_dir / name),
        str(WORKLOADS_DIR / f"{name}.c"),
        *LINK_FLAGS.get(name, []),
    ]


def build_workloads(out_dir: Path) -> dict[str, Path]:
    """Compile every ``*.c`` in :data:`WORKLOADS_DIR` into ``out_dir``.

    Returns a mapping from program name to the built binary.  Raises
    :class:`WorkloadBuildError` naming the program and the packages to install
    on the first failure.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for src in sorted(WORKLOADS_DIR.glob("*.c")):
        name = src.stem
        argv = gcc_argv(name, out_dir)
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise WorkloadBuildError(name, argv, f"gcc not found: {exc}") from exc
        except subprocess.CalledProcessError as exc:
            raise WorkloadBuildError(name, argv, exc.stderr or "") from exc
        built[name] = out_dir / name
    return built


def sources_digest() -> str:
    """sha256 over every file in :data:`WORKLOADS_DIR` plus :data:`LINK_FLAGS`.

    Part of the guest image cache key: editing a source, the shared header or a
    link flag must invalidate cached images.  Names and lengths are hashed too,
    so renaming a file or moving bytes between files changes the digest.
    """
    h = hashlib.sha256()
    for path in sorted(p for p in WORKLOADS_DIR.iterdir() if p.is_file()):
        data = path.read_bytes()
        h.update(path.name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    h.update(json.dumps(LINK_FLAGS, sort_keys=True).encode())
    return h.hexdigest()
