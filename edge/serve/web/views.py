"""The JSON documents of the line display's API (``/api/v1``): plain data from the
engine's own records, never a second computation of a KPI.

Pure functions; times are epoch seconds (UTC), ratios 0..1 or null (OEE.md §6).
The field names are the API's contract, documented in docs/line-display.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actors.machine import MachineStatus
from actors.oee.calendar import ShiftInstance
from actors.oee.kpi import KpiRecord
from actors.oee.stops import StopRecord
from actors.orders.core import OrderStatus, OrderView
from actors.quality.core import Alarm, ChartView
from edge.config import MachineConfig
from edge.serve.web.history import HourCounts

API_VERSION = 1
PARETO_TOP = 7
OTHER_REASONS = "other reasons"
OPEN_ORDERS = frozenset(
    {OrderStatus.CREATED, OrderStatus.RELEASED, OrderStatus.RUNNING, OrderStatus.HELD}
)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def kpis(record: KpiRecord | None) -> dict[str, Any] | None:
    """A shift's (or order's) KPIs as the display shows them."""
    if record is None:
        return None
    return {
        "name": record.name,
        "start": record.start,
        "as_of": record.end,
        "availability": _finite(record.availability),
        "performance": _finite(record.performance),
        "quality": _finite(record.quality),
        "oee": _finite(record.oee),
        "total": record.total_count,
        "good": record.good_count,
        "reject": record.reject_count,
        "run_s": record.run_s,
        "downtime_s": record.downtime_s,
        "planned_production_s": record.planned_production_s,
        "micro_stops": record.micro_stops,
        "micro_stop_s": record.micro_stop_s,
        "downtime_events": record.downtime_events,
        "downtime_by_reason": dict(record.downtime_by_reason),
    }


def reason_names(machine: MachineConfig) -> list[str]:
    """The reasons an operator may pick for a stop of ``machine``: its reason table."""
    return [r.name for r in machine.params.reasons]


def machine_summary(machine: MachineConfig, status: MachineStatus | None) -> dict[str, Any]:
    """One machine's tile on the board."""
    if status is None:
        return {
            "id": machine.id,
            "name": machine.name,
            "state": "unknown",
            "since": None,
            "stop_reason": None,
            "order_id": None,
            "shift": None,
            "reasons": reason_names(machine),
            "available": False,  # the machine actor did not answer
        }
    return {
        "id": machine.id,
        "name": machine.name,
        "state": status.state.value,
        "since": status.state_since,
        "stop_reason": status.stop_reason,
        "order_id": status.current_order_id,
        "shift": kpis(status.current_shift),
        "reasons": reason_names(machine),
        "available": True,
    }


