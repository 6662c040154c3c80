"""`run --shard I/N`: the slices of the matrix, without QEMU (Runner.plan is pure). The real
thing, sharded runs merged and compared with an unsharded one, is in
tests/test_shard_integration.py."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.cli import main
from harness.events import EventBus
from harness.kernels import Kernel
from harness.results import ResultsWriter
from harness.runner import Runner, Shard, scenario_cost, shard_scenarios
from harness.scenario import load_or_raise

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = load_or_raise([ROOT / "scenarios"])
HIERARCHIES = ["v1", "v2"]


def _kernels(tmp_path: Path, releases=("6.1.0-57-amd64", "6.12.117+deb12-amd64")) -> list:
    return [Kernel(spec=f"debian:{r[:4].rstrip('.')}", release=r, vmlinux=tmp_path / "vmlinux",
                   config=None, modules_dir=None) for r in releases]


def _plan(tmp_path: Path, scenarios, kernels, hierarchies=HIERARCHIES):
    """(cells that boot, cells skipped before boot, number of machines) of a run's plan."""
    runner = Runner(scenarios, kernels, hierarchies, ResultsWriter(tmp_path / "r"), EventBus())
    jobs, pre = runner.plan()
    booted = [(c.scenario.name, c.kernel.release, c.hierarchy) for j in jobs for c in j.cells]
    skipped = [(r.scenario, r.kernel, r.hierarchy) for r in pre]
    return booted, skipped, len(jobs)


@pytest.mark.parametrize("text,expected", [("1/1", Shard(1, 1)), ("2/3", Shard(2, 3)),
                                           (" 4/4 ", Shard(4, 4))])
def test_shard_parses(text, expected):
    assert Shard.parse(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "1", "1-2", "a/b", "-1/2", "", "1/2/3"])
def test_bad_shards_are_refused_naming_the_form(text):
    with pytest.raises(ValueError, match=r"expected I/N with 1 <= I <= N"):
        Shard.parse(text)


def test_run_with_a_bad_shard_is_a_usage_error_before_anything_boots(capsys):
    assert main(["run", str(ROOT / "scenarios"), "--shard", "3/2"]) == 2
    err = capsys.readouterr().err
    assert "--shard '3/2'" in err and "1 <= I <= N" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_partition_the_matrix_skips_included(tmp_path, count):
    kernels = _kernels(tmp_path)
    whole_booted, whole_skipped, _ = _plan(tmp_path, CATALOGUE, kernels)
    assert whole_skipped, "the catalogue has cells that need no machine (v2-only on v1...)"
    booted: list = []
    skipped: list = []
    for i in range(1, count + 1):
        part = shard_scenarios(CATALOGUE, HIERARCHIES, Shard(i, count))
        b, s, _ = _plan(tmp_path, part, kernels)
        booted += b
        skipped += s
    assert len(booted) == len(set(booted)) and len(skipped) == len(set(skipped))  # no cell twice
    assert sorted(booted) == sorted(whole_booted)
    assert sorted(skipped) == sorted(whole_skipped)


def test_the_slice_does_not_depend_on_order_or_kernel_releases(tmp_path):
    shuffled = list(CATALOGUE)
    random.Random(7).shuffle(shuffled)
    assert [s.name for s in shuffled] != [s.name for s in CATALOGUE]
    for i in (1, 2, 3):
        part = shard_scenarios(CATALOGUE, HIERARCHIES, Shard(i, 3))
        again = shard_scenarios(shuffled, HIERARCHIES, Shard(i, 3))
        assert sorted(s.name for s in part) == sorted(s.name for s in again)
        assert [s.name for s in again] == [s.name for s in shuffled if s in again]  # as given
        # --hierarchy given in the other order: the same hierarchies, the same slice
        assert part == shard_scenarios(CATALOGUE, ["v2", "v1"], Shard(i, 3))


