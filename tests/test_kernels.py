"""Kernel specs, bzImage handling and config flags (no QEMU)."""

from __future__ import annotations

import ast
import gzip
import json
import lzma
import struct
from pathlib import Path

import pytest

from harness import kernels
from harness.events import EventBus
from harness.kernels import KernelSpecError, cache, debian, image, parse_spec
from harness.results import environment


@pytest.mark.parametrize(
    ("text", "kind", "value", "modules"),
    [
        ("debian:6.1", "debian", "6.1", None),
        ("debian:6.12", "debian", "6.12", None),
        ("debian:6.1.0-56", "debian", "6.1.0-56", None),
        ("debian:6.12.117+deb12", "debian", "6.12.117+deb12", None),
        ("path:/src/linux/arch/x86/boot/bzImage", "path", "/src/linux/arch/x86/boot/bzImage",
         None),
        ("path:/k/bzImage,modules=/lib/modules/6.9.0", "path", "/k/bzImage",
         "/lib/modules/6.9.0"),
    ],
)
def test_parse_spec(text, kind, value, modules):
    spec = parse_spec(text)
    assert (spec.kind, spec.value, spec.modules) == (kind, value, modules)
    assert str(spec) == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nosuch:1", ["unknown kernel spec", "nosuch:1"]),
        ("6.1", ["bad kernel spec", "'6.1'"]),
        ("debian:", ["bad kernel spec"]),
        ("debian:latest", ["not a Debian kernel series"]),
        ("path:/k/bzImage,foo=bar", ["modules="]),
    ],
)
def test_bad_specs_name_the_spec(text, words):
    with pytest.raises(KernelSpecError) as err:
        parse_spec(text)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("value", "release", "matches"),
    [
        ("6.1", "6.1.0-56-amd64", True),
        ("6.1", "6.12.117+deb12-amd64", False),
        ("6.12", "6.12.117+deb12-amd64", True),
        ("6.12", "6.1.0-56-amd64", False),
        ("6.1.0-56", "6.1.0-56-amd64", True),
        ("6.1.0-5", "6.1.0-56-amd64", False),
        ("6.12.117+deb12", "6.12.117+deb12-amd64", True),
        ("6.12.117", "6.12.117+deb12-amd64", True),
        ("6.12.11", "6.12.117+deb12-amd64", False),
    ],
)
def test_series_matching(value, release, matches):
    assert debian.Wanted(value).matches(release) is matches


def test_release_ordering_is_numeric():
    releases = ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-47-amd64"]
    assert max(releases, key=debian.release_key) == "6.1.0-56-amd64"


def _fake_bzimage(payload: bytes, version: bytes = b"6.9.0-test (me@host) #1") -> bytes:
    """A bzImage-shaped blob: boot header fields pointing at a compressed payload."""
    setup_sects = 3
    img = bytearray((setup_sects + 1) * 512)
    img[0x1F1] = setup_sects
    img[0x202:0x206] = b"HdrS"
    ver_off = 0x300
    img[ver_off:ver_off + len(version) + 1] = version + b"\0"
    struct.pack_into("<H", img, 0x20E, ver_off - 0x200)
    struct.pack_into("<II", img, 0x248, 16, len(payload))
    return bytes(img) + b"\0" * 16 + payload


def test_extract_vmlinux_xz_and_gzip():
    elf = b"\x7fELF" + b"x" * 1000
    xz = lzma.compress(elf, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32) + b"\x00\x10\x00\x00"
    assert image.extract_vmlinux(_fake_bzimage(xz)) == elf
    assert image.extract_vmlinux(_fake_bzimage(gzip.compress(elf))) == elf
    assert image.release_of(_fake_bzimage(xz)) == "6.9.0-test"


def test_extract_vmlinux_rejects_garbage():
    with pytest.raises(ValueError, match="not a bzImage"):
        image.extract_vmlinux(b"\0" * 4096)


def test_ikconfig_roundtrip():
    config = "CONFIG_MEMCG=y\n# CONFIG_MEMCG_V1 is not set\n"
    blob = b"junk" + b"IKCFG_ST" + gzip.compress(config.encode()) + b"IKCFG_ED" + b"tail"
    assert image.extract_ikconfig(blob) == config