def shift_item(instance: ShiftInstance | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    return {
        "name": instance.name,
        "start": instance.start,
        "end": instance.end,
        "breaks": [list(b) for b in instance.breaks],
    }


def pareto(statuses: Iterable[MachineStatus | None], top: int = PARETO_TOP) -> list[dict[str, Any]]:
    """The line's downtime of the current shift by reason, largest first: each machine's
    ``downtime_by_reason`` summed over the machines (OEE.md §6), with each reason's
    share of the line's downtime and the cumulative share. Reasons past ``top`` are
    summed into one ``other reasons`` entry (``"other": true``)."""
    totals: dict[str, float] = {}
    for status in statuses:
        shift = status.current_shift if status is not None else None
        if shift is None:
            continue
        for reason, seconds in shift.downtime_by_reason.items():
            totals[reason] = totals.get(reason, 0.0) + seconds
    ranked = sorted(
        ((r, s, False) for r, s in totals.items() if s > 0), key=lambda x: (-x[1], x[0])
    )
    if len(ranked) > top:
        rest = sum(s for _, s, _ in ranked[top - 1 :])
        ranked = [*ranked[: top - 1], (OTHER_REASONS, rest, True)]
    whole = sum(s for _, s, _ in ranked)
    items: list[dict[str, Any]] = []
    running = 0.0
    for reason, seconds, other in ranked:
        running += seconds
        items.append(
            {
                "reason": reason,
                "seconds": seconds,
                "share": seconds / whole,
                "cumulative": running / whole,
                "other": other,
            }
        )
    return items


def stop_item(stop: StopRecord) -> dict[str, Any]:
    """A stop of the shift. ``nameable``: an operator's reason would apply (the PLC
    gave no fault code, whose reason wins, OEE.md §3)."""
    return {
        "id": stop.stop_id,
        "start": stop.start,
        "end": stop.end,
        "duration_s": stop.duration_s,
        "kind": stop.kind.value,
        "reason": stop.reason,
        "category": stop.category.value,
        "fault_code": stop.fault_code,
        "operator_reason": stop.operator_reason,
        "nameable": stop.fault_code is None,
    }


def timeline(
    stops: Sequence[StopRecord], unknown: Sequence[tuple[float, float]]
) -> list[list[Any]]:
    """The shift's segments that are not running, oldest first: ``[start, end, kind, reason]``
    with ``end`` null while open and ``kind`` one of micro_stop, downtime, planned, unknown."""
    segments: list[list[Any]] = [[s.start, s.end, s.kind.value, s.reason] for s in stops]
    segments.extend([a, b, "unknown", "comm_loss"] for a, b in unknown)
    segments.sort(key=lambda s: s[0])
    return segments


def hours(counts: Sequence[HourCounts]) -> list[dict[str, Any]]:
    return [
        {"start": h.start, "total": h.total, "good": h.good, "reject": h.reject} for h in counts
    ]


def expected_end(view: OrderView, now: float, ideal_cycle_s: float | None) -> float | None:
    """When a running order reaches its target: at its average rate of good pieces
    since it started (stops and holds included), before the first good piece at the
    ideal cycle time. None when it is not running or has no target left."""
    if view.status is not OrderStatus.RUNNING:
        return None
    remaining = view.target_quantity - view.good_quantity
    if remaining <= 0:
        return None
    if view.good_quantity > 0 and view.started_at is not None and now > view.started_at:
        return now + remaining * (now - view.started_at) / view.good_quantity
    if ideal_cycle_s is not None and ideal_cycle_s > 0:
        return now + remaining * ideal_cycle_s
    return None


def order_item(view: OrderView, now: float, machine_cycles: Mapping[str, float]) -> dict[str, Any]:
    # Without the order's own ideal cycle: the slowest of its machines paces it.
    ideal = view.ideal_cycle_s or max(
        (machine_cycles[m] for m in view.machine_ids if m in machine_cycles), default=None
    )
    return {
        "id": view.order_id,
        "status": view.status.value,
        "product": view.product,
        "target": view.target_quantity,
        "good": view.good_quantity,
        "reject": view.reject_quantity,
        "machines": list(view.machine_ids),
        "started_at": view.started_at,
        "expected_end": expected_end(view, now, ideal),
    }


def alarm_item(alarm: Alarm) -> dict[str, Any]:
    return {
        "id": alarm.alarm_id,
        "station": alarm.station_id,
        "characteristic": alarm.characteristic,
        "chart": alarm.chart,
        "rule": alarm.rule,
        "description": alarm.description,
        "first": alarm.first_ts,
        "last": alarm.last_ts,
        "count": alarm.count,
        "last_value": _finite(alarm.last_value),
    }


_LIMIT_KEYS = ("center", "ucl", "lcl", "range_center", "range_ucl", "range_lcl", "source")


def chart_item(station_id: str, station_name: str, chart: ChartView) -> dict[str, Any]:
    limits = chart.limits
    return {
        "station": station_id,
        "station_name": station_name,
        "characteristic": chart.characteristic,
        "unit": chart.unit,
        "subgroup_size": chart.subgroup_size,
        "limits": None if limits is None else {k: limits[k] for k in _LIMIT_KEYS},
        "lsl": chart.lsl,
        "usl": chart.usl,
        "points": [
            {
                "n": p.index,
                "ts": p.ts,
                "value": p.value,
                "range": p.range,
                "rules": list(p.rules),
                "range_out": p.range_out,
            }
            for p in chart.points
        ],
    }
