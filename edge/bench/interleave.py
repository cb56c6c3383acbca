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
say which number of it a ratio is taken of (``pairs.ratio(lambda m: m.cpu)``),
and ``baseline_measure`` too when the two sides return different types.
``interleave_async`` is the same for coroutine functions, on the caller's loop.
Which side runs first alternates too (A B, B A, A B, ...), so neither side is
always the one that finds the machine warmed up (caches, CPU frequency).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

__all__ = ["Pairs", "Ratio", "interleave", "interleave_async"]

B = TypeVar("B")  # what a baseline run returns
S = TypeVar("S")  # what a subject run returns


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
class Pairs(Generic[B, S]):
    """What each run returned, in run order: ``baseline[i]`` pairs with ``subject[i]``."""

    baseline: tuple[B, ...]
    subject: tuple[S, ...]

    def ratio(
        self,
        measure: Callable[[S], float] = _identity,
        baseline_measure: Callable[[B], float] | None = None,
    ) -> Ratio:
        """subject / baseline of ``measure`` (of ``baseline_measure`` on the baseline
        side when given), pair by pair; a pair with a zero baseline is skipped."""
        of_baseline = baseline_measure or cast(Callable[[B], float], measure)
        ratios = [
            measure(s) / of_baseline(b)
            for b, s in zip(self.baseline, self.subject, strict=True)
            if of_baseline(b) != 0
        ]
        return Ratio.of(ratios)

    def baseline_median(self, measure: Callable[[B], float] = _identity) -> float:
        return statistics.median(measure(b) for b in self.baseline)

    def subject_median(self, measure: Callable[[S], float] = _identity) -> float:
        return statistics.median(measure(s) for s in self.subject)


def _check(rounds: int) -> None:
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")


def interleave(
    baseline: Callable[[], B], subject: Callable[[], S], *, rounds: int = 3
) -> Pairs[B, S]:
    """Run ``baseline`` and ``subject`` ``rounds`` times each, alternately."""
    _check(rounds)
    base: list[B] = []
    subj: list[S] = []
    for number in range(rounds):
        if number % 2 == 0:
            base.append(baseline())
            subj.append(subject())
        else:
            subj.append(subject())
            base.append(baseline())
    return Pairs(tuple(base), tuple(subj))


async def interleave_async(
    baseline: Callable[[], Awaitable[B]],
    subject: Callable[[], Awaitable[S]],
    *,
    rounds: int = 3,
) -> Pairs[B, S]:
    """:func:`interleave` for coroutine functions, awaited one at a time."""
    _check(rounds)
    base: list[B] = []
    subj: list[S] = []
    for number in range(rounds):
        if number % 2 == 0:
            base.append(await baseline())
            subj.append(await subject())
        else:
            subj.append(await subject())
            base.append(await baseline())
    return Pairs(tuple(base), tuple(subj))