def test_flags_distinguish_unset_from_absent(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_MEMCG=y\n# CONFIG_MEMCG_V1 is not set\nCONFIG_ZRAM=m\n")
    k = kernels.Kernel(spec="t", release="6.12.0", vmlinux=tmp_path / "v", config=cfg,
                       modules_dir=None)
    flags = k.flags()
    assert flags["MEMCG"] == "y"
    assert flags["MEMCG_V1"] == "n"
    assert flags["ZRAM"] == "m"
    assert flags["CPUSETS_V1"] == "-"  # no such option: v1 cpuset comes with CPUSETS


def test_path_spec_missing_file_is_clear(tmp_path):
    with pytest.raises(KernelSpecError, match="does not exist"):
        kernels.resolve(f"path:{tmp_path}/nope", bus=EventBus())


def test_releases_split_into_abi_and_flavour():
    assert debian.split_release("6.1.0-56-amd64") == ("6.1.0-56", "amd64")
    assert debian.split_release("6.1.0-56-rt-amd64") == ("6.1.0-56", "rt-amd64")
    assert debian.split_release("6.12.117+deb12-cloud-amd64") == ("6.12.117+deb12", "cloud-amd64")
    assert not debian.Wanted("6.1").matches("6.1.0-56-rt-amd64")  # debian: is the generic one
    assert debian.spec_of("6.12.117+deb12-amd64") == "debian:6.12.117+deb12"


class FakeArchive:
    def __init__(self, releases: list[str]) -> None:
        self._releases = releases

    def releases(self, flavour, bus):
        return [r for r in self._releases if debian.split_release(r)[1] == flavour]

    def download(self, name, work):
        raise AssertionError("no download in a unit test")


def test_debian_candidates_come_from_the_archive_newest_first():
    source = debian.DebianSource(FakeArchive([
        "6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-56-rt-amd64", "6.12.117+deb12-amd64",
        "6.1.0-47-cloud-amd64"]))
    bus = EventBus()
    assert source.candidates(parse_spec("debian:6.1"), bus) == ["6.1.0-56-amd64", "6.1.0-9-amd64"]
    assert source.candidates(parse_spec("debian:6.12.117"), bus) == ["6.12.117+deb12-amd64"]


def test_flavour_specs_pick_the_flavour_and_available_lists_every_one():
    source = debian.DebianSource(FakeArchive([
        "6.1.0-50-amd64", "6.1.0-50-rt-amd64", "6.1.0-57-rt-amd64", "6.1.0-9-amd64",
        "6.12.117+deb12-cloud-amd64", "6.12.117+deb12-amd64"]))
    bus = EventBus()
    assert source.candidates(parse_spec("debian:6.1-rt"), bus) == ["6.1.0-57-rt-amd64",
                                                                   "6.1.0-50-rt-amd64"]
    assert source.candidates(parse_spec("debian:6.1.0-50-rt"), bus) == ["6.1.0-50-rt-amd64"]
    assert source.candidates(parse_spec("debian:6.12.117+deb12-cloud"), bus) == [
        "6.12.117+deb12-cloud-amd64"]
    assert debian.spec_of("6.1.0-50-rt-amd64") == "debian:6.1.0-50-rt"
    assert debian.spec_of("6.12.117+deb12-cloud-amd64") == "debian:6.12.117+deb12-cloud"
    assert debian.available("6.1", bus, source.archive) == [
        "6.1.0-9-amd64", "6.1.0-50-amd64", "6.1.0-50-rt-amd64", "6.1.0-57-rt-amd64"]
    assert len(debian.available(None, bus, source.archive)) == 6
    with pytest.raises(kernels.KernelSpecError, match="major.minor"):
        debian.available("6", bus, source.archive)
    with pytest.raises(kernels.KernelSpecError, match="flavour"):
        parse_spec("debian:6.1-foo")


class FakeSource:
    """A new source is a class with the KernelSource methods, registered in SOURCES."""

    prefix = "fake"
    usage = "fake:NAME"
    example = "fake:one"

    def __init__(self, tmp_path) -> None:
        self.kernel = kernels.Kernel(spec="fake:one", release="6.9.0-fake",
                                     vmlinux=tmp_path / "vmlinux", config=None, modules_dir=None)

    def parse(self, value, text):
        return kernels.KernelSpec(self.prefix, value, text=text)

    def resolve(self, spec, bus, *, fetch, refresh):
        return self.fetch(spec, bus)

    def cached(self):
        return [self.kernel]

    def fetch(self, spec, bus):
        if spec.value != "one":
            raise KernelSpecError(f"no fake kernel {spec.value!r}")
        return self.kernel

    def fetch_debug(self, kernel, bus):
        return kernel.vmlinux


def test_the_registry_picks_the_source_by_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path))
    fake = FakeSource(tmp_path)
    monkeypatch.setitem(kernels.SOURCES, "fake", fake)
    assert kernels.resolve("fake:one", EventBus()) is fake.kernel
    assert kernels.cached_kernels() == [fake.kernel]
    assert kernels.fetch_debug(fake.kernel, EventBus()) == tmp_path / "vmlinux"
    with pytest.raises(KernelSpecError, match="no fake kernel 'two'"):
        kernels.resolve("fake:two", EventBus())
    with pytest.raises(KernelSpecError) as err:
        parse_spec("nosuch:1")
    assert "'build:' or 'fake:' (e.g. debian:6.1, " in str(err.value)
    assert "fake:one)" in str(err.value)
    with pytest.raises(KernelSpecError, match="or fake:NAME$"):
        parse_spec("fake:")


