"""Where kharness keeps what it downloads and builds (never in the git tree)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """`$KHARNESS_CACHE`, default `~/.cache/kharness`; created on first use."""
    env = os.environ.get("KHARNESS_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "kharness"
    root.mkdir(parents=True, exist_ok=True)
    return root
