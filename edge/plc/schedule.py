"""When a polling source polls: a drift-free grid, and how late each poll starts.

The first poll is due at once (the first values must not wait); from then on a
poll is due every ``interval_s`` on a fixed grid shifted by a random phase
(PLCs started together do not poll in lockstep). A poll that overruns its
slot skips the slots it missed instead of queueing them up. How late a poll
starts after its slot is the poll-cycle jitter, observed into a histogram.

The Modbus source and the benchmark's raw pymodbus baseline share this, so
both poll on the same schedule.
"""

from __future__ import annotations

import math
import random

from edge.histogram import POLL_LATENESS_BUCKETS, Histogram

__all__ = ["PollGrid"]


class PollGrid:
    """The poll slots of one source, in the event loop's clock (``loop.time()``)."""

    __slots__ = ("_phase", "_rng", "due", "interval_s", "lateness", "skipped")

    def __init__(self, interval_s: float, rng: random.Random) -> None:
        if interval_s <= 0:
            raise ValueError(f"poll interval must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._rng = rng
        self.due = 0.0
        self._phase = 0.0
        self.skipped = 0  # slots skipped because a poll overran
        self.lateness = Histogram(POLL_LATENESS_BUCKETS)

    def begin(self, now: float) -> None:
        """Polling starts at ``now``: the first poll is due now, the grid after it is
        shifted by a random part of the interval."""
        self.due = now
        self._phase = self._rng.uniform(0.0, self.interval_s)

    def started(self, now: float) -> None:
        """A poll started at ``now`` for the slot ``due``."""
        self.lateness.observe(max(0.0, now - self.due))

    def advance(self, now: float) -> None:
        """The poll of slot ``due`` finished at ``now``: the next slot on the grid."""
        interval = self.interval_s
        self.due += interval + self._phase
        self._phase = 0.0
        if self.due <= now:
            missed = math.floor((now - self.due) / interval) + 1
            self.skipped += missed
            self.due += missed * interval

    def retry_at(self, due: float) -> None:
        """After a failed poll: the next attempt at ``due`` (the backoff), and the
        grid continues from there."""
        self.due = due
