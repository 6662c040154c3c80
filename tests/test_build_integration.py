"""`kharness kernel build` for real: Debian's linux-source-6.12 configured from kconfig/
fragments, compiled (about 4-5 min on 2 cores; a cache hit afterwards), booted, and run.

The first run on a machine builds two kernels: v612-v1 (base + cgroups + cgroup-v1) and
v612-debug (the same + debug). Later runs find them in the cache."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from test_run_integration import kharness, lines

from harness.channels.gdb import gdb_pids

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

V1 = ["--config", "kconfig/base.config", "--config", "kconfig/cgroups.config",
      "--config", "kconfig/cgroup-v1.config"]
BUILD_TIMEOUT = 3600


@pytest.fixture(scope="module")
def v612_v1() -> str:
    """The acceptance build; returns the kernel spec."""
    p = kharness("kernel", "build", "--source", "debian:6.12", *V1, "--name", "v612-v1",
                 timeout=BUILD_TIMEOUT)
    assert p.returncode == 0, p.stderr[-4000:]
    spec, release, vmlinux = p.stdout.strip().split("\t")[:3]
    assert spec == "build:v612-v1" and release.startswith("6.12.") and Path(vmlinux).is_file()
    return spec


@pytest.fixture(scope="module")
def v612_debug() -> str:
    p = kharness("kernel", "build", "--source", "debian:6.12", *V1, "--config",
                 "kconfig/debug.config", "--name", "v612-debug", timeout=BUILD_TIMEOUT)
    assert p.returncode == 0, p.stderr[-4000:]
    return "build:v612-debug"


def test_an_option_whose_dependency_is_off_is_refused_naming_both():
    start = time.monotonic()
    p = kharness("kernel", "build", "--source", "debian:6.12", "--config", "kconfig/base.config",
                 "--config", "tests/kconfig/throttle-without-blkcg.config", "--name",
                 "refused-test")
    assert p.returncode == 2, p.stdout + p.stderr
    assert ("CONFIG_BLK_DEV_THROTTLING=y (tests/kconfig/throttle-without-blkcg.config:3) ended "
            "up is not set: depends on BLK_CGROUP (is not set)") in p.stderr
    assert "--allow-dropped" in p.stderr
    assert time.monotonic() - start < 300, "refused after compiling? it must stop at configure"
    assert "build:refused-test" not in kharness("kernel", "list").stdout


def test_a_path_tree_is_configured_out_of_tree_and_stays_clean(tmp_path):
    """A user's tree (here: the unpacked Debian source, used as path:) is never written to."""
    from harness.events import EventBus
    from harness.kernels import trees

    tree = trees.debian_source("6.12", EventBus()).tree
    before = sorted(p.name for p in tree.iterdir())
    p = kharness("kernel", "build", "--source", f"path:{tree}", "--config",
                 "kconfig/base.config", "--config", "tests/kconfig/throttle-without-blkcg.config")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "CONFIG_BLK_DEV_THROTTLING=y" in p.stderr and "BLK_CGROUP" in p.stderr
    assert sorted(p.name for p in tree.iterdir()) == before
    assert not (tree / ".config").exists() and not (tree / "include" / "config").exists()


def test_the_v1_build_has_v1_memcg_and_a_second_build_is_a_cache_hit(v612_v1):
    start = time.monotonic()
    p = kharness("kernel", "build", "--source", "debian:6.12", *V1, "--name", "v612-v1")
    took = time.monotonic() - start
    assert p.returncode == 0, p.stderr
    assert "cache hit" in p.stderr
    assert took < 60, f"a cache hit took {took:.0f}s"
    listing = kharness("kernel", "list").stdout
    row = next(line for line in listing.splitlines() if line.startswith("build:v612-v1 "))
    header = listing.splitlines()[0].split()
    flags = dict(zip(header, row.split()))
    assert flags["MEMCG"] == "y" and flags["MEMCG_V1"] == "y" and flags["CGROUP_RDMA"] == "y"
    from harness.kernels.cache import builds_root

    key = json.loads((builds_root() / "names" / "v612-v1.json").read_text())["key"]
    meta = json.loads((builds_root() / key / "build.json").read_text())
    assert meta["reproducer"] == ("kharness kernel build --source debian:6.12 --config "
                                  "kconfig/base.config --config kconfig/cgroups.config --config "
                                  "kconfig/cgroup-v1.config --name v612-v1")
    assert meta["dropped"] == [] and meta["absent"] == []
    assert meta["source_identity"].startswith("linux-source-6.12 6.12.")


def test_the_catalogue_on_v1_passes_on_the_built_612_with_its_v1_memory(v612_v1, tmp_path):
    """The acceptance run: the v1 memory scenarios run on 6.12 (Debian's 6.12 skips them)."""
    out = tmp_path / "r"
    p = kharness("run", "scenarios/", "--kernel", v612_v1, "--hierarchy", "v1", "--results",
                 str(out), timeout=1800)
    results = lines(out)
    bad = [f"{r['scenario']}: {r['status']} {r['reason']} "
           f"{[c for c in r['checks'] if not c['passed'] and not c['skipped_reason']]}"
           for r in results if r["status"] not in ("pass", "skip")]
    assert not bad, "\n".join(bad)
    assert p.returncode == 0, p.stderr[-3000:]
    memory = [r for r in results if r["scenario"].startswith("memory/")
              and "applies to v2 only" not in (r["reason"] or "")]
    assert len(memory) >= 6  # limit-hits, peak, oom-kill, under-limit, memsw, swappiness
    assert all(r["status"] == "pass" for r in memory), [
        (r["scenario"], r["status"], r["reason"]) for r in memory if r["status"] != "pass"]
    assert all(r["kernel_spec"] == v612_v1 for r in results)
    run = json.loads((out / "run.json").read_text())
    assert run["kernels"][0]["flags"]["MEMCG_V1"] == "y"


def test_gdb_capture_and_the_kernels_gdb_scripts_on_the_debug_build(v612_debug, tmp_path):
    before = gdb_pids()
    p = kharness("backtrace", "try_charge_memcg", "--kernel", v612_debug, "--set",
                 "memory.max=32M", "--workload", "memhog 64", "--capture",
                 "$lx_current().comm", "--gdb-command", "lx-dmesg", "--json",
                 str(tmp_path / "bt.json"), "--results", str(tmp_path / "r"), "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((tmp_path / "bt.json").read_text())
    (bt,) = doc["kernels"][0]["backtraces"]
    names = [f["function"] for f in bt["frames"]]
    assert names[0] == "try_charge_memcg" and bt["frames"][0]["file"] == "mm/memcontrol.c"
    assert "do_anonymous_page" in names and "handle_mm_fault" in names
    assert bt["comm"] == "memhog"
    assert re.match(r'^"memhog"', bt["values"]["$lx_current().comm"]), bt["values"]
    dmesg = bt["outputs"]["lx-dmesg"]
    # the kernel's log as lx-dmesg reads it from the ring buffer: timestamped lines, the boot's
    assert len(re.findall(r"^\[\s*\d+\.\d+\] ", dmesg, re.MULTILINE)) >= 50, dmesg[:500]
    assert "(gdb) lx-dmesg" in p.stdout
    assert not (gdb_pids() - before), "gdb left running"


def test_build_specs_work_for_exec(v612_v1):
    p = kharness("exec", "--kernel", v612_v1, "--hierarchy", "v1", "--", "sh", "-c",
                 "uname -r; cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert p.returncode == 0, p.stderr
    release, limit = p.stdout.split()
    assert release.endswith("-kharness") and int(limit) > 0
