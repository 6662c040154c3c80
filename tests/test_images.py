"""The guest image pieces that need no QEMU: the cpio writer and module load order."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.images import CpioWriter, ImageError, ModuleIndex


@pytest.mark.skipif(not shutil.which("cpio"), reason="cpio is installed by `kharness setup`")
def test_cpio_is_readable_by_cpio(tmp_path):
    w = CpioWriter()
    w.file("etc/hello", b"hi\n", 0o600)
    w.symlink("bin/sh", "busybox")
    w.dir("root", 0o700)
    data = w.finish()
    assert len(data) % 4 == 0
    listing = subprocess.run(["cpio", "-t", "-v"], input=data, capture_output=True,
                             check=True).stdout.decode()
    names = [line.split()[-1] if "->" not in line else line.split()[-3]
             for line in listing.splitlines()]
    assert names == ["etc", "etc/hello", "bin", "bin/sh", "root"]
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=tmp_path, check=True)
    assert (tmp_path / "etc/hello").read_bytes() == b"hi\n"
    assert (tmp_path / "etc/hello").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "bin/sh").readlink().as_posix() == "busybox"


def test_cpio_is_deterministic():
    def build():
        w = CpioWriter()
        w.file("a/b", b"x")
        w.file("c", b"yz", 0o755)
        return w.finish()

    assert build() == build()


def _index(tmp_path, dep: str, builtin: str = "") -> ModuleIndex:
    (tmp_path / "modules.dep").write_text(dep)
    (tmp_path / "modules.builtin").write_text(builtin)
    return ModuleIndex.load(tmp_path)


def test_load_order_puts_dependencies_first(tmp_path):
    index = _index(tmp_path, (
        "kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko: kernel/drivers/infiniband/core/ib_uverbs.ko"
        " kernel/drivers/infiniband/core/ib_core.ko kernel/net/ipv4/udp_tunnel.ko\n"
        "kernel/drivers/infiniband/core/ib_uverbs.ko: kernel/drivers/infiniband/core/ib_core.ko\n"
        "kernel/drivers/infiniband/core/ib_core.ko:\n"
        "kernel/net/ipv4/udp_tunnel.ko:\n"
        "kernel/crypto/crc32_generic.ko:\n"
    ))
    order = index.load_order(("crc32_generic", "rdma_rxe"), "6.1.0-test", "rdma")
    names = [p.rsplit("/", 1)[1] for p in order]
    assert names[0] == "crc32_generic.ko"
    assert names[-1] == "rdma_rxe.ko"
    assert names.index("ib_core.ko") < names.index("ib_uverbs.ko")
    assert len(names) == len(set(names)) == 5


def test_builtin_modules_are_skipped_and_missing_ones_named(tmp_path):
    index = _index(tmp_path, "kernel/drivers/net/virtio_net.ko:\n",
                   "kernel/drivers/virtio/virtio_pci.ko\n")
    assert index.load_order(("virtio_pci", "virtio_net"), "r", "boot") == [
        "kernel/drivers/net/virtio_net.ko"]
    with pytest.raises(ImageError, match="zram .*group swap.* 6.1.0-x"):
        index.load_order(("zram",), "6.1.0-x", "swap")