def test_kernel_json_keeps_the_format_older_versions_read(tmp_path, monkeypatch):
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path))
    entry = cache.kernels_root() / "6.1.0-56-amd64"
    entry.mkdir()
    (entry / "config").write_text("CONFIG_MEMCG=y\n")
    origin = {"package": "linux-image-6.1.0-56-amd64-unsigned", "package_version": "6.1.158-1",
              "deb_sha256": "ab"}
    k = kernels.Kernel(spec="debian:6.1.0-56", release="6.1.0-56-amd64",
                       vmlinux=entry / "vmlinux", config=entry / "config",
                       modules_dir=entry / "root" / "lib" / "modules", image=entry / "vmlinuz",
                       origin=origin)
    cache.write_entry(entry, k)
    meta = json.loads((entry / "kernel.json").read_text())
    assert list(meta) == ["spec", "release", "vmlinux", "config", "modules_dir", "package",
                          "package_version", "image", "extra", "fetched_at"]
    assert meta["package_version"] == "6.1.158-1" and meta["extra"] == {"deb_sha256": "ab"}
    assert cache.load_entry(entry) == k
    debian_kernel = kernels.cached_kernels()[0]
    assert debian_kernel.debug_file == entry / "vmlinux.debug"
    assert debian_kernel.debug_vmlinux is None  # not fetched


def test_run_json_kernel_entries_keep_their_keys(tmp_path):
    deb = kernels.Kernel(spec="debian:6.1.0-56", release="6.1.0-56-amd64", vmlinux=tmp_path / "v",
                         config=None, modules_dir=None,
                         origin={"package": "linux-image-6.1.0-56-amd64-unsigned",
                                 "package_version": "6.1.158-1", "deb_sha256": "ab"})
    built = kernels.Kernel(spec="build:v1", release="6.12.117-kharness", vmlinux=tmp_path / "v",
                           config=None, modules_dir=None, origin={"build": {"key": "0123"}})
    ks = environment([deb, built], "tcg")["kernels"]
    assert ks[0] == {"spec": "debian:6.1.0-56", "release": "6.1.0-56-amd64",
                     "package": "linux-image-6.1.0-56-amd64-unsigned",
                     "package_version": "6.1.158-1", "config_sha256": None,
                     "flags": {f: "?" for f in kernels.FLAGS}}
    assert ks[1]["package"] == "" and ks[1]["package_version"] == ""
    assert ks[1]["build"] == {"key": "0123"}


def _import_graph(root: Path) -> dict[str, set[str]]:
    """harness's modules -> the harness modules they import, at module level or in functions.
    Importing a.b.c runs a.b first, unless the importer is inside a.b."""
    mods = {}
    for f in (root / "harness").rglob("*.py"):
        parts = f.relative_to(root).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {}
    for mod, f in mods.items():
        here = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        out = graph.setdefault(mod, set())
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here.split(".")[:len(here.split(".")) - node.level + 1] if node.level \
                    else []
                src = ".".join([*base, *([node.module] if node.module else [])])
                names = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src
                         for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                for i in range(2, len(parts) + 1):
                    target = ".".join(parts[:i])
                    if target in mods and target != mod and (
                            i == len(parts) or not mod.startswith(target + ".")):
                        out.add(target)
    return graph


def _in_a_cycle(graph: dict[str, set[str]], start: str) -> bool:
    """Whether `start` reaches itself through the imports."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            if nxt == start:
                return True
            seen.add(nxt)
            todo.append(nxt)
    return False


def test_no_import_cycle_goes_through_harness_kernels():
    graph = _import_graph(Path(__file__).resolve().parent.parent)
    kernels_mods = [m for m in graph if m == "harness.kernels" or m.startswith("harness.kernels.")]
    assert len(kernels_mods) >= 9
    assert "harness.kernels.build" in graph["harness.cli"]
    cycles = [m for m in kernels_mods if _in_a_cycle(graph, m)]
    assert cycles == [], f"modules in an import cycle: {cycles}"


def test_no_import_cycle_anywhere_in_harness():
    """Issue 16: imports flow one way, down the floors of docs/architecture.md."""
    graph = _import_graph(Path(__file__).resolve().parent.parent)
    assert len(graph) >= 50
    assert [m for m in sorted(graph) if _in_a_cycle(graph, m)] == []


def test_debian_kernels_no_series_name_points_at_are_the_older_ones(tmp_path):
    def k(release):
        return kernels.Kernel(spec=debian.spec_of(release), release=release,
                              vmlinux=tmp_path / release / "vmlinux", config=None,
                              modules_dir=None)
    cached = [k(r) for r in ("6.1.0-47-amd64", "6.1.0-57-amd64", "6.1.0-50-rt-amd64",
                             "6.12.107+deb12-amd64", "6.12.118+deb12-amd64", "6.1.0-9-amd64")]
    assert sorted(x.release for x in debian.unnamed(cached)) == [
        "6.1.0-47-amd64", "6.1.0-9-amd64", "6.12.107+deb12-amd64"]
