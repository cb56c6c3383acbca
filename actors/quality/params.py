"""Frozen parameters of a quality station, built from the line config's ``[[quality_stations]]``.

These are the core's own types, so the station core never imports the config loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.spc import Limits

# The same as actors.spc's (a test checks): kept here so that reading the config
# does not import numpy.
ALL_RULES = (1, 2, 3, 4, 5, 6, 7, 8)
DEFAULT_RULES = (1, 2, 3, 4)
MAX_SUBGROUP_SIZE = 10


class Disposition(Enum):
    """What happens to a piece that failed inspection."""

    PENDING = "pending"  # not decided yet (a later disposition command decides)
    SCRAP = "scrap"
    REWORK = "rework"
    REUSE = "reuse"  # use as is (concession)


DISPOSED = (Disposition.SCRAP, Disposition.REWORK, Disposition.REUSE)


@dataclass(frozen=True, slots=True)
class CharacteristicParams:
    """One measured characteristic and its control chart.

    ``subgroup_size`` 1 is an I-MR chart, 2..10 an X̄-R chart of consecutive
    measurements. With ``baseline_mean`` and ``baseline_range`` (the average
    moving range for I-MR, the average subgroup range for X̄-R) the limits are
    fixed from the start; otherwise the first ``warmup`` points set them.
    """

    name: str
    signal: str | None = None  # the station plc_map's process value; None: manual entry only
    unit: str = ""
    lsl: float | None = None
    usl: float | None = None
    subgroup_size: int = 1
    baseline_mean: float | None = None
    baseline_range: float | None = None
    warmup: int = 25
    rules: tuple[int, ...] = DEFAULT_RULES

    def baseline_limits(self) -> Limits | None:
        if self.baseline_mean is None or self.baseline_range is None:
            return None
        from actors.spc import (  # noqa: PLC0415 - numpy only where charts are drawn
            imr_limits_from_baseline,
            xbar_r_limits_from_baseline,
        )

        if self.subgroup_size == 1:
            return imr_limits_from_baseline(self.baseline_mean, self.baseline_range)
        return xbar_r_limits_from_baseline(
            self.baseline_mean, self.baseline_range, self.subgroup_size
        )


@dataclass(frozen=True, slots=True)
class StationParams:
    """A quality station: which machine's pieces it judges and how its results arrive.

    ``feeds_machine_rejects``: the station's failed pieces are added to the
    machine's reject count (``AddRejects``). True only where the machine's PLC
    does not count rejects itself; see docs/orders-and-quality.md.
    """

    station_id: str
    machine_id: str
    feeds_machine_rejects: bool
    name: str = ""
    pass_signal: str | None = None  # PLC counter of passed pieces (a process value name)
    fail_signal: str | None = None  # PLC counter of failed pieces
    counter_bits: int = 32
    plc_disposition: Disposition = Disposition.PENDING  # for failures the PLC reports
    reason_codes: tuple[str, ...] = ()  # allowed reason codes; empty: any
    characteristics: tuple[CharacteristicParams, ...] = ()

    @property
    def signals(self) -> frozenset[str]:
        """Every PLC signal the station reads."""
        names = {c.signal for c in self.characteristics if c.signal is not None}
        names.update(s for s in (self.pass_signal, self.fail_signal) if s is not None)
        return frozenset(names)
