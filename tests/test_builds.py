"""Kernel builds without a compiler: fragments, the merge, the Kconfig index, the verification
of the configured kernel, keys and names. The real builds are in test_build_integration.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import kernels
from harness.events import EventBus
from harness.kernels import build, kconfig, trees
from harness.kernels.cache import builds_root
from harness.kernels.kconfig import Fragment, FragmentError, merge, parse_fragment, verify

REPO = Path(__file__).resolve().parent.parent


def _frag(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_fragments_parse():
    for name in ("base", "cgroups", "cgroup-v1", "debug"):
        frag = parse_fragment(REPO / "kconfig" / f"{name}.config")
        assert frag.options, name
    cg = parse_fragment(REPO / "kconfig" / "cgroups.config").options
    for opt in ("MEMCG", "CGROUP_SCHED", "CFS_BANDWIDTH", "BLK_CGROUP", "BLK_DEV_THROTTLING",
                "CGROUP_RDMA", "INFINIBAND", "RDMA_RXE", "CGROUP_PIDS", "CGROUP_FREEZER",
                "CPUSETS", "PSI", "SWAP"):
        assert cg[f"CONFIG_{opt}"] == "y", opt
    assert parse_fragment(REPO / "kconfig" / "cgroup-v1.config").options == {
        "CONFIG_MEMCG_V1": "y", "CONFIG_CPUSETS_V1": "y"}
    debug = parse_fragment(REPO / "kconfig" / "debug.config").options
    assert debug["CONFIG_GDB_SCRIPTS"] == "y" and debug["CONFIG_FRAME_POINTER"] == "y"


def test_fragment_syntax(tmp_path):
    frag = parse_fragment(_frag(tmp_path, "a.config", (
        "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"-x \\\"q\\\"\"\n"
        "CONFIG_D=0x10\nCONFIG_E=-3\nCONFIG_F=m\n")))
    assert frag.options == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '-x "q"',
                            "CONFIG_D": "0x10", "CONFIG_E": "-3", "CONFIG_F": "m"}
    assert frag.lines["CONFIG_B"] == 4


def test_every_bad_line_of_every_fragment_is_listed_at_once(tmp_path):
    a = _frag(tmp_path, "a.config", "CONFIG_A=yes\nMEMCG=y\nCONFIG_A=y\nCONFIG_A=n\n")
    b = _frag(tmp_path, "b.config", "CONFIG_B=unquoted string\n")
    with pytest.raises(FragmentError) as err:
        build.build("debian:6.12", [a, b, tmp_path / "gone.config"], EventBus())
    text = str(err.value)
    assert f"{a}:1: CONFIG_A: bad value 'yes'" in text
    assert f"{a}:2: not an option line" in text
    assert f"{a}:4: CONFIG_A is already set on line 3" in text
    assert f"{b}:1: CONFIG_B: bad value" in text
    assert "gone.config: cannot read" in text


def test_merge_later_fragments_win_and_say_so(tmp_path):
    a = parse_fragment(_frag(tmp_path, "a.config", "CONFIG_A=y\nCONFIG_B=y\n"))
    b = parse_fragment(_frag(tmp_path, "b.config", "# CONFIG_A is not set\nCONFIG_B=y\n"))
    merged, notes = merge([a, b])
    assert merged["CONFIG_A"].value == "n" and merged["CONFIG_A"].fragment == b.path
    assert notes == [f"CONFIG_A: {b.path}:1 sets is not set, over y from {a.path}:1"]
    text = kconfig.allconfig_text(merged)
    assert "# CONFIG_A is not set\nCONFIG_B=y\n" == text


KCONFIG = """\
menuconfig BLK_CGROUP
\tbool "Block IO controller"
\tdepends on BLOCK
\tdefault n

config BLK_DEV_THROTTLING
\tbool "Block layer bio throttling support"
\tdepends on BLK_CGROUP
\tselect BLK_CGROUP_RWSTAT

if INFINIBAND
config RDMA_RXE
\ttristate "Software RDMA over Ethernet (RoCE) driver"
\tdepends on INET && PCI
endif

