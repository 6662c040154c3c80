"""The cgroup selftests built from a kernel source tree, cached.

tools/testing/selftests/cgroup/Makefile names the programs (TEST_GEN_PROGS) and their extra
sources (`$(OUTPUT)/test_x: cgroup_util.c`); each is compiled as the selftests' lib.mk does,
statically (the guest has no libc) and against the tree's own UAPI headers (`make headers`, so
a 6.12 test sees 6.12's definitions). Cached by the source's identity (Debian package version,
git state), the compiler and the flags: `$KHARNESS_CACHE/selftests/<key>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..events import EventBus
from ..kernels.trees import Source
from ..output import atomic_write
from ..paths import cache_dir

BUILD_FORMAT = 1  # bump when the way binaries are built changes
SUBDIR = "tools/testing/selftests/cgroup"
# The flags of tools/testing/selftests/lib.mk and the cgroup Makefile (-Wall -pthread,
# -D_GNU_SOURCE=, -I../ for the shared kselftest.h, -isystem the UAPI headers), plus -static for
# the guest. Deliberately WITHOUT -O2: with -O2 gcc folds test_memcontrol's alloc_anon() (it
# touches memory it never reads) into `return 0`, so nothing is charged and the OOM tests fail
# for no kernel reason. lib.mk itself does not optimise either.
CFLAGS = ("-static", "-Wall", "-pthread", "-D_GNU_SOURCE=")

_PROGS = re.compile(r"^TEST_GEN_PROGS\s*\+?:?=\s*(.*)$", re.MULTILINE)
_DEPS = re.compile(r"^\$\(OUTPUT\)/(\w+)\s*:\s*(.*)$", re.MULTILINE)


class SelftestBuildError(RuntimeError):
    """The selftests could not be built at all (no such directory, no headers)."""


@dataclass(frozen=True)
class SelftestBuild:
    source: str  # the source spec: debian:6.12
    version: str  # the kernel version of that source: 6.12.118
    identity: str
    directory: Path  # the binaries
    binaries: tuple[str, ...]  # built
    failed: dict[str, str] = field(default_factory=dict)  # program -> compiler's first error

    def path(self, binary: str) -> Path:
        return self.directory / binary


def programs(makefile: str) -> dict[str, list[str]]:
    """Program -> its extra C sources, from the cgroup selftests' Makefile."""
    names: list[str] = []
    for m in _PROGS.finditer(makefile):
        names += m.group(1).split()
    deps = {m.group(1): [w for w in m.group(2).split() if w.endswith(".c")]
            for m in _DEPS.finditer(makefile)}
    return {name: deps.get(name, []) for name in names}


def _compiler() -> str:
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False,
                             stdin=subprocess.DEVNULL).stdout
    except OSError as exc:
        raise SelftestBuildError("gcc not found: apt-get install gcc libc6-dev") from exc
    return out.splitlines()[0] if out else "gcc"


def selftests_root() -> Path:
    root = cache_dir() / "selftests"
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_key(source: Source, progs: dict[str, list[str]], compiler: str) -> str:
    h = hashlib.sha256(f"format={BUILD_FORMAT}\n{source.identity}\n{compiler}\n".encode())
    h.update(" ".join(CFLAGS).encode())
    h.update(json.dumps(progs, sort_keys=True).encode())
    return h.hexdigest()[:16]


def build(source: Source, bus: EventBus) -> SelftestBuild:
    """The source's cgroup selftests, built once per source identity and compiler."""
    src = source.tree / SUBDIR
    if not (src / "Makefile").is_file():
        raise SelftestBuildError(f"{source.spec}: {src} does not exist: this source has no "
                                 "cgroup selftests")
    progs = programs((src / "Makefile").read_text())
    compiler = _compiler()
    key = build_key(source, progs, compiler)
    out = selftests_root() / key
    meta = out / "build.json"
    if meta.is_file():
        doc = json.loads(meta.read_text())
        return SelftestBuild(source.spec, source.version, source.identity, out,
                             tuple(doc["binaries"]), dict(doc.get("failed", {})))
    start = time.monotonic()
    bus.emit("selftest.build", f"building the cgroup selftests of {source.spec} "
             f"({source.version}): {len(progs)} programs")
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=selftests_root()))
    try:
        headers = _headers(source, work / "obj")
        binaries, failed = [], {}
        for name, deps in progs.items():
            if not (src / f"{name}.c").is_file():
                failed[name] = f"{name}.c is not in {SUBDIR}"
                continue
            argv = ["gcc", *CFLAGS, "-I..", "-isystem", str(headers), f"{name}.c", *deps,
                    "-o", str(work / name)]
            proc = subprocess.run(argv, cwd=src, capture_output=True, text=True, check=False,
                                  stdin=subprocess.DEVNULL)
            if proc.returncode == 0:
                binaries.append(name)
            else:
                first = next((ln for ln in proc.stderr.splitlines() if "error" in ln),
                             proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
                failed[name] = f"does not compile: {first.strip()}"
                bus.emit("selftest.warning", f"{source.spec}: {name} {failed[name]}")
        shutil.rmtree(work / "obj", ignore_errors=True)
        atomic_write(work / "build.json", json.dumps({
            "source": source.spec, "version": source.version, "identity": source.identity,
            "compiler": compiler, "cflags": list(CFLAGS), "binaries": binaries,
            "failed": failed, "seconds": round(time.monotonic() - start, 1)}, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    bus.emit("selftest.built", f"{source.spec}: {len(binaries)} selftest programs built in "
             f"{time.monotonic() - start:.0f}s" + (f" ({len(failed)} failed)" if failed else ""))
    return SelftestBuild(source.spec, source.version, source.identity, out, tuple(binaries),
                         failed)


def _headers(source: Source, obj: Path) -> Path:
    """The tree's UAPI headers (`make headers` out of tree: the source stays untouched)."""
    proc = subprocess.run(["make", "-s", "-C", str(source.tree), f"O={obj}", "ARCH=x86_64",
                           "headers"], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    include = obj / "usr" / "include"
    if proc.returncode != 0 or not (include / "linux").is_dir():
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SelftestBuildError(f"{source.spec}: `make headers` failed in {source.tree}:\n{tail}")
    return include