def test_a_scenario_has_all_its_cells_in_one_shard(tmp_path):
    kernels = _kernels(tmp_path)
    owner: dict[str, int] = {}
    for i in (1, 2, 3):
        part = shard_scenarios(CATALOGUE, HIERARCHIES, Shard(i, 3))
        booted, skipped, _ = _plan(tmp_path, part, kernels)
        for scenario, _, _ in booted + skipped:
            assert owner.setdefault(scenario, i) == i


def test_scenario_costs_come_from_the_file():
    by = {s.name: s for s in CATALOGUE}
    assert scenario_cost(by["pids/max-fork"], HIERARCHIES) == 2 * (10 + 10)  # v1 + v2, one run
    assert scenario_cost(by["pids/max-fork"], ["v2"]) == 20
    assert scenario_cost(by["memory/high-throttle"], ["v1"]) == 0  # v2 only: a skip, no boot
    freeze = by["freezer/freeze-stops-cpu"]  # one run step and 3 s of sleep steps
    assert scenario_cost(freeze, ["v2"]) == 10 + 10 + 30
    reclaim = by["memory/reclaim"]  # v2 only, a boot of its own, 6 run steps
    assert reclaim.machine.fresh_boot
    assert scenario_cost(reclaim, HIERARCHIES) == 10 + 60 + 30


def test_shards_are_balanced_by_estimated_cost():
    def cost(scenarios) -> int:
        return sum(scenario_cost(s, HIERARCHIES) for s in scenarios)

    heaviest = max(cost([s]) for s in CATALOGUE)
    for count in (2, 3, 4, 5, 7):
        parts = [shard_scenarios(CATALOGUE, HIERARCHIES, Shard(i, count))
                 for i in range(1, count + 1)]
        for part in parts:
            assert abs(cost(part) - cost(CATALOGUE) / count) <= heaviest


def test_scenarios_with_a_boot_of_their_own_are_dealt_out_not_cut_together():
    """memory/min-protection, low-protection and reclaim each boot alone (and are the longest):
    with three shards each gets one, although they sort next to each other."""
    fresh = [s for s in CATALOGUE if s.machine.fresh_boot]
    assert {s.name for s in fresh} >= {"memory/min-protection", "memory/low-protection",
                                       "memory/reclaim"}
    owners = {}
    for i in (1, 2, 3):
        for s in shard_scenarios(CATALOGUE, HIERARCHIES, Shard(i, 3)):
            owners[s.name] = i
    assert len({owners[s.name] for s in fresh}) == min(3, len(fresh))


def test_boots_stay_shared_a_machine_is_split_at_most_once_per_cut(tmp_path):
    """Scenarios sharing a machine are neighbours in the order the shards are cut from, so N
    shards boot at most N-1 more machines per kernel x hierarchy than one run does."""
    kernels = _kernels(tmp_path)
    _, _, whole = _plan(tmp_path, CATALOGUE, kernels)
    for count in (2, 3, 4):
        machines = sum(_plan(tmp_path, shard_scenarios(CATALOGUE, HIERARCHIES,
                                                       Shard(i, count)), kernels)[2]
                       for i in range(1, count + 1))
        assert machines <= whole + (count - 1) * len(kernels) * len(HIERARCHIES)


def test_more_shards_than_scenarios_leaves_some_empty_but_loses_none():
    few = [s for s in CATALOGUE if s.name.startswith("pids/")]
    assert len(few) == 2
    parts = [shard_scenarios(few, HIERARCHIES, Shard(i, 5)) for i in range(1, 6)]
    assert sorted(s.name for p in parts for s in p) == sorted(s.name for s in few)
    assert [len(p) for p in parts] == [1, 1, 0, 0, 0]  # an empty shard takes one, in order


def test_only_inapplicable_hierarchies_still_cut_every_scenario_into_one_shard():
    v2_only = [s for s in CATALOGUE if s.hierarchies == ("v2",)]
    assert len(v2_only) >= 2
    parts = [shard_scenarios(v2_only, ["v1"], Shard(i, 2)) for i in (1, 2)]
    assert all(parts) and sorted(s.name for p in parts for s in p) == sorted(
        s.name for s in v2_only)
