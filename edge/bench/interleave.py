"""Ratios that hold on a busy machine: baseline and subject runs interleaved.

On a shared 2-core machine the absolute speed of a run drifts by a factor of
two within minutes. A ratio survives that only when the baseline and the
subject see the same machine, so every ratio benchmark runs them alternately
(A B A B A B), takes one ratio per adjacent pair, and reports the median ratio
with its spread::

    from edge.bench.interleave import interleave

    pairs = interleave(baseline=raw_publish_s, subject=drain_s, rounds=3)
    ratio = pairs.ratio()               # subject / baseline, pair by pair
    print(ratio)                        # 1.31 x (1.27..1.36, +-3.4 %, 3 pairs)
    Figure(..., ratio=ratio.median, ratio_spread_percent=ratio.spread_percent)

A run returns either a number or any measurement object; pass ``measure`` to
say which number of it a ratio is taken of (``pairs.ratio(lambda m: m.cpu)``).
``interleave_async`` is the same for coroutine functions, on the caller's loop.
Which side runs first alternates too (A B, B A, A B, ...), so neither side is
always the one that finds the machine warmed up (caches, CPU frequency).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Pairs", "Ratio", "interleave", "interleave_async"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ratio:
    """The median of per-pair ratios (subject / baseline) and how far they spread."""

    median: float
    low: float
    high: float
    ratios: tuple[float, ...]

    @classmethod
    def of(cls, ratios: Sequence[float]) -> Ratio:
        if not ratios:
            raise ValueError("a ratio needs at least one pair")
        return cls(statistics.median(ratios), min(ratios), max(ratios), tuple(ratios))

    @property
    def spread_percent(self) -> float:
        """The farthest pair from the median, in % of the median (the "+-" figure)."""
        if self.median == 0:
            return 0.0
        return 100.0 * max(self.high - self.median, self.median - self.low) / abs(self.median)

    def __str__(self) -> str:
        return (
            f"{self.median:.3g} x ({self.low:.3g}..{self.high:.3g}, "
            f"+-{self.spread_percent:.1f} %, {len(self.ratios)} pairs)"
        )


def _identity(value: object) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"a run returned {type(value).__name__}: pass measure= to pick a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class Pairs(Generic[T]):
    """What each run returned, in run order: ``baseline[i]`` pairs with ``subject[i]``."""

    baseline: tuple[T, ...]
    subject: tuple[T, ...]

    def ratio(self, measure: Callable[[T], float] = _identity) -> Ratio:
        """subject / baseline of ``measure``, pair by pair; a zero baseline is skipped."""
        ratios = [
            measure(s) / measure(b)
            for b, s in zip(self.baseline, self.subject, strict=True)
            if measure(b) != 0
        ]
        return Ratio.of(ratios)

    def baseline_median(self, measure: Callable[[T], float] = _identity) -> float:
        return statistics.median(measure(b) for b in self.baseline)

    def subject_median(self, measure: Callable[[T], float] = _identity) -> float:
        return statistics.median(measure(s) for s in self.subject)


def _check(rounds: int) -> None:
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")


def interleave(baseline: Callable[[], T], subject: Callable[[], T], *, rounds: int = 3) -> Pairs[T]:
    """Run ``baseline`` and ``subject`` ``rounds`` times each, alternately."""
    _check(rounds)
    base: list[T] = []
    subj: list[T] = []
    for number in range(rounds):
        if number % 2 == 0:
            base.append(baseline())
            subj.append(subject())
        else:
            subj.append(subject())
            base.append(baseline())
    return Pairs(tuple(base), tuple(subj))


async def interleave_async(
    baseline: Callable[[], Awaitable[T]],
    subject: Callable[[], Awaitable[T]],
    *,
    rounds: int = 3,
) -> Pairs[T]:
    """:func:`interleave` for coroutine functions, awaited one at a time."""
    _check(rounds)
    base: list[T] = []
    subj: list[T] = []
    for number in range(rounds):
        if number % 2 == 0:
            base.append(await baseline())
            subj.append(await subject())
        else:
            subj.append(await subject())
            base.append(await baseline())
    return Pairs(tuple(base), tuple(subj))
