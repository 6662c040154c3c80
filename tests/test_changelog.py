"""Debian's kernel changelog between two packages (harness/kernels/changelog.py)."""

from __future__ import annotations

import gzip

from harness.kernels import changelog

TEXT = """\
linux (6.1.187-1) bookworm-security; urgency=high

  * New upstream stable update:
    https://www.kernel.org/pub/linux/kernel/v6.x/ChangeLog-6.1.187
    - mm/memcontrol: fix a charge leak when
      the folio is split (CVE-2026-1)
    - net/sched: act_pedit: use NLA_POLICY
    - [x86] mm: Fix check/use ordering
  * [rt] Update to 6.1.187-rt1

 -- Salvatore Bonaccorso <carnil@debian.org>  Sat, 01 Aug 2026 10:00:00 +0200

linux (6.1.180-1) bookworm-security; urgency=high

  * New upstream stable update:
    https://www.kernel.org/pub/linux/kernel/v6.x/ChangeLog-6.1.180
    - cgroup/cpuset: rebind mm mempolicy
    - tipc: fix slab-use-after-free

 -- Ben Hutchings <benh@debian.org>  Sat, 01 Jul 2026 10:00:00 +0200

linux (6.1.176-1) bookworm-security; urgency=high

  * New upstream stable update:
    - sched/fair: older
"""


def test_items_between_two_packages_oldest_first_folded():
    got = changelog.items(TEXT, "6.1.176-1", "6.1.187-1")
    assert [(i.version, i.stable, i.text) for i in got] == [
        ("6.1.180-1", "6.1.180", "cgroup/cpuset: rebind mm mempolicy"),
        ("6.1.180-1", "6.1.180", "tipc: fix slab-use-after-free"),
        ("6.1.187-1", "6.1.187",
         "mm/memcontrol: fix a charge leak when the folio is split (CVE-2026-1)"),
        ("6.1.187-1", "6.1.187", "net/sched: act_pedit: use NLA_POLICY"),
        ("6.1.187-1", "6.1.187", "[x86] mm: Fix check/use ordering"),
    ]
    assert [i.text[:14] for i in got if i.relevant] == [
        "cgroup/cpuset:", "mm/memcontrol:", "[x86] mm: Fix "]
    assert changelog.items(TEXT, "6.1.180-1", "6.1.180-1") == []


def test_the_changelog_of_an_unpacked_package(tmp_path):
    doc = tmp_path / "usr/share/doc/linux-image-6.1.0-53-amd64-unsigned"
    doc.mkdir(parents=True)
    with gzip.open(doc / "changelog.Debian.gz", "wt") as f:
        f.write(TEXT)
    path = changelog.changelog_of(tmp_path)
    assert path is not None and changelog.read(path) == TEXT
    assert changelog.changelog_of(tmp_path / "none") is None
