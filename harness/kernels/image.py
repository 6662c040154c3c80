"""What is inside a kernel's files: the ELF vmlinux in a bzImage, the release string, the
embedded config, a .config's values, DWARF and build IDs (readelf). The bottom floor of
`harness.kernels`: it imports nothing of the package, every source uses it."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import re
import struct
import subprocess
from pathlib import Path

from .. import hostcmd


def read_config(path: Path) -> dict[str, str]:
    """A kernel .config as {CONFIG_X: value}; `# CONFIG_X is not set` gives 'n'."""
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("CONFIG_"):
            key, _, val = line.partition("=")
            values[key] = val.strip('"')
        else:
            m = re.match(r"# (CONFIG_\w+) is not set", line)
            if m:
                values[m.group(1)] = "n"
    return values


# --- bzImage -> ELF vmlinux, release string, embedded config ----------------------------------

def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage, found through the boot header's payload fields."""
    if bzimage[:4] == b"\x7fELF":
        return bzimage
    if bzimage[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS boot header) and not an ELF vmlinux")
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start:start + payload_length]
    if payload[:6] == b"\xfd7zXZ\x00":
        out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload[:4] == b"\x28\xb5\x2f\xfd":
        # The kernel appends the decompressed size (4 bytes) after the zstd frame.
        out = _pipe(["zstd", "-dc"], payload[:-4])
    elif payload[:2] == b"\x1f\x8b":
        out = gzip.GzipFile(fileobj=io.BytesIO(payload)).read()
    elif payload[:4] == b"\x02\x21\x4c\x18":
        out = _pipe(["lz4", "-dc"], payload)
    else:
        raise ValueError(f"unsupported bzImage payload compression (magic {payload[:6].hex()})")
    if out[:4] != b"\x7fELF":
        raise ValueError("the decompressed bzImage payload is not an ELF vmlinux")
    return out


def _pipe(argv: list[str], data: bytes) -> bytes:
    proc = subprocess.run(argv, input=data, capture_output=True, check=False)
    if not proc.stdout:
        raise hostcmd.HostCommandError("decompressing the kernel", argv, proc.returncode,
                                       proc.stderr.decode(errors="replace"))
    return proc.stdout


def release_of(image: bytes) -> str | None:
    """The release (`uname -r`) of a bzImage (boot header) or an ELF vmlinux (banner)."""
    if image[0x202:0x206] == b"HdrS":
        ptr = struct.unpack_from("<H", image, 0x20E)[0]
        if ptr:
            raw = image[ptr + 0x200:ptr + 0x200 + 256]
            return raw.split(b" ", 1)[0].decode(errors="replace") or None
    m = re.search(rb"Linux version (\S+) \(", image)
    return m.group(1).decode(errors="replace") if m else None


def extract_ikconfig(vmlinux: bytes) -> str | None:
    """The config embedded by CONFIG_IKCONFIG, as scripts/extract-ikconfig finds it."""
    start = vmlinux.find(b"IKCFG_ST")
    if start < 0:
        return None
    end = vmlinux.find(b"IKCFG_ED", start)
    try:
        return gzip.decompress(vmlinux[start + 8:end]).decode(errors="replace")
    except OSError:
        return None


# --- ELF: DWARF, build IDs --------------------------------------------------------------------

def has_debug_info(path: Path) -> bool:
    """Is `path` an ELF file with a .debug_info section (`readelf -S`)?"""
    cached = _debug_info_cache.get(path)
    try:
        st = path.stat()
    except OSError:
        return False
    key = (st.st_size, st.st_mtime_ns)
    if cached and cached[0] == key:
        return cached[1]
    with path.open("rb") as f:
        is_elf = f.read(4) == b"\x7fELF"
    answer = False
    if is_elf:
        proc = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True,
                              check=False, stdin=subprocess.DEVNULL)
        answer = proc.returncode == 0 and re.search(r"\s\.debug_info\s", proc.stdout) is not None
    _debug_info_cache[path] = (key, answer)
    return answer


_debug_info_cache: dict[Path, tuple[tuple[int, int], bool]] = {}


def build_id(path: Path) -> str | None:
    """The GNU build ID of an ELF file (`readelf -n`), None when it has none."""
    proc = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    m = re.search(r"Build ID: ([0-9a-f]+)", proc.stdout)
    return m.group(1) if m else None


# --- files ------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def disk_usage(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total
