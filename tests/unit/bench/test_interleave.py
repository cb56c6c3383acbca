"""The shared ratio helper of edge bench: interleaved runs, median ratio, spread."""

from __future__ import annotations

import asyncio

import pytest

from edge.bench.interleave import Ratio, interleave, interleave_async


def test_runs_alternate_and_pair_up_in_order() -> None:
    order: list[str] = []
    counter = iter(range(100))

    def baseline() -> float:
        order.append("A")
        return 10.0 + next(counter)

    def subject() -> float:
        order.append("B")
        return 20.0 + next(counter)

    pairs = interleave(baseline, subject, rounds=4)
    # A B, then B A, so neither side always runs first.
    assert order == ["A", "B", "B", "A", "A", "B", "B", "A"]
    assert pairs.baseline == (10.0, 13.0, 14.0, 17.0)
    assert pairs.subject == (21.0, 22.0, 25.0, 26.0)


def test_ratio_is_the_median_of_the_pairs_with_its_spread() -> None:
    values = iter([10.0, 15.0, 10.0, 12.0, 20.0, 26.0])  # A1 B1 B2 A2 A3 B3
    pairs = interleave(lambda: next(values), lambda: next(values), rounds=3)
    ratio = pairs.ratio()
    # pairs: B1/A1 = 15/10, B2/A2 = 10/12, B3/A3 = 26/20
    assert ratio.ratios == pytest.approx((1.5, 10.0 / 12.0, 1.3))
    assert ratio.median == pytest.approx(1.3)
    assert (ratio.low, ratio.high) == pytest.approx((10.0 / 12.0, 1.5))
    # The farthest pair from the median: 1.3 - 0.833 = 0.467 -> 35.9 %.
    assert ratio.spread_percent == pytest.approx(100 * (1.3 - 10.0 / 12.0) / 1.3)
    assert "3 pairs" in str(ratio)


def test_a_measure_picks_the_number_from_a_measurement() -> None:
    pairs = interleave(lambda: {"cpu": 2.0, "rss": 1.0}, lambda: {"cpu": 3.0, "rss": 1.0})
    assert pairs.ratio(lambda m: m["cpu"]).median == pytest.approx(1.5)
    assert pairs.baseline_median(lambda m: m["cpu"]) == 2.0
    assert pairs.subject_median(lambda m: m["cpu"]) == 3.0
    with pytest.raises(TypeError, match="measure="):
        pairs.ratio()


def test_the_async_variant_interleaves_the_same_way() -> None:
    order: list[str] = []

    async def baseline() -> float:
        order.append("A")
        return 2.0

    async def subject() -> float:
        order.append("B")
        return 3.0

    pairs = asyncio.run(interleave_async(baseline, subject, rounds=2))
    assert order == ["A", "B", "B", "A"]
    assert pairs.ratio().median == pytest.approx(1.5)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="rounds"):
        interleave(lambda: 1.0, lambda: 1.0, rounds=0)
    with pytest.raises(ValueError, match="at least one pair"):
        Ratio.of([])


def test_sides_of_different_types_take_a_measure_each() -> None:
    pairs = interleave(lambda: 2.0, lambda: {"s": 5.0}, rounds=1)
    assert pairs.ratio(lambda m: m["s"], baseline_measure=float).median == pytest.approx(2.5)
