"""KPIs of a window (OEE.md §6), computed from a :class:`~actors.oee.windows.Window`.

Computed on demand, not accumulated, because a stop's classification (by its
whole length) and its reason (fault code, operator entry after the fact) may
still change after its time was accounted. The formulas, with the window's
stop slices classified as in :mod:`actors.oee.stops`:

- ``planned_stop_s`` = break time + production time of planned-reason stops;
- ``planned_production_s`` (PPT) = ``scheduled_s - planned_stop_s``;
- ``downtime_s`` = ``comm_loss`` (unknown time in PPT) + downtime-event time
  in PPT + micro-stop time in PPT when the machine's micro-stop bucket is
  ``availability``; ``downtime_by_reason`` splits exactly that sum;
- ``run_s`` = ``PPT - downtime_s`` (so micro-stops of the ``performance``
  bucket stay inside run time);
- ``micro_stops`` / ``downtime_events``: stops with production time in the
  window (a stop crossing a boundary counts in every window it touches);
- ``mttr_s`` = downtime-event time inside PPT of the window / ``downtime_events``;
- counts: pieces counted in production time (see :mod:`actors.oee.windows`);
- ``performance`` = Σ(ideal cycle * pieces) / ``run_s``, not capped;
- ``teep`` = ``oee * PPT / window length``.

A ratio whose denominator is zero is ``None`` (JSON null), never 0 or 1, and
``oee`` is ``None`` when any factor is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.oee.counters import derive_counts
from actors.oee.params import LossBucket, MachineParams, ReasonCategory
from actors.oee.reasons import COMM_LOSS
from actors.oee.stops import Stop
from actors.oee.windows import Window


@dataclass(frozen=True, slots=True)
class KpiRecord:
    """OEE.md §6 quantities for one window. ``downtime_by_reason`` must not be mutated."""

    machine_id: str
    window: str  # "shift" | "order"
    key: str  # shift instance key ("Day@2025-08-22") or order id
    name: str  # shift name or order id
    start: float
    end: float
    closed: bool  # the window has ended (a closed window may still change, see open_stop)
    open_stop: bool  # a stop touching this window is still open (classified by length so far)
    scheduled_s: float
    planned_stop_s: float
    planned_production_s: float
    run_s: float
    downtime_s: float
    downtime_events: int
    micro_stops: int
    micro_stop_s: float
    total_count: int
    good_count: int
    reject_count: int
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    teep: float | None
    mtbf_s: float | None
    mttr_s: float | None
    downtime_by_reason: dict[str, float]
    pieces_outside_ppt: int  # counted in breaks or unscheduled time

    def as_dict(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-able)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "downtime_by_reason": dict(self.downtime_by_reason)
        }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator != 0 else None


def compute_kpis(
    window: Window,
    stops: Mapping[int, Stop],
    params: MachineParams,
    roles_seen: int,
    now: float,
) -> KpiRecord:
    """KPIs of ``window`` as of event time ``now``.

    ``now`` only matters for a stop still open (classified by its length so far).
    """
    micro_limit = params.micro_stop_s
    micro_is_downtime = params.micro_stop_bucket is LossBucket.AVAILABILITY
    planned = window.break_s
    unknown = window.unknown_s
    downtime = unknown
    by_reason: dict[str, float] = {COMM_LOSS: unknown} if unknown > 0 else {}
    micro_n = 0
    micro_s = 0.0
    events_n = 0
    events_s = 0.0
    open_stop = False
    for stop_id, piece in window.slices.items():
        stop = stops[stop_id]
        if stop.end is None:
            open_stop = True
        if stop.category is ReasonCategory.PLANNED:
            planned += piece.prod_s
            continue
        seconds = piece.prod_s
        if seconds <= 0:
            continue
        if stop.length(now) < micro_limit:
            micro_n += 1
            micro_s += seconds
            if not micro_is_downtime:
                continue
        else:
            events_n += 1
            events_s += seconds
        downtime += seconds
        by_reason[stop.reason] = by_reason.get(stop.reason, 0.0) + seconds
    scheduled = window.scheduled_s
    ppt = scheduled - planned
    run = min(max(ppt - downtime, 0.0), ppt) if ppt > 0 else 0.0
    total, good, reject, ideal_s = derive_counts(window.prod, roles_seen)
    outside_total = derive_counts(window.outside, roles_seen)[0]
    availability = _ratio(run, ppt)
    performance = _ratio(ideal_s, run)
    quality = _ratio(good, total)
    oee = (
        availability * performance * quality
        if availability is not None and performance is not None and quality is not None
        else None
    )
    length = window.length_s
    teep = oee * ppt / length if oee is not None and length > 0 else None
    end = window.end if window.end is not None else window.last
    return KpiRecord(
        machine_id=params.machine_id,
        window=window.kind,
        key=window.key,
        name=window.name,
        start=window.start,
        end=end,
        closed=window.end is not None,
        open_stop=open_stop,
        scheduled_s=scheduled,
        planned_stop_s=planned,
        planned_production_s=ppt,
        run_s=run,
        downtime_s=downtime,
        downtime_events=events_n,
        micro_stops=micro_n,
        micro_stop_s=micro_s,
        total_count=total,
        good_count=good,
        reject_count=reject,
        availability=availability,
        performance=performance,
        quality=quality,
        oee=oee,
        teep=teep,
        mtbf_s=_ratio(run, events_n),
        mttr_s=_ratio(events_s, events_n),
        downtime_by_reason=by_reason,
        pieces_outside_ppt=outside_total,
    )


@dataclass(frozen=True, slots=True)
class UnscheduledRecord:
    """What happened outside every shift (OEE.md §2): no KPI, but nothing hidden."""

    machine_id: str
    running_s: float
    stopped_s: float
    unknown_s: float
    stops: int  # stops with time outside every shift
    total_count: int
    good_count: int
    reject_count: int
