"""Read coalescing: the fewest Modbus block reads that cover a set of points.

pymodbus allows one outstanding request per connection, so every round trip
counts. Points of one (unit id, area) are sorted by address and merged
greedily into a block while the block stays within the protocol limit (125
registers, 2000 bits) and the hole between the block and the next point is at
most ``max_gap`` registers or bits (read over and thrown away). For intervals
on a line, greedy left-to-right merging gives the fewest blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.config.plc_maps import Area

__all__ = [
    "BIT_READ_LIMIT",
    "REGISTER_READ_LIMIT",
    "Placement",
    "ReadBlock",
    "ReadPlan",
    "ReadPoint",
    "plan_reads",
]

REGISTER_READ_LIMIT = 125  # Modbus function codes 3 and 4
BIT_READ_LIMIT = 2000  # Modbus function codes 1 and 2

_AREA_ORDER = {
    Area.COIL: 0,
    Area.DISCRETE_INPUT: 1,
    Area.HOLDING_REGISTER: 2,
    Area.INPUT_REGISTER: 3,
}


def read_limit(area: Area) -> int:
    return BIT_READ_LIMIT if area.holds_bits else REGISTER_READ_LIMIT


@dataclass(frozen=True, slots=True)
class ReadPoint:
    """``count`` registers (or bits) from ``address`` that some signal needs."""

    unit_id: int
    area: Area
    address: int
    count: int = 1


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request."""

    unit_id: int
    area: Area
    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count

    def __str__(self) -> str:
        return f"unit {self.unit_id} {self.area.value} {self.address}..{self.end - 1}"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a point's data lands: block index and index inside that block's data."""

    block: int
    index: int


@dataclass(frozen=True, slots=True)
class ReadPlan:
    blocks: tuple[ReadBlock, ...]
    # placements[i] belongs to the i-th point given to plan_reads.
    placements: tuple[Placement, ...]


def plan_reads(points: Sequence[ReadPoint], max_gap: int) -> ReadPlan:
    """Merge ``points`` into the fewest blocks; ``max_gap`` >= 0 registers/bits."""
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    for point in points:
        limit = read_limit(point.area)
        if not 1 <= point.count <= limit:
            raise ValueError(f"{point}: count must be 1..{limit}")
        if point.address < 0 or point.address + point.count > 65536:
            raise ValueError(f"{point}: outside the address space 0..65535")

    order = sorted(
        range(len(points)),
        key=lambda i: (
            points[i].unit_id,
            _AREA_ORDER[points[i].area],
            points[i].address,
            -points[i].count,
        ),
    )
    blocks: list[ReadBlock] = []
    placement_of: dict[int, Placement] = {}
    start = end = 0
    current: tuple[int, Area] | None = None
    members: list[int] = []

    def close_block() -> None:
        if current is None:
            return
        blocks.append(ReadBlock(current[0], current[1], start, end - start))
        for i in members:
            placement_of[i] = Placement(len(blocks) - 1, points[i].address - start)

    for i in order:
        point = points[i]
        key = (point.unit_id, point.area)
        point_end = point.address + point.count
        if (
            key == current
            and point.address - end <= max_gap
            and max(end, point_end) - start <= read_limit(point.area)
        ):
            end = max(end, point_end)
            members.append(i)
            continue
        close_block()
        current, start, end, members = key, point.address, point_end, [i]
    close_block()
    return ReadPlan(
        blocks=tuple(blocks),
        placements=tuple(placement_of[i] for i in range(len(points))),
    )
