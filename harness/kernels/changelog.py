"""What changed between two Debian kernel packages: their changelog.Debian.gz.

Every `linux-image-*-unsigned` ships `usr/share/doc/<package>/changelog.Debian.gz` (kept in the
cache entry's `root/`). The newer package's changelog holds the older's entries too, so the
entries between two releases of one series are those of the newer changelog whose version is
above the older package's and at most the newer's. Each entry lists the upstream stable
releases it takes (`ChangeLog-6.1.183`) and their commits as `- subsystem: title` items, and
Debian's own changes. `items()` gives them in order; `relevant()` the ones a cgroup or memory
bug hunter reads first (mm, memcg, cgroup, sched, blk-throttle, swap, OOM...).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

_ENTRY = re.compile(r"^(?P<source>[a-z0-9][a-z0-9+.-]*) \((?P<version>[^)]+)\) ", re.MULTILINE)
_STABLE = re.compile(r"ChangeLog-(\d+\.\d+\.\d+)")
# subsystems (the first part of an item's "subsystem/part: title") a cgroup or memory bug
# hunter reads first
RELEVANT = frozenset({"mm", "memcg", "memcontrol", "cgroup", "cgroups", "cpuset", "sched",
                      "blk-throttle", "blk-cgroup", "blk-iocost", "swap", "zram", "zswap", "oom",
                      "vmscan", "slub", "slab", "hugetlb", "mglru", "psi", "pids", "freezer",
                      "writeback", "shmem", "filemap", "page_alloc", "kernfs"})
_ARCH = re.compile(r"^\[[^\]]+\]\s*")


def version_key(version: str) -> tuple[int, ...]:
    """Debian package versions of the kernel compared as numbers: 6.1.187-1 > 6.1.176-1."""
    return tuple(int(x) for x in re.findall(r"\d+", version))


@dataclass(frozen=True)
class Item:
    version: str  # the Debian package version whose entry lists it
    stable: str | None  # the upstream stable release it came with (6.1.183), if said
    text: str  # "- mm: fix ..." folded into one line, without the dash

    @property
    def subsystem(self) -> str:
        """`mm/vmscan: flush ...` -> `mm/vmscan`; `[x86] mm: Fix ...` -> `mm`."""
        text = _ARCH.sub("", self.text)
        head, colon, _ = text.partition(":")
        return head.strip() if colon and " " not in head.strip() else ""

    @property
    def relevant(self) -> bool:
        first = self.subsystem.split("/", 1)[0].lower()
        return first in RELEVANT


def changelog_of(root: Path) -> Path | None:
    """The changelog.Debian.gz of an unpacked kernel package (a cache entry's `root/`)."""
    found = sorted(root.glob("usr/share/doc/linux-image-*/changelog.Debian.gz"))
    return found[0] if found else None


def entries(text: str) -> list[tuple[str, str]]:
    """(version, body) of every entry, newest first."""
    marks = list(_ENTRY.finditer(text))
    out = []
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        body = text[m.end():nxt.start() if nxt else len(text)]
        out.append((m.group("version"), body))
    return out


def _entry_items(version: str, body: str) -> list[Item]:
    out: list[Item] = []
    stable: str | None = None
    current: list[str] = []
    for line in [*body.splitlines(), ""]:
        s = line.strip()
        starts = s.startswith(("- ", "* ", "-- ", "http")) or not s
        if current and starts:  # the item so far ends here
            out.append(Item(version, stable, " ".join(current)))
            current = []
        m = _STABLE.search(s)
        if m and s.startswith("http"):
            stable = m.group(1)
        elif s.startswith("- "):
            current = [s[2:]]
        elif s.startswith("* "):
            stable = None
        elif current and s:
            current.append(s)
    return out


def items(text: str, after: str, upto: str) -> list[Item]:
    """The `- ...` items of the entries with after < version <= upto, oldest entry first."""
    lo, hi = version_key(after), version_key(upto)
    out: list[Item] = []
    for version, body in reversed(entries(text)):
        if lo < version_key(version) <= hi:
            out += _entry_items(version, body)
    return out


def read(path: Path) -> str:
    with gzip.open(path, "rt", errors="replace") as f:
        return f.read()
