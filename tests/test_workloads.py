"""Build the guest workload programs and run them for real on the host."""

from __future__ import annotations

import os
import re
import resource
import shutil
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import workloads
from harness.workloads import WorkloadBuildError, build_workloads, sources_digest

EXPECTED = {"memhog", "cpuhog", "forker", "rdma_open"}


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build_workloads(tmp_path_factory.mktemp("workloads"))


def run(argv: list[str | Path], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], check=False, capture_output=True, text=True, timeout=60, **kw
    )


def kv_lines(stdout: str) -> list[dict[str, str]]:
    """Parse `key=value ...` lines; bare tokens (`done`, `ok`) map to ""."""
    out = []
    for line in stdout.splitlines():
        fields: dict[str, str] = {}
        for tok in line.split():
            key, _, value = tok.partition("=")
            fields[key] = value
        out.append(fields)
    return out


def merged(stdout: str) -> dict[str, str]:
    d: dict[str, str] = {}
    for fields in kv_lines(stdout):
        d.update(fields)
    return d


def elf_has_interp(path: Path) -> bool:
    """True if the ELF file has a PT_INTERP program header (i.e. is dynamic)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", f"{path} is not ELF"
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        (phoff,) = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    pt_interp = 3
    for i in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        if p_type == pt_interp:
            return True
    return False


# ----------------------------------------------------------------- build


def test_builds_every_program(bins: dict[str, Path]) -> None:
    assert set(bins) == EXPECTED
    for path in bins.values():
        assert path.is_file() and os.access(path, os.X_OK)


def test_binaries_are_static(bins: dict[str, Path]) -> None:
    for name, path in bins.items():
        assert not elf_has_interp(path), f"{name} has PT_INTERP: not static"
    if shutil.which("readelf"):
        for name, path in bins.items():
            out = run(["readelf", "-l", path]).stdout
            assert "INTERP" not in out, name


def test_build_error_names_program_and_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "rdma_open.c").write_text("int main(void) { return undeclared; }\n")
    monkeypatch.setattr(workloads, "WORKLOADS_DIR", src)
    with pytest.raises(WorkloadBuildError) as info:
        build_workloads(tmp_path / "out")
    err = info.value
    assert err.name == "rdma_open"
    assert err.argv[:3] == ["gcc", "-static", "-Wall"]
    assert "undeclared" in err.stderr
    assert "libibverbs-dev libnl-3-dev libnl-route-3-dev" in str(err)


def test_sources_digest_tracks_sources_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    d1 = sources_digest()
    assert re.fullmatch(r"[0-9a-f]{64}", d1)
    assert sources_digest() == d1
    monkeypatch.setitem(workloads.LINK_FLAGS, "memhog", ["-lm"])
    assert sources_digest() != d1


# ----------------------------------------------------------------- memhog


def test_memhog_reports_every_step(bins: dict[str, Path]) -> None:
    r = run([bins["memhog"], "8"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:-1] == [f"reached_mib={i}" for i in range(1, 9)]
    assert lines[-1] == "done mib=8"


def test_memhog_rereads_every_page(bins: dict[str, Path]) -> None:
    r = run([bins["memhog"], "-r", "2", "-s", "2", "4"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-3:] == ["done mib=4", "reread pass=1", "reread pass=2"]


def test_memhog_fill_and_step(bins: dict[str, Path]) -> None:
    r = run([bins["memhog"], "-f", "-s", "3", "-t", "0.1", "8"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "reached_mib=3",
        "reached_mib=6",
        "reached_mib=8",
        "done mib=8",
    ]


def test_memhog_maps_a_file_and_reads_every_page(bins: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"\1" * (6 << 20))
    r = run([bins["memhog"], "-m", str(data), "-R", "-L", "-s", "2", "-r", "1", "6"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["reached_mib=2", "reached_mib=4", "reached_mib=6",
                                     "done mib=6", "reread pass=1"]


def test_memhog_file_shorter_than_asked_is_an_error(bins: dict[str, Path],
                                                    tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"\1" * (1 << 20))
    r = run([bins["memhog"], "-m", str(data), "2"])
    assert (r.returncode, r.stdout) == (1, "error=EINVAL at_mib=0\n")
    r = run([bins["memhog"], "-m", str(tmp_path / "absent"), "2"])
    assert (r.returncode, r.stdout) == (1, "error=ENOENT at_mib=0\n")


@pytest.mark.parametrize(
    "args", [[], ["x"], ["-1"], ["1", "2"], ["-s", "0", "4"], ["-t", "-1", "4"], ["-q", "4"],
             ["-R", "4"], ["-L", "4"]]
)
def test_memhog_usage_errors(bins: dict[str, Path], args: list[str]) -> None:
    r = run([bins["memhog"], *args])
    assert r.returncode == 2
    assert "usage: memhog" in r.stderr
    assert r.stdout == ""


def test_memhog_mmap_failure_reports_errno(bins: dict[str, Path]) -> None:
    # RLIMIT_AS is enforced even for root, unlike RLIMIT_NPROC.
    limit = 64 << 20

    def cap_as() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    r = run([bins["memhog"], "-s", "4", "256"], preexec_fn=cap_as)
    assert r.returncode == 1, r.stdout
    last = kv_lines(r.stdout)[-1]
    assert last["error"] == "ENOMEM"
    at = int(last["at_mib"])
    assert 0 < at < 64
    assert f"reached_mib={at}" in r.stdout.splitlines()


# ----------------------------------------------------------------- cpuhog


def test_cpuhog_burns_cpu(bins: dict[str, Path]) -> None:
    r = run([bins["cpuhog"], "0.3"])
    assert r.returncode == 0, r.stderr
    d = merged(r.stdout)
    assert float(d["wall_s"]) >= 0.3
    assert float(d["cpu_s"]) > 0.2
    assert int(d["loops"]) > 0
    assert d["threads"] == "1"


def test_cpuhog_forked_workers(bins: dict[str, Path]) -> None:
    r = run([bins["cpuhog"], "-n", "2", "0.3"])
    assert r.returncode == 0, r.stderr
    d = merged(r.stdout)
    # children's time comes from RUSAGE_CHILDREN; host may have only one free CPU
    assert float(d["cpu_s"]) > 0.2
    assert d["threads"] == "2" and d["workers_failed"] == "0"


@pytest.mark.parametrize("args", [[], ["abc"], ["-1"], ["nan"], ["-n", "0", "1"], ["1", "2"]])
def test_cpuhog_usage_errors(bins: dict[str, Path], args: list[str]) -> None:
    r = run([bins["cpuhog"], *args])
    assert r.returncode == 2
    assert "usage: cpuhog" in r.stderr


# ----------------------------------------------------------------- forker


def test_forker_all_succeed(bins: dict[str, Path]) -> None:
    r = run([bins["forker"], "-t", "0.2", "3"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["forked=3 failed=0 first_errno=none", "reaped=3"]


@pytest.mark.parametrize("args", [[], ["x"], ["-t", "x", "3"], ["3", "4"]])
def test_forker_usage_errors(bins: dict[str, Path], args: list[str]) -> None:
    r = run([bins["forker"], *args])
    assert r.returncode == 2
    assert "usage: forker" in r.stderr


def _cgroup_parent(controller: str) -> Path | None:
    """Where a child cgroup with ``controller`` can be made, without changing the host.

    cgroup v2 at /sys/fs/cgroup if the controller is already enabled for the root's
    children, else a v1 hierarchy at /sys/fs/cgroup/<controller>.
    """
    root = Path("/sys/fs/cgroup")
    subtree = root / "cgroup.subtree_control"
    if subtree.exists() and controller in subtree.read_text().split():
        return root
    v1 = root / controller
    if (v1 / "cgroup.procs").exists():
        return v1
    return None


@pytest.fixture
def make_cgroup() -> Iterator[Callable[[str], Path]]:
    """Factory: a fresh child cgroup with the given controller, removed afterwards."""
    made: list[Path] = []

    def make(controller: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip(f"needs root to create a {controller} cgroup")
        parent = _cgroup_parent(controller)
        if parent is None:
            pytest.skip(
                f"no {controller} cgroup (v2 root with +{controller} in "
                f"cgroup.subtree_control, or v1 at /sys/fs/cgroup/{controller})"
            )
        cg = parent / f"kharness-test-{uuid.uuid4().hex[:8]}"
        try:
            cg.mkdir()
        except OSError as exc:
            pytest.skip(f"cannot create {controller} cgroup under {parent}: {exc}")
        made.append(cg)
        return cg

    yield make
    for cg in made:
        for _ in range(50):  # killed/reaped tasks may linger for a moment
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def run_in_cgroup(cg: Path, argv: list[str | Path]) -> subprocess.CompletedProcess[str]:
    """Run argv as a member of cgroup ``cg`` (the shell joins it, then execs)."""
    join = 'echo $$ > "$1" && shift && exec "$@"'
    return run(["sh", "-c", join, "sh", cg / "cgroup.procs", *argv])


def test_forker_hits_pids_limit(bins: dict[str, Path], make_cgroup: Callable[[str], Path]) -> None:
    cg = make_cgroup("pids")
    (cg / "pids.max").write_text("4")  # forker itself plus 3 children
    r = run_in_cgroup(cg, [bins["forker"], "-t", "0.5", "10"])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout.splitlines() == ["forked=3 failed=7 first_errno=EAGAIN", "reaped=3"]


def test_memhog_oom_kill_keeps_progress(
    bins: dict[str, Path], make_cgroup: Callable[[str], Path]
) -> None:
    """stdout is a pipe (fully buffered) here: only the per-line fflush saves progress."""
    cg = make_cgroup("memory")
    limit = cg / ("memory.max" if (cg / "memory.max").exists() else "memory.limit_in_bytes")
    limit.write_text(str(32 << 20))
    swap = cg / "memory.swap.max"
    if swap.exists():
        swap.write_text("0")
    r = run_in_cgroup(cg, [bins["memhog"], "256"])
    assert r.returncode == -9, (r.returncode, r.stdout[-200:])
    lines = r.stdout.splitlines()
    assert lines, "nothing printed before the OOM kill"
    assert not any(line.startswith("done") for line in lines)
    reached = int(kv_lines(r.stdout)[-1]["reached_mib"])
    assert 0 < reached < 32
    assert lines == [f"reached_mib={i}" for i in range(1, reached + 1)]


# ----------------------------------------------------------------- rdma_open


def _host_has_rdma() -> bool:
    ib = Path("/sys/class/infiniband")
    return ib.is_dir() and any(ib.iterdir())


def test_rdma_open_without_device(bins: dict[str, Path]) -> None:
    r = run([bins["rdma_open"], "-c", "1", "-p", "1"])
    if _host_has_rdma():
        assert r.returncode in (0, 1), r.stderr
        assert "contexts_ok=" in r.stdout or "error=" in r.stdout
        return
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout.splitlines() == ["error=ENODEV no rdma device"]


def test_rdma_open_unknown_device(bins: dict[str, Path]) -> None:
    r = run([bins["rdma_open"], "-d", "nosuchdev0"])
    assert r.returncode == 1
    assert merged(r.stdout)["error"] == "ENODEV"


@pytest.mark.parametrize("args", [["-c", "x"], ["-p", "-1"], ["-t", "x"], ["extra"], ["-z"]])
def test_rdma_open_usage_errors(bins: dict[str, Path], args: list[str]) -> None:
    r = run([bins["rdma_open"], *args])
    assert r.returncode == 2
    assert "usage: rdma_open" in r.stderr
