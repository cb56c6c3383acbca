"""Events quality stations publish on the event bus.

Like the machine events (:mod:`actors.oee.events`) every event is a frozen
dataclass with ``machine_id`` (the machine whose pieces the station judges)
and ``ts`` (event time, float epoch seconds UTC); all fields are plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class InspectionRecorded:
    """Pieces judged by a station: from its PLC counters or a manual entry.

    ``disposition`` applies to the ``failed`` pieces (``pending`` until decided).
    ``feeds_machine_rejects`` says whether ``failed`` was also added to the
    machine's reject count.
    """

    machine_id: str
    ts: float
    station_id: str
    order_id: str | None
    passed: int
    failed: int
    disposition: str
    reason_code: str
    source: str  # "plc" | "manual"
    feeds_machine_rejects: bool


@dataclass(frozen=True, slots=True)
class RejectsDisposed:
    """Pending failed pieces got their disposition (scrap, rework or reuse)."""

    machine_id: str
    ts: float
    station_id: str
    order_id: str | None
    count: int
    disposition: str
    reason_code: str


@dataclass(frozen=True, slots=True)
class SpcLimitsSet:
    """A characteristic's control limits were set from its warm-up window."""

    machine_id: str
    ts: float
    station_id: str
    characteristic: str
    limits: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SpcViolation:
    """A run rule broke on a characteristic's chart; it raised (or renewed) an alarm.

    ``new_alarm`` is False when an unacknowledged alarm for the same
    characteristic, chart and rule was already active: its count went up.
    """

    machine_id: str
    ts: float
    station_id: str
    order_id: str | None
    characteristic: str
    chart: str  # "x" (individuals or subgroup means) | "range" (moving range or R)
    rule: int
    value: float
    description: str
    alarm_id: str
    new_alarm: bool


@dataclass(frozen=True, slots=True)
class AlarmAcknowledged:
    machine_id: str
    ts: float
    station_id: str
    alarm_id: str
    user: str


QualityEvent = (
    InspectionRecorded | RejectsDisposed | SpcLimitsSet | SpcViolation | AlarmAcknowledged
)