config MEMCG_V1
\tbool "Legacy cgroup v1 memory controller"
\tdepends on MEMCG
\tdepends on !PREEMPT_RT
"""


def _index(tmp_path: Path) -> dict:
    tree = tmp_path / "tree"
    (tree / "block").mkdir(parents=True)
    (tree / "block" / "Kconfig").write_text(KCONFIG)
    return kconfig.kconfig_index(tree)


def test_kconfig_index_keeps_depends_and_enclosing_ifs(tmp_path):
    index = _index(tmp_path)
    assert index["BLK_DEV_THROTTLING"].depends == ["BLK_CGROUP"]
    assert index["RDMA_RXE"].depends == ["INFINIBAND", "INET && PCI"]
    assert index["MEMCG_V1"].depends == ["MEMCG", "!PREEMPT_RT"]
    assert index["BLK_CGROUP"].where == ["block/Kconfig:1"]


def test_verify_names_the_dropped_option_and_the_dependency_that_is_off(tmp_path):
    index = _index(tmp_path)
    frag = Fragment(Path("f.config"), "", {"CONFIG_BLK_DEV_THROTTLING": "y",
                                           "CONFIG_MEMCG_V1": "y", "CONFIG_RDMA_RXE": "y",
                                           "CONFIG_NOT_IN_THIS_KERNEL": "y"},
                    {"CONFIG_BLK_DEV_THROTTLING": 3, "CONFIG_MEMCG_V1": 4, "CONFIG_RDMA_RXE": 5,
                     "CONFIG_NOT_IN_THIS_KERNEL": 6})
    merged, _ = merge([frag])
    config = {"CONFIG_BLOCK": "y", "CONFIG_MEMCG": "y", "CONFIG_MEMCG_V1": "y",
              "CONFIG_INET": "y"}
    check = verify(merged, config, index)
    assert not check.ok
    by = {d.option: d for d in check.dropped}
    assert set(by) == {"CONFIG_BLK_DEV_THROTTLING", "CONFIG_RDMA_RXE"}
    assert by["CONFIG_BLK_DEV_THROTTLING"].describe() == (
        "CONFIG_BLK_DEV_THROTTLING=y (f.config:3) ended up is not set: depends on "
        "BLK_CGROUP (is not set)")
    assert by["CONFIG_RDMA_RXE"].depends == ("INFINIBAND (is not set)",
                                             "INET && PCI [INET (y), PCI (is not set)]")
    assert [a.option for a in check.absent] == ["CONFIG_NOT_IN_THIS_KERNEL"]


def test_verify_checks_values_not_only_presence(tmp_path):
    index = _index(tmp_path)
    frag = Fragment(Path("f.config"), "", {"CONFIG_RDMA_RXE": "m", "CONFIG_BLK_CGROUP": "n"},
                    {"CONFIG_RDMA_RXE": 1, "CONFIG_BLK_CGROUP": 2})
    merged, _ = merge([frag])
    check = verify(merged, {"CONFIG_RDMA_RXE": "y", "CONFIG_BLK_CGROUP": "y",
                            "CONFIG_INFINIBAND": "y", "CONFIG_INET": "y", "CONFIG_PCI": "y"},
                   index)
    assert {(d.option, d.asked, d.got) for d in check.dropped} == {
        ("CONFIG_RDMA_RXE", "m", "y"), ("CONFIG_BLK_CGROUP", "n", "y")}


def test_build_specs_parse_and_unknown_names_say_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path))
    spec = kernels.parse_spec("build:v612-v1")
    assert (spec.kind, spec.value) == ("build", "v612-v1")
    with pytest.raises(kernels.KernelSpecError, match="bad kernel spec"):
        kernels.parse_spec("build:../x")
    with pytest.raises(kernels.KernelSpecError, match="kharness kernel build --source SPEC"):
        kernels.resolve("build:nope", EventBus())


def test_a_build_entry_is_a_kernel_with_its_debug_vmlinux_and_gdb_scripts(tmp_path, monkeypatch):
    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path))
    entry = builds_root() / "0123456789abcdef"
    mods = entry / "lib" / "modules" / "6.12.117-kharness"
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text("")
    (entry / "gdb").mkdir()
    (entry / "gdb" / "vmlinux-gdb.py").write_text("")
    (entry / "vmlinux").write_bytes(b"\x7fELF")
    (entry / "vmlinux.debug").write_bytes(b"\x7fELF")
    (entry / "config").write_text("CONFIG_MEMCG=y\nCONFIG_MEMCG_V1=y\n")
    (entry / "build.json").write_text(json.dumps({
        "key": "0123456789abcdef", "release": "6.12.117-kharness", "source": "debian:6.12",
        "reproducer": "kharness kernel build --source debian:6.12 --config x --name v1"}))
    build._point("v1", "0123456789abcdef", EventBus())
    k = kernels.resolve("build:v1", EventBus())
    assert k.spec == "build:v1" and k.release == "6.12.117-kharness"
    assert k.modules_dir == mods
    assert k.debug_vmlinux == entry / "vmlinux.debug"
    assert k.gdb_scripts == entry / "gdb" / "vmlinux-gdb.py"
    assert k.flags()["MEMCG_V1"] == "y"
    assert [c.spec for c in kernels.cached_kernels()] == ["build:v1"]
    (entry / "vmlinux.debug").unlink()
    with pytest.raises(kernels.DebugSymbolsError, match="--config kconfig/debug.config"):
        kernels.fetch_debug(kernels.resolve("build:v1", EventBus()), EventBus())


def test_keys_follow_source_fragments_and_toolchain(tmp_path):
    a = parse_fragment(_frag(tmp_path, "a.config", "CONFIG_A=y\n"))
    b = parse_fragment(_frag(tmp_path, "b.config", "CONFIG_B=y\n"))
    src = trees.Source("debian:6.12", tmp_path, "6.12.117", "linux-source-6.12 6.12.117-1")
    key = build.build_key(src, [a, b], "gcc 12")
    assert key == build.build_key(src, [a, b], "gcc 12")
    assert key != build.build_key(src, [b, a], "gcc 12")  # order matters: later ones win
    assert key != build.build_key(src, [a, b], "gcc 13")
    newer = trees.Source("debian:6.12", tmp_path, "6.12.118", "linux-source-6.12 6.12.118-1")
    assert key != build.build_key(newer, [a, b], "gcc 12")


def test_path_sources_must_be_clean_trees(tmp_path):
    with pytest.raises(kernels.BuildError, match="not a Linux source tree"):
        trees.path_source(str(tmp_path))
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 13\nSUBLEVEL = 0\n"
                                       "EXTRAVERSION = -rc1\n")
    (tmp_path / "Kconfig").write_text("")
    src = trees.path_source(str(tmp_path))
    assert src.version == "6.13-rc1" and src.identity.startswith("files ")
    (tmp_path / ".config").write_text("")
    with pytest.raises(kernels.BuildError, match="mrproper"):
        trees.path_source(str(tmp_path))


def test_reproducer_is_a_command_line(tmp_path):
    frag = parse_fragment(REPO / "kconfig" / "base.config")
    src = trees.Source("debian:6.12", tmp_path, "6.12.117", "x")
    assert build.reproducer(src, [frag], "v", True) == (
        "kharness kernel build --source debian:6.12 --config kconfig/base.config --name v "
        "--allow-dropped")


@pytest.mark.parametrize("expr, ok", [
    ("A", True), ("C", False), ("!C", True), ("A && C", False), ("A || C", True),
    ("(A || C) && !C", True), ("B = m", True), ("B != m", False), ("A&&(C||B)", True),
    ("CRYPTO_LZO || CRYPTO_ZSTD", False),
])
def test_dependency_expressions_are_evaluated(expr, ok):
    values = {"CONFIG_A": "y", "CONFIG_B": "m", "CONFIG_C": "n"}
    assert kconfig.satisfied(expr, values) is ok
    assert (kconfig.unmet(expr, values) == []) is ok


def test_an_or_dependency_is_shown_whole():
    assert kconfig.unmet("CRYPTO_LZO || CRYPTO_ZSTD", {}) == [
        "CRYPTO_LZO || CRYPTO_ZSTD [CRYPTO_LZO (is not set), CRYPTO_ZSTD (is not set)]"]


def test_dwarf_file_names_are_made_relative_to_the_tree_and_the_object_dir(tmp_path):
    src = trees.Source("debian:6.12", Path("/c/src/linux"), "6.12.117", "x")
    flags = build.make_flags(src, Path("/c/obj/1"))
    assert flags == ["KCFLAGS=-ffile-prefix-map=/c/src/linux/= -ffile-prefix-map=/c/obj/1/=",
                     "KAFLAGS=-ffile-prefix-map=/c/src/linux/= -ffile-prefix-map=/c/obj/1/="]


def test_prune_removes_what_nothing_uses_and_leaves_busy_and_named_builds(tmp_path, monkeypatch):
    import fcntl
    import os
    import time as _time

    monkeypatch.setenv("KHARNESS_CACHE", str(tmp_path))
    root = builds_root()

    def entry(key: str, name: str) -> None:
        (root / key).mkdir()
        (root / key / "build.json").write_text(json.dumps({"name": name, "source": "debian:6.12",
                                                           "release": "6.12.117-kharness"}))
        (root / key / "vmlinux").write_bytes(b"x" * 100)

    entry("aaaa", "v1")
    entry("bbbb", "v1")  # the older build of v1: v1 now names aaaa
    build._point("v1", "aaaa", EventBus())
    (root / "names" / "gone.json").write_text(json.dumps({"key": "cccc"}))
    old = _time.time() - 3600

    def obj(name: str, source: str) -> Path:
        d = root / "obj" / name
        d.mkdir(parents=True)
        (d / build.OBJ_META).write_text(json.dumps({"source": source}))
        (d / "build.log").write_text("")
        os.utime(d / "build.log", (old, old))
        return d

    obj("deb", "debian:6.12")
    obj("mine", "path:/src/linux")
    busy = obj("busy", "debian:6.1")
    recent = obj("recent", "debian:6.1")
    os.utime(recent / "build.log")  # written just now: a build without the lock
    with (busy / build.OBJ_LOCK).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        listed = build.prune(dry_run=True)
        assert {p.path.name for p in listed} == {"bbbb", "gone.json", "deb"}
        assert (root / "bbbb").exists()  # dry run
        assert {p.path.name for p in build.prune(objects=True)} == {"bbbb", "gone.json", "deb",
                                                                     "mine"}
    assert (root / "aaaa").exists() and not (root / "bbbb").exists()
    assert busy.exists() and recent.exists()
    assert kernels.resolve("build:v1", EventBus()).release == "6.12.117-kharness"
