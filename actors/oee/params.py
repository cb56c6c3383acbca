"""Frozen parameters of the OEE core, built from the line config.

These are the core's own types, so the core never imports the config loader;
``edge.config`` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from enum import Enum


class LossBucket(Enum):
    """Where micro-stop time is lost (OEE.md §4)."""

    PERFORMANCE = "performance"  # oee.com "small stops": stays inside run time
    AVAILABILITY = "availability"  # ISO 22400: part of the unit delay time


class ReasonCategory(Enum):
    UNPLANNED = "unplanned"
    PLANNED = "planned"


class StateSource(Enum):
    """How running/stopped is derived, in priority order (OEE.md §3)."""

    RUNNING_SIGNAL = "running"
    PACKML_STATE = "state"
    COUNTS = "counts"


@dataclass(frozen=True, slots=True)
class Reason:
    """A stop reason: the PLC's code (if any), a name people read, a category."""

    name: str
    code: int | None = None
    category: ReasonCategory = ReasonCategory.UNPLANNED


# How many times its ideal rate a machine's counter may advance between two readings
# before the delta is capped (config machines[].max_rate_factor).
DEFAULT_MAX_RATE_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class MachineParams:
    machine_id: str
    ideal_cycle_s: float
    micro_stop_s: float = 120.0
    # None: 5 x ideal cycle time (OEE.md §3, counts-only inference).
    stop_after_s: float | None = None
    micro_stop_bucket: LossBucket = LossBucket.PERFORMANCE
    counter_bits: int = 32
    reasons: tuple[Reason, ...] = ()
    # None: derived from the highest-priority signal role seen so far.
    state_source: StateSource | None = None
    # A counter delta beyond this many times the ideal rate is capped (actors.oee.counters).
    max_rate_factor: float = DEFAULT_MAX_RATE_FACTOR

    @property
    def effective_stop_after_s(self) -> float:
        return self.stop_after_s if self.stop_after_s is not None else 5.0 * self.ideal_cycle_s


@dataclass(frozen=True, slots=True)
class BreakDef:
    """A planned break inside a shift, in local wall-clock time."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class ShiftDef:
    """A shift pattern in local wall-clock time.

    ``end <= start`` means the shift crosses midnight. ``days`` are the ISO
    weekdays (1 = Monday ... 7 = Sunday) on which the shift *starts*; empty
    means every day.
    """

    name: str
    start: time
    end: time
    days: frozenset[int] = field(default_factory=frozenset)
    breaks: tuple[BreakDef, ...] = ()


@dataclass(frozen=True, slots=True)
class CalendarDef:
    timezone: str
    shifts: tuple[ShiftDef, ...]
