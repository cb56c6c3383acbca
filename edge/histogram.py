"""A fixed-bucket histogram that a hot loop can afford, and the snapshot it exposes.

The Modbus source observes every poll's latency into one of these; the metrics
endpoint reads the snapshot from the source's statistics and exposes it as a
Prometheus histogram, so every poll is counted exactly once whatever the scrape
interval.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

# Seconds: a Modbus poll on a LAN takes milliseconds; one that takes seconds is
# a PLC or a network in trouble.
POLL_LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

# Seconds a poll started after its slot on the poll grid (the poll-cycle jitter):
# a fraction of a millisecond on an idle line PC, tens of milliseconds when the
# event loop is overloaded, a whole interval when polls are skipped.
POLL_LATENESS_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Upper bounds, the count in each bucket (the last one: above every bound), the sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 < q <= 1), interpolated linearly inside its bucket;
        the last bound when it lies above every bound, NaN with no observation."""
        if not 0.0 < q <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {q}")
        total = self.count
        if total == 0:
            return math.nan
        rank = q * total
        running = 0
        lower = 0.0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            if count and running + count >= rank:
                return lower + (bound - lower) * (rank - running) / count
            running += count
            lower = bound
        return self.bounds[-1] if self.bounds else math.nan

    def minus(self, earlier: HistogramSnapshot) -> HistogramSnapshot:
        """The observations made since ``earlier`` (a snapshot of the same histogram)."""
        if earlier.bounds != self.bounds:
            raise ValueError("snapshots of histograms with different bounds")
        counts = tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        return HistogramSnapshot(self.bounds, counts, self.sum - earlier.sum)

    def cumulative(self) -> list[tuple[str, float]]:
        """(``le`` label, observations at or below it), ``+Inf`` last, as Prometheus has it."""
        running = 0
        buckets = []
        for bound, count in zip([*self.bounds, math.inf], self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return buckets


class Histogram:
    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram bounds must increase strictly: {list(bounds)}")
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self._bounds, tuple(self._counts), self._sum)
