#!/usr/bin/env python3
"""Wall time of `kharness selftest`: the whole cgroup selftest set on one kernel, then on both
default kernels in parallel (one machine each), as a user runs it.

    .venv/bin/python bench/selftest.py [--kernel debian:6.1 --kernel debian:6.12] [--runs 1]

Prints the whole command's wall time per run (one kernel, then both at once), next to the
reference: the set took ~58 s per kernel in a hand-made TCG guest, and
kharness should stay within 1.5x of that per kernel with both kernels in parallel. The
selftests are built (and cached) before the first timed run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KHARNESS = [sys.executable, "-m", "harness.cli"]
REFERENCE = 58.0  # seconds per kernel, hand-made guest


def run(kernels: list[str], out: Path) -> tuple[float, dict[str, float], int]:
    args = [a for k in kernels for a in ("--kernel", k)]
    start = time.monotonic()
    proc = subprocess.run([*KHARNESS, "selftest", *args, "--results", str(out), "-q"],
                          cwd=ROOT, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    counts: dict[str, int] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        counts[r["kernel"]] = counts.get(r["kernel"], 0) + 1
    return wall, {k: float(n) for k, n in counts.items()}, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", action="append")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    kernels = args.kernel or ["debian:6.1", "debian:6.12"]
    subprocess.run([*KHARNESS, "selftest", *[a for k in kernels for a in ("--kernel", k)],
                    "--test", "test_core", "-q", "--results",
                    tempfile.mkdtemp(prefix="kh-bench-warm-")], cwd=ROOT, check=False,
                   capture_output=True, stdin=subprocess.DEVNULL)  # build + cache, warm
    for _ in range(args.runs):
        for group in [[k] for k in kernels] + ([kernels] if len(kernels) > 1 else []):
            with tempfile.TemporaryDirectory(prefix="kh-bench-selftest-") as tmp:
                wall, cells, rc = run(group, Path(tmp))
                what = " + ".join(group)
                ratio = wall / REFERENCE
                print(f"{what:32} wall {wall:6.1f}s  ({ratio:.2f}x the {REFERENCE:.0f}s per "
                      f"kernel of a hand-made guest)  results {int(sum(cells.values()))}  "
                      f"exit {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
