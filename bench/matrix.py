#!/usr/bin/env python3
"""Wall time of the whole scenario catalogue on kernels x hierarchies, and time per scenario.

    .venv/bin/python bench/matrix.py [--kernel debian:6.1 --kernel debian:6.12] [--jobs N]

Goal on a 2-core machine: the catalogue x 2 kernels x 2 hierarchies in under 5 minutes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.rundir import load_results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", action="append")
    ap.add_argument("--jobs", type=int)
    ap.add_argument("paths", nargs="*", default=[str(ROOT / "scenarios")])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kharness-bench-") as tmp:
        argv = [sys.executable, "-m", "harness.cli", "run", *args.paths, "--results", tmp, "-q"]
        for k in args.kernel or ["debian:6.1", "debian:6.12"]:
            argv += ["--kernel", k]
        if args.jobs:
            argv += ["--jobs", str(args.jobs)]
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, check=False)
        wall = time.monotonic() - start
        results = load_results(Path(tmp))
    by_status: dict[str, int] = defaultdict(int)
    per: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_status[r.status] += 1
        if r.status != "skip":
            per[r.scenario].append(r.duration)
    print(f"matrix: {len(results)} scenario runs in {wall:.1f}s wall "
          f"({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))}; exit {proc.returncode})")
    print("target: under 300 s for the catalogue x 2 kernels x 2 hierarchies")
    print(f"{'scenario':45} {'runs':>4} {'median s':>9} {'max s':>7}")
    for name, durations in sorted(per.items(), key=lambda kv: -max(kv[1])):
        print(f"{name:45} {len(durations):4d} {statistics.median(durations):9.2f} "
              f"{max(durations):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
