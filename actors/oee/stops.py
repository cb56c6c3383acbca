"""Stops and how they are classified (OEE.md §4).

A stop lasts from the running→stopped transition to the next stopped→running
one. Losing the PLC link ends an open stop at the instant the link went down:
from then on the machine is ``unknown``, not stopped (we lost sight of it), and
if it is still stopped when data returns that is a new stop.

Classification uses the stop's *whole* length, also when it crosses shift
boundaries or breaks (its time is split between the windows it touches):

- a stop whose reason is in the ``planned`` category is planned stop time,
  whatever its length (never a micro-stop, never downtime);
- otherwise a stop strictly shorter than ``micro_stop_s`` is a micro-stop,
  one of ``micro_stop_s`` or longer is a downtime event.

A stop still open is classified by its length so far. Because a stop's reason
can change after it ended (an operator entry, OEE.md §3), windows store each
stop's time by stop id and the classification is applied when KPIs are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from actors.oee.params import ReasonCategory


class StopKind(Enum):
    MICRO_STOP = "micro_stop"
    DOWNTIME = "downtime"
    PLANNED = "planned"


def classify(length_s: float, category: ReasonCategory, micro_stop_s: float) -> StopKind:
    if category is ReasonCategory.PLANNED:
        return StopKind.PLANNED
    return StopKind.MICRO_STOP if length_s < micro_stop_s else StopKind.DOWNTIME


@dataclass(frozen=True, slots=True)
class StopRecord:
    """A stop as a query reports it (the line display, the API): plain data.

    ``end`` is None while the stop is open; ``duration_s`` and ``kind`` are then
    as of the query. ``fault_code`` is the PLC's code when one came with the stop:
    then the PLC's reason wins over an operator's (OEE.md §3).
    """

    stop_id: int
    start: float
    end: float | None
    duration_s: float
    kind: StopKind
    reason: str
    category: ReasonCategory
    fault_code: int | None
    operator_reason: str | None


class Stop:
    """One stop of one machine; mutable while open and while its reason can change.

    ``refs`` counts the retained windows holding time of this stop: the core
    forgets a closed stop when no retained window refers to it any more.
    """

    __slots__ = (
        "category",
        "end",
        "fault_code",
        "id",
        "operator_reason",
        "reason",
        "refs",
        "start",
        "state_code",
        "unscheduled",
    )

    def __init__(self, stop_id: int, start: float) -> None:
        self.id = stop_id
        self.start = start
        self.end: float | None = None
        self.fault_code: int | None = None
        self.operator_reason: str | None = None
        self.state_code: int | None = None
        self.reason = ""
        self.category = ReasonCategory.UNPLANNED
        self.refs = 0
        self.unscheduled = False  # touched time outside every shift

    def length(self, now: float) -> float:
        end = self.end if self.end is not None else now
        return max(end - self.start, 0.0)

    def kind(self, now: float, micro_stop_s: float) -> StopKind:
        return classify(self.length(now), self.category, micro_stop_s)

    def record(self, now: float, micro_stop_s: float) -> StopRecord:
        return StopRecord(
            self.id,
            self.start,
            self.end,
            self.length(now),
            self.kind(now, micro_stop_s),
            self.reason,
            self.category,
            self.fault_code,
            self.operator_reason,
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "fault_code": self.fault_code,
            "operator_reason": self.operator_reason,
            "state_code": self.state_code,
            "reason": self.reason,
            "category": self.category.value,
            "refs": self.refs,
            "unscheduled": self.unscheduled,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Stop:
        stop = cls(int(data["id"]), float(data["start"]))
        stop.end = None if data["end"] is None else float(data["end"])
        stop.fault_code = data["fault_code"]
        stop.operator_reason = data["operator_reason"]
        stop.state_code = data["state_code"]
        stop.reason = str(data["reason"])
        stop.category = ReasonCategory(data["category"])
        stop.refs = int(data["refs"])
        stop.unscheduled = bool(data["unscheduled"])
        return stop
