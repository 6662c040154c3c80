"""`build:` kernels: built from kconfig fragments by `kharness kernel build`.

A build is:
1. a source tree (trees.py): `debian:6.1` / `debian:6.12` (Debian's linux-source-<series>) or
   `path:/a/linux/tree` (a user's checkout, built out of tree with `O=`);
2. fragments (`kconfig/*.config`), merged in order (kconfig.py) and applied over `allnoconfig`
   through KCONFIG_ALLCONFIG: the same minimal start as tinyconfig, without tiny.config's -Os,
   xz and SLUB_TINY. Then `olddefconfig`;
3. a verification (kconfig.py): every option a fragment asks for must be set as asked in the
   final .config. A dropped option (a dependency is off) stops the build, naming it with the
   dependencies that are off, unless `allow_dropped`. Options the source's Kconfig does not
   have at all (MEMCG_V1 before 6.11) are reported, not refused;
4. `make -jN all` with progress, `modules_install`, and the artifacts stored under
   `$KHARNESS_CACHE/builds/<key>/`: vmlinux (stripped when there is DWARF: QEMU boots it),
   vmlinux.debug (with DWARF, for gdb), bzImage, config, lib/modules/<release>/, gdb/ (the
   kernel's scripts/gdb helpers), build.json (source, fragments, dropped/absent options, the
   reproducer command line, timings) and build.log.

The key is a hash of the source identity (Debian package version, or git HEAD plus the hash of
the uncommitted changes, or the tree's file sizes and times), the fragments' contents in order,
and the compiler version: the same build again is a cache hit. A name (`--name`) points at a key
(`$KHARNESS_CACHE/builds/names/NAME.json`); the newest build of a name wins. `build:NAME` is
the kernel spec of the build a name points at (`BuildSource`).

Slightly over ~600 lines: the lifecycle above is one piece (the key, the locked build
directory, make with progress and Ctrl-C, the artefacts, the name index) that shares the
lock and the paths; the Kconfig work already lives in kconfig.py, the trees in trees.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import hostcmd
from ..events import EventBus
from ..paths import REPO_ROOT
from .cache import builds_root, sources_root
from .image import disk_usage, has_debug_info, read_config
from .kconfig import (
    Asked,
    Fragment,
    FragmentError,
    Verification,
    allconfig_text,
    kconfig_index,
    merge,
    parse_fragment,
    verify,
)
from .kernel import (
    DEBUG_VMLINUX,
    BuildError,
    DebugSymbolsError,
    Kernel,
    KernelSpec,
    KernelSpecError,
)
from .trees import Source, resolve_source

BUILD_FORMAT = 1  # bump when the stored layout or the build steps change
START = "allnoconfig"  # the base the fragments are merged over
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")

# Host packages a kernel build needs, with the file or command that proves each is there.
BUILD_PACKAGES: dict[str, str] = {
    "make": "make",
    "gcc": "gcc",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "libelf-dev": "/usr/include/gelf.h",
    "libssl-dev": "/usr/include/openssl/ssl.h",
    "dwarves": "pahole",
    "kmod": "depmod",
    "xz-utils": "xz",
    "binutils": "objcopy",
}


# --- build:NAME, the kernel source --------------------------------------------------------------

class BuildSource:
    prefix = "build"
    usage = "build:NAME (as given to `kharness kernel build --name`)"
    example = "build:v612-v1"

    def parse(self, value: str, text: str) -> KernelSpec:
        if not NAME_RE.fullmatch(value):
            raise KernelSpecError(f"bad kernel spec {text!r}: a build name is letters, digits, "
                                  ". _ + - (as given to `kharness kernel build --name`)")
        return KernelSpec(self.prefix, value, text=text)

    def resolve(self, spec: KernelSpec, bus: EventBus, *, fetch: bool,
                refresh: bool) -> Kernel:
        """The build the name points at; nothing to fetch or refresh."""
        return load(spec.value)

    def cached(self) -> list[Kernel]:
        return named_builds()

    def fetch(self, spec: KernelSpec, bus: EventBus) -> Kernel:
        """A build is made by `kharness kernel build`, not fetched: the named one, or an error
        that says how to build it."""
        return load(spec.value)

    def fetch_debug(self, kernel: Kernel, bus: EventBus) -> Path:
        if kernel.debug_vmlinux:
            return kernel.debug_vmlinux
        reproducer = kernel.origin.get("build", {}).get("reproducer", "kharness kernel build")
        raise DebugSymbolsError(
            f"{kernel.spec} was built without debug info: build it again with the debug "
            f"fragment (`{reproducer} --config kconfig/debug.config`)")


SOURCE = BuildSource()


# --- the cache -------------------------------------------------------------------------------

def _toolchain() -> str:
    proc = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    return proc.stdout.splitlines()[0] if proc.stdout else "gcc ?"


def make_flags(source: Source, obj: Path) -> list[str]:
    """File names in the DWARF and in __FILE__ relative to the source tree (mm/memcontrol.c),
    as in Debian's packages, not the cache's absolute paths: backtraces read the same on a
    built kernel as on a packaged one, and the build does not depend on where the cache is."""
    remap = f"-ffile-prefix-map={source.tree}/= -ffile-prefix-map={obj}/="
    return [f"KCFLAGS={remap}", f"KAFLAGS={remap}"]


def build_key(source: Source, fragments: Sequence[Fragment], toolchain: str) -> str:
    h = hashlib.sha256()
    flags = make_flags(Source("", Path("SRC"), "", ""), Path("OBJ"))
    h.update(json.dumps({"format": BUILD_FORMAT, "start": START, "source": source.identity,
                         "make": flags,
                         "version": source.version, "toolchain": toolchain,
                         "fragments": [f.text for f in fragments]}).encode())
    return h.hexdigest()[:16]


def kernel_from_entry(entry: Path, name: str) -> Kernel:
    meta = json.loads((entry / "build.json").read_text())
    release = meta["release"]
    modules = entry / "lib" / "modules" / release
    gdb_scripts = entry / "gdb" / "vmlinux-gdb.py"
    return Kernel(
        spec=f"build:{name}", release=release, vmlinux=entry / "vmlinux",
        config=entry / "config", modules_dir=modules if (modules / "modules.dep").is_file()
        else None, image=entry / "bzImage" if (entry / "bzImage").is_file() else None,
        debug_file=entry / DEBUG_VMLINUX,
        gdb_scripts=gdb_scripts if gdb_scripts.is_file() else None,
        origin={"build": {k: meta[k] for k in ("key", "source", "source_identity", "fragments",
                                               "reproducer") if k in meta}},
    )


def load(name: str) -> Kernel:
    """The kernel a `build:NAME` spec names."""
    link = builds_root() / "names" / f"{name}.json"
    if not link.is_file():
        known = sorted(p.stem for p in (builds_root() / "names").glob("*.json"))
        raise KernelSpecError(
            f"no build named {name!r}: build it with `kharness kernel build --source SPEC "
            f"--config FRAGMENT... --name {name}`"
            + (f" (built: {', '.join(known)})" if known else ""))
    key = json.loads(link.read_text())["key"]
    entry = builds_root() / key
    if not (entry / "build.json").is_file():
        raise KernelSpecError(f"build {name!r} points at {entry}, which is gone: build it again")
    return kernel_from_entry(entry, name)


def named_builds() -> list[Kernel]:
    out = []
    for link in sorted((builds_root() / "names").glob("*.json")):
        with contextlib.suppress(KernelSpecError, OSError, ValueError, KeyError):
            out.append(load(link.stem))
    return out


def _point(name: str, key: str, bus: EventBus) -> None:
    link = builds_root() / "names" / f"{name}.json"
    if link.is_file():
        old = json.loads(link.read_text()).get("key")
        if old and old != key:
            bus.emit("build.rename", f"build:{name} now names build {key} (was {old})")
    tmp = link.with_suffix(".tmp")
    tmp.write_text(json.dumps({"name": name, "key": key}) + "\n")
    os.replace(tmp, link)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- the build -----------------------------------------------------------------------------

@dataclass
class BuildResult:
    kernel: Kernel | None  # None after a check (`check_only`)
    key: str
    cached: bool
    seconds: float
    verification: Verification | None = None
    notes: list[str] = field(default_factory=list)


def default_name(source: Source, fragments: Sequence[Fragment]) -> str:
    base = source.spec.split(":", 1)[1] if source.spec.startswith("debian:") else \
        source.tree.name
    stems = [f.path.stem for f in fragments]
    return re.sub(r"[^A-Za-z0-9._+-]", "-", "-".join([base, *stems]))[:64]


def reproducer(source: Source, fragments: Sequence[Fragment], name: str,
               allow_dropped: bool) -> str:
    def shown(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(REPO_ROOT))
        except ValueError:
            return str(p.resolve())

    argv = ["kharness", "kernel", "build", "--source", source.spec]
    for f in fragments:
        argv += ["--config", shown(f.path)]
    argv += ["--name", name]
    if allow_dropped:
        argv.append("--allow-dropped")
    return shlex.join(argv)


def ensure_build_packages(bus: EventBus) -> None:
    missing = hostcmd.missing_host_packages(BUILD_PACKAGES)
    if missing:
        bus.emit("build.apt", f"installing build dependencies: {' '.join(missing)}")
        hostcmd.apt_install(missing)


def build(source_text: str, fragment_paths: Sequence[Path | str], bus: EventBus, *,
          name: str | None = None, allow_dropped: bool = False, jobs: int | None = None,
          keep_objects: bool = False, check_only: bool = False) -> BuildResult:
    """Build (or find in the cache) a kernel from a source and fragments; see the module doc.
    `check_only`: configure and verify, compile nothing (dropped options still raise)."""
    start = time.monotonic()
    if name is not None and not NAME_RE.match(name):
        raise BuildError(f"bad build name {name!r}: letters, digits, . _ + - (64 at most), "
                         "starting with a letter or digit")
    if not fragment_paths:
        raise BuildError("no fragment: give at least one --config (e.g. kconfig/base.config)")
    problems: list[str] = []
    fragments = [parse_fragment(Path(p), problems) for p in fragment_paths]
    if problems:
        raise FragmentError("bad kconfig fragment(s):\n  " + "\n  ".join(problems))
    merged, notes = merge(fragments)
    for note in notes:
        bus.emit("build.override", f"override: {note}")
    ensure_build_packages(bus)
    source = resolve_source(source_text, bus)
    name = name or default_name(source, fragments)
    toolchain = _toolchain()
    key = build_key(source, fragments, toolchain)
    entry = builds_root() / key
    with _locked(builds_root() / f".{key}.lock"):
        if (entry / "build.json").is_file() and not check_only:
            _point(name, key, bus)
            kernel = kernel_from_entry(entry, name)
            seconds = time.monotonic() - start
            bus.emit("build.cached", f"build:{name}: cache hit ({kernel.release}, build {key}) "
                     f"in {seconds:.1f}s", key=key, seconds=seconds)
            return BuildResult(kernel, key, True, seconds, notes=notes)
        result = _build(source, fragments, merged, notes, name, key, entry, bus,
                        allow_dropped=allow_dropped, jobs=jobs or os.cpu_count() or 1,
                        keep_objects=keep_objects, toolchain=toolchain,
                        check_only=check_only)
    if check_only:
        return result
    _point(name, key, bus)
    result.seconds = time.monotonic() - start
    return result


OBJ_META = "kharness-obj.json"  # which source an object directory builds
OBJ_LOCK = ".kharness.lock"  # held while a build uses the object directory


def _objdir(source: Source, fragments: Sequence[Fragment]) -> Path:
    """The object directory: per key for Debian sources (deleted after a good build), per tree
    and fragments for path: sources (kept: an edited tree rebuilds incrementally)."""
    h = hashlib.sha256(f"{BUILD_FORMAT}\n{source.tree}\n".encode())
    for f in fragments:
        h.update(f.text.encode())
    return builds_root() / "obj" / h.hexdigest()[:16]


def _build(source: Source, fragments: Sequence[Fragment], merged: dict[str, Asked],
           notes: list[str], name: str, key: str, entry: Path, bus: EventBus, *,
           allow_dropped: bool, jobs: int, keep_objects: bool, toolchain: str,
           check_only: bool = False) -> BuildResult:
    obj = _objdir(source, fragments)
    fresh = not obj.exists()
    obj.mkdir(parents=True, exist_ok=True)
    (obj / OBJ_META).write_text(json.dumps({"source": source.spec, "tree": str(source.tree),
                                            "name": name}) + "\n")
    with _locked(obj / OBJ_LOCK):  # `prune` leaves a directory alone while it is locked
        return _build_in(obj, fresh, source, fragments, merged, notes, name, key, entry, bus,
                         allow_dropped=allow_dropped, jobs=jobs, keep_objects=keep_objects,
                         toolchain=toolchain, check_only=check_only)


def _build_in(obj: Path, fresh: bool, source: Source, fragments: Sequence[Fragment],
              merged: dict[str, Asked], notes: list[str], name: str, key: str, entry: Path,
              bus: EventBus, *, allow_dropped: bool, jobs: int, keep_objects: bool,
              toolchain: str, check_only: bool) -> BuildResult:
    log_path = obj / "build.log"
    timings: dict[str, float] = {}
    make = ["make", "-C", str(source.tree), f"O={obj}", "ARCH=x86_64", *make_flags(source, obj)]

    # 1. configure: allnoconfig with the merged fragments as KCONFIG_ALLCONFIG, olddefconfig.
    t = time.monotonic()
    allconfig = obj / "kharness.fragments.config"
    allconfig.write_text(allconfig_text(merged))
    bus.emit("build.config", f"build:{name}: configuring {source.spec} ({source.version}) from "
             f"{START} + {', '.join(str(f.path) for f in fragments)}")
    with log_path.open("w") as log:
        _make([*make, f"KCONFIG_ALLCONFIG={allconfig}", START], log, log_path, "configuring")
        _make([*make, "olddefconfig"], log, log_path, "configuring")
    config = read_config(obj / ".config")
    check = verify(merged, config, kconfig_index(source.tree))
    timings["config"] = time.monotonic() - t
    for a in check.absent:
        bus.emit("build.warning",
                 f"{a.option} ({a.fragment}:{a.line}) is not an option of {source.version}: "
                 "ignored (MEMCG_V1 and CPUSETS_V1 only exist from 6.11 on; before, v1 comes "
                 "with MEMCG and CPUSETS)", option=a.option)
    if check.dropped:
        lines = "\n  ".join(d.describe() for d in check.dropped)
        if not allow_dropped:
            if fresh:  # nothing compiled there: no object directory left behind
                shutil.rmtree(obj, ignore_errors=True)
            raise BuildError(
                f"{len(check.dropped)} option(s) the fragments ask for are not in the "
                f"configured {source.version} kernel (a dependency is off):\n  {lines}\n"
                "add the dependencies to a fragment, or build anyway with --allow-dropped")
        bus.emit("build.warning", f"building without {len(check.dropped)} option(s) asked "
                 f"for (--allow-dropped):\n  {lines}")
    if check_only:
        if fresh:
            shutil.rmtree(obj, ignore_errors=True)
        asked = len(merged) - len(check.absent)
        bus.emit("build.checked", f"build:{name}: {source.spec} ({source.version}) has all "
                 f"{asked - len(check.dropped)} of the {asked} options asked for"
                 + (f", {len(check.absent)} not in this version" if check.absent else ""))
        return BuildResult(None, key, False, timings["config"], check, notes)

    # 2. compile.
    t = time.monotonic()
    steps = _expected_steps(source, fragments)
    bus.emit("build.compile", f"build:{name}: make -j{jobs} ({source.version}"
             + (f", about {steps} steps" if steps else "") + f"); log: {log_path}")
    with log_path.open("a") as log:
        done = _make([*make, f"-j{jobs}", "all"], log, log_path, "compiling", bus=bus,
                     expected=steps, label=f"build:{name}")
    timings["compile"] = time.monotonic() - t

    # 3. install into a staging directory, then move it into place.
    t = time.monotonic()
    release = subprocess.run([*make, "-s", "kernelrelease"], capture_output=True, text=True,
                             check=True, stdin=subprocess.DEVNULL).stdout.strip()
    staged = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=builds_root()))
    try:
        with log_path.open("a") as log:
            if config.get("CONFIG_MODULES") == "y":
                _make([*make, f"INSTALL_MOD_PATH={staged}", "INSTALL_MOD_STRIP=1",
                       "modules_install"], log, log_path, "installing the modules")
        mods = staged / "lib" / "modules" / release
        for link in ("build", "source"):
            (mods / link).unlink(missing_ok=True)
        shutil.copy2(obj / "arch" / "x86" / "boot" / "bzImage", staged / "bzImage")
        shutil.copy2(obj / ".config", staged / "config")
        vmlinux = obj / "vmlinux"
        debug = has_debug_info(vmlinux)
        if debug:
            shutil.copy2(vmlinux, staged / DEBUG_VMLINUX)
            hostcmd.run(["objcopy", "--strip-debug", str(vmlinux), str(staged / "vmlinux")],
                        "stripping vmlinux")
        else:
            shutil.copy2(vmlinux, staged / "vmlinux")
        gdb_scripts = obj / "vmlinux-gdb.py"
        if gdb_scripts.exists():
            (staged / "gdb").mkdir()
            shutil.copy2(gdb_scripts, staged / "gdb" / "vmlinux-gdb.py")
            shutil.copytree(obj / "scripts" / "gdb" / "linux",
                            staged / "gdb" / "scripts" / "gdb" / "linux", symlinks=False,
                            ignore=shutil.ignore_patterns("__pycache__", "*.o", ".*.cmd"))
        frag_dir = staged / "fragments"
        frag_dir.mkdir()
        for i, f in enumerate(fragments, 1):
            (frag_dir / f"{i:02d}-{f.path.name}").write_text(f.text)
        timings["install"] = time.monotonic() - t
        meta = {
            "format": BUILD_FORMAT, "key": key, "name": name, "release": release,
            "source": source.spec, "source_version": source.version,
            "source_identity": source.identity, "source_tree": str(source.tree),
            "start": START, "toolchain": toolchain, "jobs": jobs,
            "fragments": [{"path": str(f.path), "sha256": f.sha256} for f in fragments],
            "overrides": notes,
            "dropped": [asdict(d) for d in check.dropped],
            "absent": [{"option": a.option, "fragment": str(a.fragment), "line": a.line}
                       for a in check.absent],
            "debug_info": debug, "gdb_scripts": gdb_scripts.exists(),
            "steps": done, "seconds": timings,
            "reproducer": reproducer(source, fragments, name, allow_dropped),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        shutil.copy2(log_path, staged / "build.log")
        (staged / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
        if entry.exists():
            shutil.rmtree(entry)
        staged.rename(entry)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if not keep_objects and source.spec.startswith("debian:"):
        shutil.rmtree(obj, ignore_errors=True)
    _remember_steps(source, fragments, done)
    kernel = kernel_from_entry(entry, name)
    total = sum(timings.values())
    bus.emit("build.done", f"build:{name}: {release} built in {total:.0f}s (configure "
             f"{timings['config']:.0f}s, compile {timings['compile']:.0f}s, install "
             f"{timings['install']:.0f}s) -> {entry}", key=key, seconds=timings)
    return BuildResult(kernel, key, False, total, check, notes)


_STEP = re.compile(r"^\s+(CC|AS|LD|AR|HOSTCC|HOSTLD|OBJCOPY|GEN|CC \[M\]|LD \[M\])\s")


def _make(argv: list[str], log, log_path: Path, what: str, *, bus: EventBus | None = None,
          expected: int | None = None, label: str = "") -> int:
    """Run make with its output in the log; progress events every 15 s; the process group is
    killed on any exception (Ctrl-C included). Returns the number of build steps seen."""
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", stdin=subprocess.DEVNULL, start_new_session=True)
    steps = 0
    tail: list[str] = []
    start = time.monotonic()
    stop = threading.Event()
    progress: dict[str, str] = {"last": ""}

    def ticker() -> None:
        while not stop.wait(15):
            if bus:
                elapsed = time.monotonic() - start
                pct = f" ({min(99, 100 * steps // expected)}%)" if expected else ""
                bus.emit("build.progress", f"{label}: {what}: {steps} steps{pct}, "
                         f"{elapsed // 60:.0f}m{elapsed % 60:02.0f}s, {progress['last']}",
                         steps=steps, expected=expected, seconds=elapsed)

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip())
            del tail[:-40]
            m = _STEP.match(line)
            if m:
                steps += 1
                progress["last"] = line.split()[-1]
        rc = proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    finally:
        stop.set()
        log.flush()
    if rc != 0:
        errors = [t for t in tail if "error" in t.lower() or "***" in t] or tail[-15:]
        raise hostcmd.HostCommandError(f"{label or 'the build'}: {what}", argv, rc,
                                       "\n".join(errors[-7:]) + f"\nthe whole log: {log_path}")
    return steps


def _steps_file() -> Path:
    return builds_root() / "steps.json"


def _expected_steps(source: Source, fragments: Sequence[Fragment]) -> int | None:
    """Build steps seen in the last build of the same source series and fragments (progress)."""
    try:
        known = json.loads(_steps_file().read_text())
    except (OSError, ValueError):
        return None
    return known.get(_steps_key(source, fragments))


def _steps_key(source: Source, fragments: Sequence[Fragment]) -> str:
    series = ".".join(source.version.split(".")[:2])
    return series + " " + " ".join(f.sha256[:12] for f in fragments)


def _remember_steps(source: Source, fragments: Sequence[Fragment], steps: int) -> None:
    path = _steps_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known[_steps_key(source, fragments)] = steps
    path.write_text(json.dumps(known, indent=1) + "\n")


# --- pruning the cache ----------------------------------------------------------------------

@dataclass(frozen=True)
class Pruned:
    path: Path
    bytes: int
    why: str


def _busy(obj: Path) -> bool:
    """A build holds the directory's lock, or wrote its log in the last 10 minutes (a build
    started by an older kharness, without the lock)."""
    with contextlib.suppress(OSError):
        if time.time() - (obj / "build.log").stat().st_mtime < 600:
            return True
    lock = obj / OBJ_LOCK
    if not lock.exists():
        return False
    with lock.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def prune(*, objects: bool = False, sources: bool = False, dry_run: bool = False) -> list[Pruned]:
    """What the build cache holds that nothing uses: build entries no name points at (an
    older build of a name whose fragments changed), names whose entry is gone, object
    directories of Debian-source builds (left by an interrupted build); with `objects` also
    path: trees' object directories (kept for incremental rebuilds), with `sources` the
    unpacked Debian sources (unpacked again, ~10 s, when needed). Directories a running build
    holds are left alone."""
    root = builds_root()
    out: list[Pruned] = []
    named: set[str] = set()
    for link in (root / "names").glob("*.json"):
        key = json.loads(link.read_text()).get("key", "")
        if (root / key / "build.json").is_file():
            named.add(key)
        else:
            out.append(Pruned(link, 0, f"build:{link.stem} names a build that is gone"))
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and (entry / "build.json").is_file() and entry.name not in named:
            meta = json.loads((entry / "build.json").read_text())
            out.append(Pruned(entry, disk_usage(entry), f"no name points at it (was build:"
                              f"{meta.get('name', '?')}, {meta.get('source', '?')})"))
        elif entry.is_dir() and entry.name.startswith(".") and not _busy(entry):
            out.append(Pruned(entry, disk_usage(entry),
                              "an unfinished build's staging directory"))
    for obj in sorted((root / "obj").glob("*")) if (root / "obj").is_dir() else []:
        if _busy(obj):
            continue
        try:
            meta = json.loads((obj / OBJ_META).read_text())
        except (OSError, ValueError):
            meta = {}
        source = meta.get("source", "")
        if source.startswith("path:") and not objects:
            continue
        why = ("object directory of " + (source or "an unknown source")
               + (" (kept for incremental rebuilds)" if source.startswith("path:")
                  else " (an interrupted build)"))
        out.append(Pruned(obj, disk_usage(obj), why))
    if sources:
        for top in sorted(sources_root().glob("linux-source-*")):
            out.append(Pruned(top, disk_usage(top), "unpacked Debian source"))
    if not dry_run:
        for p in out:
            if p.path.is_dir():
                shutil.rmtree(p.path, ignore_errors=True)
            else:
                p.path.unlink(missing_ok=True)
    return out
