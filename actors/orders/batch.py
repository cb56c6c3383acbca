"""The batch record of a finished order, and per-machine KPIs over an order's run segments.

An order runs on a machine in one or more segments (a hold takes the order
off its machines, a resume puts it back). The machine core reports each
segment's KPIs as an order window (``OrderWindowClosed``, later maybe
``WindowRevised``); :func:`merge_kpis` combines them into the KPIs of the
order's time on that machine, recomputing every ratio from the summed
quantities (OEE.md §6):

- summed: ``scheduled_s``, ``planned_stop_s``, ``planned_production_s``,
  ``run_s``, ``downtime_s``, ``downtime_events``, ``micro_stops``,
  ``micro_stop_s``, the counts, ``pieces_outside_ppt``, ``downtime_by_reason``;
- ``performance``: Σ(ideal seconds) / Σ run_s, each segment's ideal seconds
  being its ``performance * run_s``;
- ``mttr_s``: Σ(mttr_s * downtime_events) / Σ downtime_events;
- ``teep``: ``oee * PPT / Σ(end - start)``;
- a ratio with a zero denominator is ``None``.

A downtime event that spans a hold (it touches two segments) counts in both,
as a stop crossing a shift boundary counts in both shifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_ADDITIVE = (
    "scheduled_s",
    "planned_stop_s",
    "planned_production_s",
    "run_s",
    "downtime_s",
    "downtime_events",
    "micro_stops",
    "micro_stop_s",
    "total_count",
    "good_count",
    "reject_count",
    "pieces_outside_ppt",
)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator != 0 else None


def merge_kpis(segments: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """One machine's KPIs over an order's segments (``KpiRecord.as_dict()`` each)."""
    if not segments:
        return None
    ordered = sorted(segments, key=lambda s: float(s["start"]))
    if len(ordered) == 1:
        only = dict(ordered[0])
        only["downtime_by_reason"] = dict(only["downtime_by_reason"])
        only["segments"] = 1
        return only
    merged: dict[str, Any] = {name: sum(s[name] for s in ordered) for name in _ADDITIVE}
    ideal_s = sum(s["performance"] * s["run_s"] for s in ordered if s["performance"] is not None)
    event_s = sum(s["mttr_s"] * s["downtime_events"] for s in ordered if s["mttr_s"] is not None)
    length = sum(float(s["end"]) - float(s["start"]) for s in ordered)
    by_reason: dict[str, float] = {}
    for s in ordered:
        for reason, seconds in s["downtime_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0.0) + seconds
    run, ppt = merged["run_s"], merged["planned_production_s"]
    availability = _ratio(run, ppt)
    performance = _ratio(ideal_s, run)
    quality = _ratio(merged["good_count"], merged["total_count"])
    oee = (
        availability * performance * quality
        if availability is not None and performance is not None and quality is not None
        else None
    )
    first, last = ordered[0], ordered[-1]
    merged.update(
        machine_id=first["machine_id"],
        window=first["window"],
        key=first["key"],
        name=first["name"],
        start=first["start"],
        end=last["end"],
        closed=all(s["closed"] for s in ordered),
        open_stop=any(s["open_stop"] for s in ordered),
        availability=availability,
        performance=performance,
        quality=quality,
        oee=oee,
        teep=oee * ppt / length if oee is not None and length > 0 else None,
        mtbf_s=_ratio(run, merged["downtime_events"]),
        mttr_s=_ratio(event_s, merged["downtime_events"]),
        downtime_by_reason=by_reason,
        segments=len(ordered),
    )
    return merged


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """Everything the MES and QMIB keep about one finished order (plain data inside).

    Quantities follow the order's quantity rule (docs/orders-and-quality.md):
    ``good_quantity`` is what left the order's output machine(s),
    ``reject_quantity`` every reject on any of its machines, ``total_quantity``
    their sum, ``rework_quantity`` the failed pieces its quality stations sent
    to rework. ``machines`` maps each machine id to its own counts and KPIs for
    the order's time on it; ``downtime_by_reason`` sums the machines'.
    """

    order_id: str
    product: str
    operation_id: str
    status: str  # completed | aborted
    reason: str  # why it was aborted, or how it completed ("target reached")
    target_quantity: int
    good_quantity: int
    reject_quantity: int
    rework_quantity: int
    total_quantity: int
    start: float | None  # first start; None if it never ran (aborted before)
    end: float
    machines: dict[str, dict[str, Any]]
    downtime_by_reason: dict[str, float]
    produced_lot_id: str
    consumed_lots: list[dict[str, Any]]
    genealogy: dict[str, Any]
    quality: list[dict[str, Any]]  # one summary per quality station of the order's machines
    history: list[dict[str, Any]]  # every status change: ts, status, previous, source, user

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRecord:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})
