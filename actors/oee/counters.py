"""PLC piece counters: deltas between readings, and the three count roles (OEE.md §5).

Deltas (:func:`counter_delta`, the rule of OEE.md §5)
    ``new >= old`` is ``new - old``; a decrease from the top quarter of the
    counter's range to its bottom quarter is a rollover (``2^bits - old + new``);
    any other decrease is a reset of the PLC counter (delta ``new``). The first
    reading ever is the baseline (delta 0); after a restore the baseline is the
    persisted last reading, so pieces made while the edge was down are counted
    once, at the first reading after the restart.

Plausibility (:func:`machine_step`, what a machine's counters use)
    A machine cannot make more than ``elapsed / ideal_cycle_s`` pieces between
    two readings ``elapsed`` seconds apart. The *allowance* of a reading is
    ``max_rate_factor x (elapsed / ideal_cycle_s + 1)`` pieces (the ``+ 1``: a
    piece may complete just as the poll reads; the factor: slack for an ideal
    cycle time that is somewhat too slow). Then:

    - ``new >= old``: ``new - old`` when it is within the allowance; beyond it
      the delta is *capped*: ``floor(allowance)`` pieces are counted and the
      rest is reported as excess, never counted;
    - ``new < old``, shaped as a rollover (top quarter to bottom quarter) and
      its delta within the allowance: a rollover;
    - ``new < old`` and ``new`` within the allowance ("near 0": no more than the
      machine can have made since the PLC reset its counter): a reset, ``new``
      pieces;
    - any other decrease: the counter is *re-baselined*: 0 pieces, ``new`` is
      the new baseline (a PLC replaced, restarted with another value, a
      register rewritten: no evidence of pieces made).

    The next delta is always taken from ``new``, whatever happened to this one.

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

import math
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


class CounterChange(Enum):
    NORMAL = "normal"
    ROLLOVER = "rollover"
    RESET = "reset"
    REBASELINE = "rebaseline"  # a decrease that is neither a rollover nor a reset: 0 pieces
    CAPPED = "capped"  # an increase beyond the allowance: counted up to it


def counter_delta(old: int, new: int, bits: int) -> tuple[int, CounterChange]:
    """Pieces between two successive readings of an unsigned ``bits``-wide counter."""
    if new >= old:
        return new - old, CounterChange.NORMAL
    span = 1 << bits
    if old >= 0.75 * span and new < 0.25 * span:
        return span - old + new, CounterChange.ROLLOVER
    return new, CounterChange.RESET


def allowance(elapsed_s: float, ideal_cycle_s: float, factor: float) -> float:
    """The most pieces a reading ``elapsed_s`` after the previous one may plausibly add."""
    return factor * (max(elapsed_s, 0.0) / ideal_cycle_s + 1.0)


def machine_step(old: int, new: int, bits: int, limit: float) -> tuple[int, CounterChange, int]:
    """``(counted, change, excess)`` for a reading ``new`` after ``old``, ``limit`` its allowance.

    ``excess`` is the part of a capped increase that is not counted (0 otherwise).
    """
    if new >= old:
        delta = new - old
        if delta <= limit:
            return delta, CounterChange.NORMAL, 0
        counted = math.floor(limit)
        return counted, CounterChange.CAPPED, delta - counted
    span = 1 << bits
    if old >= 0.75 * span and new < 0.25 * span and span - old + new <= limit:
        return span - old + new, CounterChange.ROLLOVER, 0
    if new <= limit:
        return new, CounterChange.RESET, 0
    return 0, CounterChange.REBASELINE, 0


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
