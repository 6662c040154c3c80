"""`kharness report` end to end: a real run of two memory scenarios on both default kernels and
both hierarchies, its HTML report, and headless Chromium proving the page renders (the DOM has
the matrix and an SVG plot, the screenshot is not blank).

Chromium is installed when missing (Debian's `chromium`, as root: harness.hostcmd, the same
TEST_PACKAGES `kharness setup --debug` installs). Like the other integration tests this fails
(not skips) when the set-up is missing, unless KHARNESS_SKIP_INTEGRATION=1.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from test_run_integration import REPO, kharness

from harness import hostcmd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("KHARNESS_SKIP_INTEGRATION") == "1",
                       reason="KHARNESS_SKIP_INTEGRATION=1"),
]

SCENARIOS = [REPO / "scenarios" / "memory" / "peak.yaml",
             REPO / "scenarios" / "memory" / "oom-kill.yaml"]
WINDOW = (1400, 2000)


@pytest.fixture(scope="module")
def chromium() -> str:
    missing = hostcmd.missing_host_packages(hostcmd.TEST_PACKAGES)
    if missing:
        hostcmd.apt_install(missing)  # HostCommandError (not root...) fails the test, says why
    path = shutil.which("chromium")
    assert path, f"chromium not found after installing {missing}"
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "r1"
    proc = kharness("run", *map(str, SCENARIOS), "--kernel", "debian:6.1", "--kernel",
                    "debian:6.12", "--results", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    return out


def browser(chromium: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL, check=False)


def png_pixels(path: Path) -> tuple[int, int, set[bytes]]:
    """Width, height and the distinct colours of an 8-bit RGB/RGBA, non-interlaced PNG (what
    Chromium writes), decoded with zlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header, f"{path}: no IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        if y % 4 == 0:  # every 4th row is plenty to tell a blank page
            colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 2))
        prev = line
    return width, height, colours


def test_report_of_a_real_run_marks_the_differences_and_renders(run_dir, chromium, tmp_path):
    proc = kharness("report", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    page = run_dir / "report.html"
    assert f"wrote {page}" in proc.stderr

    # the model: v1 memcg missing on 6.12, memory.swap.peak missing on 6.1
    proc = kharness("report", str(run_dir), "--format", "json", "--out", "-")
    assert proc.returncode == 0, proc.stderr
    model = json.loads(proc.stdout)
    rows = {r["scenario"]: r for r in model["rows"]}
    assert set(rows) == {"memory/peak", "memory/oom-kill"}
    for name, r in rows.items():
        assert r["axes"] == ["v1/v2", "kernels"], name
        (skip,) = [c for label, c in r["cells"].items() if label.startswith("6.12")
                   and label.endswith(" v1")]
        assert skip["status"] == "skip" and "CONFIG_MEMCG_V1" in skip["reason"]
        assert any(d["kind"] == "outcome" and d["axis"] == "kernel"
                   and "CONFIG_MEMCG_V1" in " ".join(d["config"]) for d in r["differences"])
    (swap_peak,) = [d for d in rows["memory/peak"]["differences"]
                    if d["kind"] == "check" and "swap_peak" in d["subject"]]
    assert (swap_peak["axis"], swap_peak["scope"]) == ("kernel", "v2")
    on_61 = next(v for label, v in swap_peak["values"].items() if label.startswith("6.1."))
    on_612 = next(v for label, v in swap_peak["values"].items() if label.startswith("6.12"))
    assert on_61.startswith("skip (") and "memory.swap.peak" in on_61
    assert on_612.startswith("pass")
    ran = [c for c in rows["memory/oom-kill"]["cells"].values() if c["status"] == "pass"]
    assert len(ran) == 3
    assert all(c["limits"] == {"hog": {"memory.max": 32 << 20}} and c["samples"]["hog"]
               for c in ran)

    # the page: a self-contained file, one plot per cell that ran, the limit drawn in
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert text.count("<svg") == 6 and "memory.max hog 32M" in text
    assert 'href="machines/' in text

    dom = browser(chromium, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="matrix">' in dom.stdout and "<svg" in dom.stdout
    assert dom.stdout.count('<tr class="differs">') == 2  # both rows marked

    shot = tmp_path / "report.png"
    proc = browser(chromium, f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                   page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    width, height, colours = png_pixels(shot)
    assert (width, height) == WINDOW
    assert len(colours) > 20, f"the screenshot is (nearly) blank: {len(colours)} colours"
