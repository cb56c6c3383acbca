"""The line display's documents: the Pareto, an order's expected end, hourly counts."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from actors.oee.events import PiecesCounted, StateChanged
from actors.oee.state import MachineState
from actors.orders.core import OrderStatus, OrderView
from edge.serve.web.history import LineHistory
from edge.serve.web.views import expected_end, pareto


class _Shift:
    def __init__(self, by_reason: dict[str, float]) -> None:
        self.downtime_by_reason = by_reason


class _Status:
    def __init__(self, by_reason: dict[str, float] | None) -> None:
        self.current_shift = None if by_reason is None else _Shift(by_reason)


def test_pareto_sums_the_machines_and_ranks_the_reasons() -> None:
    statuses = [
        _Status({"jam": 300.0, "comm_loss": 60.0}),
        _Status({"jam": 100.0, "cleaning": 200.0, "idle": 0.0}),
        _Status(None),  # outside every shift
        None,  # no answer
    ]
    items = pareto(statuses)  # type: ignore[arg-type]
    # jam 400, cleaning 200, comm_loss 60 of 660 s; "idle" with 0 s is left out
    assert [(i["reason"], i["seconds"]) for i in items] == [
        ("jam", 400.0),
        ("cleaning", 200.0),
        ("comm_loss", 60.0),
    ]
    assert [i["share"] for i in items] == pytest.approx([400 / 660, 200 / 660, 60 / 660])
    assert [i["cumulative"] for i in items] == pytest.approx([400 / 660, 600 / 660, 1.0])


def test_pareto_sums_the_tail_into_other_reasons() -> None:
    items = pareto([_Status({f"r{n}": float(n) for n in range(1, 6)})], top=3)  # type: ignore[list-item]
    # r5 5 s, r4 4 s, the rest 3 + 2 + 1 = 6 s
    assert [(i["reason"], i["seconds"], i["other"]) for i in items] == [
        ("r5", 5.0, False),
        ("r4", 4.0, False),
        ("other reasons", 6.0, True),
    ]
    assert pareto([]) == []


def _order(status: OrderStatus, good: int, started: float | None) -> OrderView:
    return OrderView(
        order_id="WO1",
        status=status,
        product="P",
        target_quantity=1000,
        good_quantity=good,
        reject_quantity=0,
        total_quantity=good,
        machine_ids=("M1",),
        ideal_cycle_s=None,
        started_at=started,
        ended_at=None,
    )


def test_expected_end_at_the_orders_own_rate_else_the_ideal_cycle() -> None:
    now = 10_000.0
    # 250 good in 1000 s: 4 s a piece; 750 to go -> 3000 s
    assert expected_end(_order(OrderStatus.RUNNING, 250, now - 1000), now, 1.5) == now + 3000
    # nothing good yet: 1000 pieces at the ideal 1.5 s
    assert expected_end(_order(OrderStatus.RUNNING, 0, now - 10), now, 1.5) == now + 1500
    assert expected_end(_order(OrderStatus.RUNNING, 0, now - 10), now, None) is None
    assert expected_end(_order(OrderStatus.HELD, 250, now - 1000), now, 1.5) is None
    assert expected_end(_order(OrderStatus.RUNNING, 1000, now - 1000), now, 1.5) is None


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_hourly_counts_in_local_hours_with_derived_good_pieces() -> None:
    history = LineHistory(["M1", "M2"], "Asia/Kolkata")  # UTC+05:30: hours are not UTC hours
    tz = ZoneInfo("Asia/Kolkata")
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=tz).timestamp()
    history.consume(
        [
            PiecesCounted("M1", t0 + 10, "total_count", 100, None),
            PiecesCounted("M1", t0 + 20, "reject_count", 4, None),
            PiecesCounted("M1", t0 + 3700, "total_count", 50, None),  # 09:01 local
            # M1's PLC counts its rejects: a station's rejects would count them twice
            # (docs/orders-and-quality.md), so they are not added.
            PiecesCounted("M1", t0 + 3800, "quality_station_reject", 2, None),
            PiecesCounted("M2", t0 + 10, "total_count", 7, None),
            PiecesCounted("M9", t0 + 10, "total_count", 7, None),  # not on the line: ignored
        ]
    )
    hours = history.hourly("M1", t0 + 1800, t0 + 3 * 3600 - 1)
    assert [(h.start, h.total, h.good, h.reject) for h in hours] == [
        (t0, 100, 96, 4),
        (t0 + 3600, 50, 50, 0),
        (t0 + 7200, 0, 0, 0),
    ]
    # M2 counts total pieces only: the station's rejects are its rejects.
    history.consume([PiecesCounted("M2", t0 + 20, "quality_station_reject", 3, None)])
    [m2] = history.hourly("M2", t0, t0 + 3599)
    assert (m2.total, m2.good, m2.reject) == (7, 4, 3)
    twin = LineHistory(["M1", "M2"], "Asia/Kolkata")
    twin.restore(history.snapshot())
    assert twin.hourly("M1", t0, t0 + 7200) == history.hourly("M1", t0, t0 + 7200)


def test_a_dst_day_has_its_real_local_hours() -> None:
    history = LineHistory(["M1"], "Europe/Berlin")
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 00:00-04:00 local is 3 real hours.
    start = _ts("2026-03-29T00:00:00+01:00")
    end = _ts("2026-03-29T04:00:00+02:00")
    starts = [h.start for h in history.hourly("M1", start, end)]
    assert [datetime.fromtimestamp(s, UTC).hour for s in starts] == [23, 0, 1]


def test_unknown_spans_from_state_changes() -> None:
    history = LineHistory(["M1"], "UTC")
    history.consume(
        [
            StateChanged("M1", 100.0, MachineState.UNKNOWN, MachineState.RUNNING),
            StateChanged("M1", 160.0, MachineState.RUNNING, MachineState.UNKNOWN),
            StateChanged("M1", 300.0, MachineState.UNKNOWN, MachineState.STOPPED),
        ]
    )
    assert history.unknown_spans("M1", 0.0, 400.0) == [(100.0, 160.0), (300.0, 400.0)]
    assert history.unknown_spans("M1", 150.0, 350.0) == [(150.0, 160.0), (300.0, 350.0)]
    twin = LineHistory(["M1"], "UTC")
    twin.restore(history.snapshot())
    assert twin.unknown_spans("M1", 0.0, 400.0) == [(100.0, 160.0), (300.0, 400.0)]
