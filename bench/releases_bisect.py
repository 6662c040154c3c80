#!/usr/bin/env python3
"""Wall time of a bisection over packaged releases, as a user runs it. (Not bench/bisect.py:
that name would shadow the standard library's bisect for every script in bench/.)

    .venv/bin/python bench/releases_bisect.py [--good debian:6.1.0-50] [--bad debian:6.1.0-57]
                                     [--scenario tests/scenarios/bisect/flips-at-53.yaml]

Runs `kharness bisect` twice in a fresh results directory: once (kernels the cache lacks are
downloaded, and that counts), then again with the same arguments (every step reused). Prints the wall time, the boots, the time per
step (one boot plus the scenario) and the rerun's. The default range is Debian's 6.1.0-50 ..
6.1.0-57: six releases, so at most five boots (both ends, then the midpoints).
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


def bisect(args: argparse.Namespace, out: Path) -> tuple[float, int]:
    start = time.monotonic()
    proc = subprocess.run([*KHARNESS, "bisect", args.scenario, "--good", args.good, "--bad",
                           args.bad, "--results", str(out), "-q"], cwd=ROOT,
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    return time.monotonic() - start, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--good", default="debian:6.1.0-50")
    ap.add_argument("--bad", default="debian:6.1.0-57")
    ap.add_argument("--scenario", default=str(ROOT / "tests/scenarios/bisect/flips-at-53.yaml"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kh-bench-bisect-") as tmp:
        out = Path(tmp) / "b"
        wall, rc = bisect(args, out)
        doc = json.loads((out / "bisect.json").read_text())
        steps = doc["steps"]
        per_step = [s["seconds"] for s in steps]
        print(f"bisect {Path(args.scenario).name} {args.good}..{args.bad}: "
              f"{len(doc['releases'])} releases, {doc['boots']} boots, wall {wall:.1f}s, "
              f"exit {rc}")
        print(f"  steps: {', '.join(f'{s:.1f}s' for s in per_step)} "
              f"(median {sorted(per_step)[len(per_step) // 2]:.1f}s: one boot + the scenario, "
              "plus a download the first time a release is needed)")
        print(f"  answer: {doc.get('summary', '?')[:160]}")
        again, rc2 = bisect(args, out)
        print(f"  the same bisection again: {again:.1f}s (every step reused), exit {rc2}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
