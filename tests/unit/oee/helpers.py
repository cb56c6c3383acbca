"""Builders for machine core tests: a UTC calendar, times of one day, sample feeding."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as wall

from actors.messages import Quality, Sample, Value
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.events import DomainEvent
from actors.oee.params import BreakDef, CalendarDef, MachineParams, Reason, ReasonCategory, ShiftDef

MACHINE = "M1"
REASONS = (
    Reason("jam at infeed", 17),
    Reason("cleaning", 40, ReasonCategory.PLANNED),
    Reason("no order", None, ReasonCategory.PLANNED),
)


def t(hhmmss: str, day: int = 22) -> float:
    """Epoch seconds of ``HH:MM[:SS]`` UTC on 2025-08-``day``."""
    parts = [int(p) for p in hhmmss.split(":")] + [0]
    return datetime(2025, 8, day, parts[0], parts[1], parts[2], tzinfo=UTC).timestamp()


def two_shift_calendar(with_breaks: bool = False) -> ShiftCalendar:
    """UTC: A 06:00-14:00 (break 10:00-10:30 if asked), B 14:00-22:00; nights unscheduled."""
    breaks = (BreakDef(wall(10), wall(10, 30)),) if with_breaks else ()
    return ShiftCalendar(
        CalendarDef(
            "UTC",
            (ShiftDef("A", wall(6), wall(14), breaks=breaks), ShiftDef("B", wall(14), wall(22))),
        )
    )


def params(**changes: object) -> MachineParams:
    values: dict[str, object] = {"machine_id": MACHINE, "ideal_cycle_s": 2.0, "reasons": REASONS}
    values.update(changes)
    return MachineParams(**values)  # type: ignore[arg-type]


def core(calendar: ShiftCalendar | None = None, **changes: object) -> MachineCore:
    return MachineCore(params(**changes), calendar or two_shift_calendar())


def feed(
    machine: MachineCore,
    ts: float,
    signal: str,
    value: Value,
    quality: Quality = Quality.GOOD,
) -> list[DomainEvent]:
    """Apply one sample and return the events it caused."""
    machine.apply(Sample(MACHINE, signal, value, ts, quality))
    return machine.drain_events()


def of_type(events: list[DomainEvent], kind: type) -> list[DomainEvent]:
    return [e for e in events if isinstance(e, kind)]
