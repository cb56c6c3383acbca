"""Read coalescing planner: limits, gaps, units/areas, placements, minimality."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config.plc_maps import Area
from edge.sources.plc.blocks import (
    BIT_READ_LIMIT,
    REGISTER_READ_LIMIT,
    Placement,
    ReadBlock,
    ReadPoint,
    plan_reads,
)

HR, IR, COIL, DI = Area.HOLDING_REGISTER, Area.INPUT_REGISTER, Area.COIL, Area.DISCRETE_INPUT


def hr(address: int, count: int = 1, unit: int = 1) -> ReadPoint:
    return ReadPoint(unit, HR, address, count)


def test_adjacent_points_make_one_block() -> None:
    # 0 (1 reg), 1..2 (uint32), 3 -> registers 0..3 in one read of 4
    plan = plan_reads([hr(0), hr(1, 2), hr(3)], max_gap=0)
    assert plan.blocks == (ReadBlock(1, HR, 0, 4),)
    assert plan.placements == (Placement(0, 0), Placement(0, 1), Placement(0, 3))


def test_gap_up_to_max_gap_is_read_over_beyond_it_splits() -> None:
    # point at 0, next at 9: hole = 9 - 1 = 8 registers
    assert plan_reads([hr(0), hr(9)], max_gap=8).blocks == (ReadBlock(1, HR, 0, 10),)
    assert plan_reads([hr(0), hr(9)], max_gap=7).blocks == (
        ReadBlock(1, HR, 0, 1),
        ReadBlock(1, HR, 9, 1),
    )


def test_register_limit_is_125() -> None:
    # 0 and 123..124 (uint32): block 0..124 = 125 registers, allowed
    assert plan_reads([hr(0), hr(123, 2)], max_gap=200).blocks == (ReadBlock(1, HR, 0, 125),)
    # 0 and 124..125: would be 126 registers -> two reads
    plan = plan_reads([hr(0), hr(124, 2)], max_gap=200)
    assert plan.blocks == (ReadBlock(1, HR, 0, 1), ReadBlock(1, HR, 124, 2))
    assert all(b.count <= REGISTER_READ_LIMIT for b in plan.blocks)


def test_bit_limit_is_2000() -> None:
    points = [ReadPoint(1, COIL, 0), ReadPoint(1, COIL, 1999)]
    assert plan_reads(points, max_gap=5000).blocks == (ReadBlock(1, COIL, 0, 2000),)
    points = [ReadPoint(1, COIL, 0), ReadPoint(1, COIL, 2000)]
    assert len(plan_reads(points, max_gap=5000).blocks) == 2
    assert BIT_READ_LIMIT == 2000


def test_units_and_areas_are_never_merged() -> None:
    points = [
        hr(0, unit=1),
        hr(1, unit=2),
        ReadPoint(1, IR, 1),
        ReadPoint(1, COIL, 0),
        ReadPoint(1, DI, 0),
    ]
    plan = plan_reads(points, max_gap=100)
    assert len(plan.blocks) == 5
    # each point lands at index 0 of its own block
    assert sorted(p.block for p in plan.placements) == [0, 1, 2, 3, 4]
    assert all(p.index == 0 for p in plan.placements)


def test_address_offsets_of_identical_machines() -> None:
    # one map (registers 0..3) at offsets 0, 100, 200 on one unit, max_gap 8:
    # holes of 96 registers are too large -> one block per machine.
    points = [hr(offset + a) for offset in (0, 100, 200) for a in range(4)]
    plan = plan_reads(points, max_gap=8)
    assert plan.blocks == (
        ReadBlock(1, HR, 0, 4),
        ReadBlock(1, HR, 100, 4),
        ReadBlock(1, HR, 200, 4),
    )
    # the machine at offset 100, register 2 -> block 1, index 2
    assert plan.placements[6] == Placement(1, 2)


def test_overlapping_points_share_registers() -> None:
    # two bits of register 5 and a uint32 at 5..6
    plan = plan_reads([hr(5), hr(5), hr(5, 2)], max_gap=0)
    assert plan.blocks == (ReadBlock(1, HR, 5, 2),)
    assert plan.placements == (Placement(0, 0),) * 3


def test_unsorted_input_keeps_placements_in_input_order() -> None:
    plan = plan_reads([hr(50), hr(0), hr(2)], max_gap=1)
    assert plan.blocks == (ReadBlock(1, HR, 0, 3), ReadBlock(1, HR, 50, 1))
    assert plan.placements == (Placement(1, 0), Placement(0, 0), Placement(0, 2))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads([hr(0)], max_gap=-1)
    with pytest.raises(ValueError, match="count"):
        plan_reads([hr(0, 126)], max_gap=0)
    with pytest.raises(ValueError, match="address space"):
        plan_reads([hr(65535, 2)], max_gap=0)
    assert plan_reads([], max_gap=0).blocks == ()


def _fewest_blocks(intervals: list[tuple[int, int]], max_gap: int, limit: int) -> int:
    """Reference: dynamic programme over sorted points, split anywhere allowed."""
    intervals = sorted(intervals, key=lambda iv: (iv[0], -iv[1]))
    n = len(intervals)
    best = [0] + [n + 1] * n  # best[i]: fewest blocks for the first i points
    for i in range(1, n + 1):
        for j in range(i):  # points j..i-1 form one block
            group = intervals[j:i]
            start = group[0][0]
            end = group[0][0] + group[0][1]
            ok = True
            for address, count in group[1:]:
                if address - end > max_gap:
                    ok = False
                    break
                end = max(end, address + count)
            if ok and end - start <= limit:
                best[i] = min(best[i], best[j] + 1)
    return best[n]


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from([1, 2, 4])), min_size=1, max_size=12
    ),
    max_gap=st.integers(0, 30),
)
def test_plan_is_valid_and_minimal(points: list[tuple[int, int]], max_gap: int) -> None:
    read_points = [hr(a, c) for a, c in points]
    plan = plan_reads(read_points, max_gap=max_gap)
    for point, placement in zip(read_points, plan.placements, strict=True):
        block = plan.blocks[placement.block]
        # every point is fully inside its block, at the placement index
        assert block.address + placement.index == point.address
        assert point.address + point.count <= block.end
    assert all(b.count <= REGISTER_READ_LIMIT for b in plan.blocks)
    assert len(plan.blocks) == _fewest_blocks(points, max_gap, REGISTER_READ_LIMIT)
