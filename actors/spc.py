"""Statistical process control: Shewhart charts, run rules and capability (numpy, pure).

Charts
======

Individuals and moving range (I-MR), for one measurement per piece
(``subgroup_size = 1``); the moving range is ``|x[i] - x[i-1]|`` (span 2)::

    X chart:   CL = mean(x)       UCL/LCL = CL +/- 3 * MRbar / d2      (d2 = 1.128 for n = 2)
    MR chart:  CL = MRbar         UCL = D4 * MRbar  (D4 = 3.267)       LCL = D3 * MRbar = 0

X-bar and range (X̄-R), for subgroups of ``n`` consecutive measurements (2..10)::

    X̄ chart:   CL = mean of the subgroup means (X̿)    UCL/LCL = X̿ +/- A2 * Rbar
    R chart:   CL = Rbar                              UCL = D4 * Rbar, LCL = D3 * Rbar

The sigma the run rules use is the sigma of the plotted statistic, so that
"3 sigma" is exactly the control limit: ``MRbar / d2`` for individuals and
``A2 * Rbar / 3`` (= ``Rbar / (d2 * sqrt(n))``) for subgroup means.

Constants
=========

``d2`` (mean of the relative range W = R/sigma of n normal values), ``A2 = 3 /
(d2 * sqrt(n))``, ``D3 = max(0, 1 - 3 * d3 / d2)``, ``D4 = 1 + 3 * d3 / d2``,
as tabulated in ASTM E2587 "Standard Practice for Use of Control Charts in
Statistical Process Control" (Table 1, after ASTM STP 15D) and in D. C.
Montgomery, *Introduction to Statistical Quality Control*, Appendix Table VI.
They are written out in :data:`CONSTANTS` to the three decimals those tables
give; the limits therefore match a hand calculation from the printed tables.

Limits come from a configured baseline (centre and average range known from
earlier studies) or from a warm-up window: the first ``warmup`` points (I-MR)
or subgroups (X̄-R) of the series. Once set, limits stay frozen (Phase II
monitoring) until the configuration changes.

Run rules (L. S. Nelson, "The Shewhart Control Chart — Tests for Special
Causes", Journal of Quality Technology 16(4), 1984; rules 1, 5, 6 and 8 are
the Western Electric zone rules, 1956), on the X or X̄ chart::

    1  one point beyond 3 sigma from the centre line
    2  nine points in a row on the same side of the centre line
    3  six points in a row steadily increasing or decreasing
    4  fourteen points in a row alternating up and down
    5  two out of three points in a row beyond 2 sigma, same side
    6  four out of five points in a row beyond 1 sigma, same side
    7  fifteen points in a row within 1 sigma (either side)
    8  eight points in a row beyond 1 sigma (either side)

A rule "hits" at the point that completes its pattern. A point exactly on the
centre line breaks a run of rule 2; equal neighbours break a trend (rule 3)
and an alternation (rule 4). For rules 5 and 6 the completing point is itself
one of the points beyond the zone, and the first points of a series count as a
window of the points there are (two beyond 2 sigma as the first two hit rule 5).
The range chart (MR or R) is checked with rule 1 against its own limits.

Capability
==========

``Cp = (USL - LSL) / (6 sigma)``, ``Cpk = min(USL - mean, mean - LSL) / (3 sigma)``
with the within-subgroup sigma ``Rbar / d2`` (``MRbar / 1.128`` for
individuals) — the short-term sigma the control chart uses. With only one
specification limit ``Cp`` is ``None`` and ``Cpk`` is the one-sided index.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "CONSTANTS",
    "Capability",
    "Chart",
    "ChartConstants",
    "Limits",
    "Point",
    "RuleHit",
    "capability",
    "capability_of",
    "imr_limits",
    "imr_limits_from_baseline",
    "moving_ranges",
    "rule_hits",
    "xbar_r_limits",
    "xbar_r_limits_from_baseline",
]


@dataclass(frozen=True, slots=True)
class ChartConstants:
    """Control chart constants for subgroups (or moving-range spans) of size ``n``."""

    n: int
    d2: float
    A2: float  # upper-case as in every SPC table
    D3: float
    D4: float


# ASTM E2587 Table 1 / Montgomery Appendix VI (three decimals, as printed).
CONSTANTS: dict[int, ChartConstants] = {
    c.n: c
    for c in (
        ChartConstants(2, d2=1.128, A2=1.880, D3=0.0, D4=3.267),
        ChartConstants(3, d2=1.693, A2=1.023, D3=0.0, D4=2.574),
        ChartConstants(4, d2=2.059, A2=0.729, D3=0.0, D4=2.282),
        ChartConstants(5, d2=2.326, A2=0.577, D3=0.0, D4=2.114),
        ChartConstants(6, d2=2.534, A2=0.483, D3=0.0, D4=2.004),
        ChartConstants(7, d2=2.704, A2=0.419, D3=0.076, D4=1.924),
        ChartConstants(8, d2=2.847, A2=0.373, D3=0.136, D4=1.864),
        ChartConstants(9, d2=2.970, A2=0.337, D3=0.184, D4=1.816),
        ChartConstants(10, d2=3.078, A2=0.308, D3=0.223, D4=1.777),
    )
}
MAX_SUBGROUP = max(CONSTANTS)
ALL_RULES = (1, 2, 3, 4, 5, 6, 7, 8)
DEFAULT_RULES = (1, 2, 3, 4)
# The longest pattern (rule 7) spans 15 points: enough history to check any rule.
_RULE_SPAN = 15


# ----------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    """Control limits of one characteristic's chart pair.

    ``center``/``ucl``/``lcl``/``sigma`` belong to the X (or X̄) chart, ``sigma``
    being the sigma of the plotted statistic; ``range_*`` to the MR (or R) chart.
    ``subgroup_size`` is 1 for I-MR. ``source`` is ``"baseline"`` or ``"warmup"``.
    """

    subgroup_size: int
    center: float
    ucl: float
    lcl: float
    sigma: float
    range_center: float
    range_ucl: float
    range_lcl: float
    sigma_within: float  # Rbar / d2: the process sigma used for capability
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def moving_ranges(values: Sequence[float] | FloatArray) -> FloatArray:
    """``|x[i] - x[i-1]|`` for i >= 1 (one fewer than the values)."""
    x = np.asarray(values, dtype=np.float64)
    return np.abs(np.diff(x))


def imr_limits_from_baseline(mean: float, mr_bar: float, *, source: str = "baseline") -> Limits:
    """I-MR limits from a known process mean and average moving range."""
    c = CONSTANTS[2]
    sigma = mr_bar / c.d2
    return Limits(
        subgroup_size=1,
        center=mean,
        ucl=mean + 3.0 * sigma,
        lcl=mean - 3.0 * sigma,
        sigma=sigma,
        range_center=mr_bar,
        range_ucl=c.D4 * mr_bar,
        range_lcl=c.D3 * mr_bar,
        sigma_within=sigma,
        source=source,
    )


def imr_limits(values: Sequence[float] | FloatArray) -> Limits:
    """I-MR limits from a warm-up series (at least two values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        raise ValueError("I-MR limits need at least two values")
    return imr_limits_from_baseline(
        float(x.mean()), float(moving_ranges(x).mean()), source="warmup"
    )


def xbar_r_limits_from_baseline(
    grand_mean: float, r_bar: float, n: int, *, source: str = "baseline"
) -> Limits:
    """X̄-R limits from a known grand mean and average range of subgroups of ``n``."""
    c = _constants(n)
    return Limits(
        subgroup_size=n,
        center=grand_mean,
        ucl=grand_mean + c.A2 * r_bar,
        lcl=grand_mean - c.A2 * r_bar,
        sigma=c.A2 * r_bar / 3.0,
        range_center=r_bar,
        range_ucl=c.D4 * r_bar,
        range_lcl=c.D3 * r_bar,
        sigma_within=r_bar / c.d2,
        source=source,
    )


def xbar_r_limits(subgroups: Sequence[Sequence[float]] | FloatArray) -> Limits:
    """X̄-R limits from warm-up subgroups (a 2-D array, one row per subgroup)."""
    data = np.asarray(subgroups, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError("X-bar/R limits need a 2-D array of at least one subgroup")
    n = int(data.shape[1])
    means = data.mean(axis=1)
    ranges = data.max(axis=1) - data.min(axis=1)
    return xbar_r_limits_from_baseline(
        float(means.mean()), float(ranges.mean()), n, source="warmup"
    )


def _constants(n: int) -> ChartConstants:
    constants = CONSTANTS.get(n)
    if constants is None:
        raise ValueError(f"subgroup size must be 2..{MAX_SUBGROUP} for X-bar/R, got {n}")
    return constants


# ----------------------------------------------------------------------------- run rules


def rule_hits(
    points: Sequence[float] | FloatArray,
    center: float,
    sigma: float,
    rules: Iterable[int] = DEFAULT_RULES,
) -> dict[int, list[int]]:
    """For each rule, the indices of the points that complete its pattern.

    ``sigma`` is the sigma of the plotted statistic (limits at ``center +/- 3 sigma``).
    """
    x = np.asarray(points, dtype=np.float64)
    z = (x - center) / sigma if sigma > 0 else np.zeros_like(x)
    hits: dict[int, list[int]] = {}
    for rule in rules:
        mask = _RULES[rule](x, z)
        hits[rule] = [int(i) for i in np.flatnonzero(mask)]
    return hits


def _windows(flags: npt.NDArray[np.bool_], length: int) -> npt.NDArray[np.bool_]:
    """True at i when ``flags[i-length+1 .. i]`` are all true."""
    out = np.zeros(flags.shape, dtype=bool)
    if flags.size >= length:
        run = np.lib.stride_tricks.sliding_window_view(flags, length).all(axis=1)
        out[length - 1 :] = run
    return out


def _count_in(flags: npt.NDArray[np.bool_], length: int) -> npt.NDArray[np.int64]:
    """At i, how many of the last ``length`` flags up to i are true (fewer at the start)."""
    total = np.cumsum(flags.astype(np.int64))
    out = total.copy()
    out[length:] -= total[:-length]
    return out


def _rule1(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    return np.abs(z) > 3.0


def _rule2(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    return _windows(z > 0, 9) | _windows(z < 0, 9)


def _steps(x: FloatArray) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``up[i]``/``down[i]``: x[i] > / < x[i-1] (False at 0)."""
    d = np.diff(x, prepend=np.nan)
    return d > 0, d < 0


def _rule3(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    up, down = _steps(x)
    # Six points steadily rising or falling: five steps in the same direction.
    return _windows(up, 5) | _windows(down, 5)


def _rule4(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    up, down = _steps(x)
    # Fourteen points alternating: thirteen steps, each the opposite of the one before.
    alternates = np.zeros(x.shape, dtype=bool)
    alternates[2:] = (up[2:] & down[1:-1]) | (down[2:] & up[1:-1])
    # alternates[i] compares the steps into i and into i-1: 12 of them cover 13 steps.
    return _windows(alternates, 12)


def _rule5(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    high, low = z > 2.0, z < -2.0
    return (high & (_count_in(high, 3) >= 2)) | (low & (_count_in(low, 3) >= 2))


def _rule6(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    high, low = z > 1.0, z < -1.0
    return (high & (_count_in(high, 5) >= 4)) | (low & (_count_in(low, 5) >= 4))


def _rule7(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    return _windows(np.abs(z) < 1.0, 15)


def _rule8(x: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
    return _windows(np.abs(z) > 1.0, 8)


_RULES = {
    1: _rule1,
    2: _rule2,
    3: _rule3,
    4: _rule4,
    5: _rule5,
    6: _rule6,
    7: _rule7,
    8: _rule8,
}

RULE_TEXT = {
    1: "one point beyond 3 sigma",
    2: "nine points in a row on one side of the centre line",
    3: "six points in a row steadily increasing or decreasing",
    4: "fourteen points in a row alternating up and down",
    5: "two of three points beyond 2 sigma on one side",
    6: "four of five points beyond 1 sigma on one side",
    7: "fifteen points in a row within 1 sigma",
    8: "eight points in a row beyond 1 sigma",
}


# ----------------------------------------------------------------------------- capability


@dataclass(frozen=True, slots=True)
class Capability:
    n: int  # individual values behind it
    mean: float | None
    sigma_within: float | None
    cp: float | None
    cpk: float | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def capability(
    mean: float, sigma: float, lsl: float | None, usl: float | None
) -> tuple[float | None, float | None]:
    """``(Cp, Cpk)``; ``None`` where a limit is missing or sigma is zero."""
    if not sigma > 0:
        return None, None
    cp = (usl - lsl) / (6.0 * sigma) if lsl is not None and usl is not None else None
    sides = []
    if usl is not None:
        sides.append((usl - mean) / (3.0 * sigma))
    if lsl is not None:
        sides.append((mean - lsl) / (3.0 * sigma))
    return cp, (min(sides) if sides else None)


def capability_of(
    values: Sequence[float] | FloatArray,
    subgroup_size: int,
    lsl: float | None,
    usl: float | None,
) -> Capability:
    """Capability of a series of individual values (consecutive subgroups of ``subgroup_size``).

    Sigma within: ``MRbar / d2(2)`` for individuals, ``Rbar / d2(n)`` for subgroups
    (an incomplete last subgroup is left out of the ranges, not of the mean).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Capability(0, None, None, None, None)
    mean = float(x.mean())
    if subgroup_size <= 1:
        if x.size < 2:
            return Capability(int(x.size), mean, None, None, None)
        sigma = float(moving_ranges(x).mean()) / CONSTANTS[2].d2
    else:
        whole = x.size // subgroup_size
        if whole == 0:
            return Capability(int(x.size), mean, None, None, None)
        groups = x[: whole * subgroup_size].reshape(whole, subgroup_size)
        r_bar = float((groups.max(axis=1) - groups.min(axis=1)).mean())
        sigma = r_bar / _constants(subgroup_size).d2
    cp, cpk = capability(mean, sigma, lsl, usl)
    return Capability(int(x.size), mean, sigma if sigma > 0 else None, cp, cpk)


# ----------------------------------------------------------------------------- chart


@dataclass(frozen=True, slots=True)
class Point:
    """One plotted point: an individual value (I-MR) or a subgroup's mean (X̄-R)."""

    value: float
    range: float | None  # the moving range to the previous value, or the subgroup's range


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule broken at one point. ``chart`` is ``"x"`` (X or X̄) or ``"range"`` (MR or R)."""

    rule: int
    chart: str
    value: float
    description: str


class Chart:
    """One characteristic's chart, fed one measurement at a time (pure, incremental).

    Limits: given (a baseline), else computed from the first ``warmup`` points
    (I-MR) or subgroups (X̄-R), then frozen. Rules are checked only once limits
    exist. A rule that keeps holding on consecutive points is reported at the
    first of them only (rule 1 at every point beyond the limits), so a drifted
    process raises one violation per episode, not one per piece.

    ``history`` individual values are kept for capability.
    """

    def __init__(
        self,
        *,
        subgroup_size: int = 1,
        limits: Limits | None = None,
        warmup: int = 25,
        rules: Sequence[int] = DEFAULT_RULES,
        history: int = 250,
    ) -> None:
        if subgroup_size != 1:
            _constants(subgroup_size)
        min_warmup = 2 if subgroup_size == 1 else 1
        if limits is None and warmup < min_warmup:
            raise ValueError(f"warmup must be at least {min_warmup}, got {warmup}")
        unknown = sorted(set(rules) - set(ALL_RULES))
        if unknown:
            raise ValueError(f"unknown run rules {unknown}; known: 1..8")
        self.subgroup_size = subgroup_size
        self.limits = limits
        self.warmup = warmup
        self.rules = tuple(sorted(set(rules)))
        self._pending: list[float] = []  # values of the subgroup being filled
        self._warm: list[list[float]] = []  # warm-up points (values or subgroups)
        self._recent: deque[float] = deque(maxlen=_RULE_SPAN)
        self._last_value: float | None = None  # for the moving range
        self._active: set[int] = set()  # rules that hit at the previous point
        self._history: deque[float] = deque(maxlen=max(history, 2))
        self.points = 0

    @property
    def ready(self) -> bool:
        return self.limits is not None

    def add(self, value: float) -> tuple[Point | None, list[RuleHit], bool]:
        """Add one measurement: ``(point plotted or None, rules hit, limits just set)``."""
        if not math.isfinite(value):
            raise ValueError(f"a measurement must be a finite number, got {value!r}")
        self._history.append(value)
        if self.subgroup_size == 1:
            mr = abs(value - self._last_value) if self._last_value is not None else None
            self._last_value = value
            return self._plot(Point(value, mr), [value])
        self._pending.append(value)
        if len(self._pending) < self.subgroup_size:
            return None, [], False
        group, self._pending = self._pending, []
        return self._plot(Point(sum(group) / len(group), max(group) - min(group)), group)

    def _plot(self, point: Point, raw: list[float]) -> tuple[Point, list[RuleHit], bool]:
        self.points += 1
        if self.limits is None:
            self._warm.append(raw)
            if len(self._warm) < self.warmup:
                return point, [], False
            if self.subgroup_size == 1:
                self.limits = imr_limits([v[0] for v in self._warm])
            else:
                self.limits = xbar_r_limits(self._warm)
            self._warm = []
            return point, [], True
        return point, self._check(point), False

    def _check(self, point: Point) -> list[RuleHit]:
        limits = self.limits
        assert limits is not None
        self._recent.append(point.value)
        found = rule_hits(
            np.fromiter(self._recent, np.float64), limits.center, limits.sigma, self.rules
        )
        last = len(self._recent) - 1
        now = {rule for rule, indices in found.items() if indices and indices[-1] == last}
        hits = [
            RuleHit(rule, "x", point.value, RULE_TEXT[rule])
            for rule in sorted(now)
            if rule == 1 or rule not in self._active
        ]
        self._active = now
        if point.range is not None and (
            point.range > limits.range_ucl
            or (limits.range_lcl > 0 and point.range < limits.range_lcl)
        ):
            hits.append(RuleHit(1, "range", point.range, "range beyond its control limits"))
        return hits

    def capability(self, lsl: float | None, usl: float | None) -> Capability:
        return capability_of(list(self._history), self.subgroup_size, lsl, usl)

    # -- persistence (plain data) ---------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "limits": self.limits.as_dict() if self.limits is not None else None,
            "pending": list(self._pending),
            "warm": [list(v) for v in self._warm],
            "recent": list(self._recent),
            "last_value": self._last_value,
            "active": sorted(self._active),
            "history": list(self._history),
            "points": self.points,
        }

    def restore(self, data: dict[str, Any], *, keep_limits: Limits | None = None) -> None:
        """Continue from a snapshot. A configured baseline (``keep_limits``) wins over
        the snapshot's limits, so changing the baseline in the config takes effect."""
        if keep_limits is not None:
            self.limits = keep_limits
        elif data.get("limits") is not None:
            saved = Limits.from_dict(data["limits"])
            if saved.subgroup_size == self.subgroup_size:
                self.limits = saved
        self._pending = [float(v) for v in data.get("pending", [])][: self.subgroup_size - 1]
        if self.limits is None:
            self._warm = [[float(x) for x in v] for v in data.get("warm", [])]
        self._recent.extend(float(v) for v in data.get("recent", []))
        last = data.get("last_value")
        self._last_value = float(last) if last is not None else None
        self._active = {int(r) for r in data.get("active", [])}
        self._history.extend(float(v) for v in data.get("history", []))
        self.points = int(data.get("points", 0))
