"""PLC piece counters: deltas between readings, and the three count roles (OEE.md §5).

Deltas
    ``new >= old`` is ``new - old``; a decrease from the top quarter of the
    counter's range to its bottom quarter is a rollover (``2^bits - old + new``);
    any other decrease is a reset of the PLC counter (delta ``new``). The first
    reading ever is the baseline (delta 0); after a restore the baseline is the
    persisted last reading, so pieces made while the edge was down are counted
    once, at the first reading after the restart.

Roles
    ``total_count``, ``good_count``, ``reject_count`` and rejects reported by
    quality stations (``add_rejects``). Every window keeps a :class:`Tally` of
    the *raw* deltas of each role, each also weighted by the ideal cycle time
    in force when the piece was counted, and derives the three reported counts
    only when KPIs are computed, from the roles *seen so far* on the machine
    (a role is "mapped" once one of its samples was applied):

    ============================  ============================================
    roles seen                    reported counts
    ============================  ============================================
    good and reject (any total)   total = good + reject
    total and good                reject = total - good
    total and reject              good = total - reject
    total alone (or none)         reject = quality-station rejects, good = total - reject
    good alone                    reject = quality-station rejects, total = good + reject
    reject alone                  total = reject, good = 0
    ============================  ============================================

    so ``good + reject == total`` always holds. With two counters read at
    slightly different instants a window may show a derived count that is off
    by a piece or two against its neighbour (their sum is exact).
"""

from __future__ import annotations

from enum import Enum

TOTAL = 0
GOOD = 1
REJECT = 2
EXTERNAL_REJECT = 3  # from quality stations via add_rejects
ROLE_INDEX = {"total_count": TOTAL, "good_count": GOOD, "reject_count": REJECT}
ROLE_NAMES = ("total_count", "good_count", "reject_count", "quality_station_reject")

SEEN_TOTAL = 1 << TOTAL
SEEN_GOOD = 1 << GOOD
SEEN_REJECT = 1 << REJECT

# A jump is implausible when it is more than this many times what the machine can
# make at its ideal rate in the elapsed time (and more than a small absolute floor).
IMPLAUSIBLE_FACTOR = 10.0
IMPLAUSIBLE_FLOOR = 1000


class CounterChange(Enum):
    NORMAL = "normal"
    ROLLOVER = "rollover"
    RESET = "reset"


def counter_delta(old: int, new: int, bits: int) -> tuple[int, CounterChange]:
    """Pieces between two successive readings of an unsigned ``bits``-wide counter."""
    if new >= old:
        return new - old, CounterChange.NORMAL
    span = 1 << bits
    if old >= 0.75 * span and new < 0.25 * span:
        return span - old + new, CounterChange.ROLLOVER
    return new, CounterChange.RESET


def is_implausible(delta: int, elapsed_s: float, ideal_cycle_s: float) -> bool:
    """A delta far beyond what the machine can make in ``elapsed_s`` (a warning, still counted)."""
    if delta <= IMPLAUSIBLE_FLOOR:
        return False
    return delta > IMPLAUSIBLE_FACTOR * max(elapsed_s, 0.0) / ideal_cycle_s


class Tally:
    """Raw pieces per role, and the same weighted by the ideal cycle time (seconds)."""

    __slots__ = ("pieces", "weighted")

    def __init__(self) -> None:
        self.pieces = [0, 0, 0, 0]
        self.weighted = [0.0, 0.0, 0.0, 0.0]

    def add(self, role: int, count: int, ideal_cycle_s: float) -> None:
        self.pieces[role] += count
        self.weighted[role] += count * ideal_cycle_s

    def merge(self, other: Tally) -> None:
        mine_p, mine_w = self.pieces, self.weighted
        for index in range(4):
            mine_p[index] += other.pieces[index]
            mine_w[index] += other.weighted[index]

    def copy(self) -> Tally:
        twin = Tally()
        twin.pieces = list(self.pieces)
        twin.weighted = list(self.weighted)
        return twin

    def to_data(self) -> list[float]:
        return [*self.pieces, *self.weighted]

    @classmethod
    def from_data(cls, data: list[float]) -> Tally:
        tally = cls()
        tally.pieces = [int(v) for v in data[:4]]
        tally.weighted = [float(v) for v in data[4:8]]
        return tally


def derive_counts(tally: Tally, roles_seen: int) -> tuple[int, int, int, float]:
    """``(total, good, reject, ideal_seconds)`` from a tally and the roles seen (see above)."""
    p, w = tally.pieces, tally.weighted
    if roles_seen & SEEN_GOOD and roles_seen & SEEN_REJECT:
        return p[GOOD] + p[REJECT], p[GOOD], p[REJECT], w[GOOD] + w[REJECT]
    if roles_seen & SEEN_TOTAL:
        if roles_seen & SEEN_GOOD:
            return p[TOTAL], p[GOOD], p[TOTAL] - p[GOOD], w[TOTAL]
        if roles_seen & SEEN_REJECT:
            return p[TOTAL], p[TOTAL] - p[REJECT], p[REJECT], w[TOTAL]
        return p[TOTAL], p[TOTAL] - p[EXTERNAL_REJECT], p[EXTERNAL_REJECT], w[TOTAL]
    if roles_seen & SEEN_GOOD:
        rejects = p[EXTERNAL_REJECT]
        return p[GOOD] + rejects, p[GOOD], rejects, w[GOOD] + w[EXTERNAL_REJECT]
    if roles_seen & SEEN_REJECT:
        return p[REJECT], 0, p[REJECT], w[REJECT]
    return p[TOTAL], p[TOTAL] - p[EXTERNAL_REJECT], p[EXTERNAL_REJECT], w[TOTAL]
