"""The order runtime inside a real LineService: commands, piece attribution across order
changes, quality stations feeding (or not) their machine's rejects, lot scans, SPC alarms,
audits, and restart safety with the same state directory.

Machines here have no PLC: the tests tell the machine actors the counter samples a PLC
source would deliver, so every count below is known exactly (the simulator tests in
test_orders_sim.py run the same paths against real Modbus polling).
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any, cast

import pytest

from actors.machine import GetStatus, SampleBatch
from actors.messages import Sample
from actors.orders.events import BatchRecordCompleted, LotScanned, OrderStatusChanged
from actors.quality.events import AlarmAcknowledged, SpcViolation
from edge.commands import CommandAudit, OrderSpec
from edge.config import LineConfig, load_config
from edge.errors import CommandError
from edge.orders import OrdersRuntime, component
from edge.service import LineService

CONFIG = """
[line]
site = "T"
area = "a"
id = "L1"

[calendar]
timezone = "UTC"
[[calendar.shifts]]
name = "All"
start = "00:00"
end = "00:00"

# Counts total, good and reject (the tests send all three). The tests feed a
# poll's worth of pieces milliseconds apart: no plausibility cap on the steps.
[[machines]]
id = "M1"
ideal_cycle_s = 1.0
max_rate_factor = 1000.0

# Counts total pieces only: its rejects come from station Q2.
[[machines]]
id = "M2"
ideal_cycle_s = 1.0
max_rate_factor = 1000.0

[[quality_stations]]
id = "Q1"
machine = "M1"
feeds_machine_rejects = false   # M1's PLC counts its rejects
reason_codes = ["D01", "D02"]
[[quality_stations.characteristics]]
name = "weight"
lsl = 90.0
usl = 110.0
baseline_mean = 100.0
baseline_range = 1.128          # sigma = 1.128 / d2(2) = 1.128 / 1.128 = 1: limits 97..103
rules = [1, 2]

[[quality_stations]]
id = "Q2"
machine = "M2"                  # feeds M2's rejects: the default for a total-only machine

[opcua]
enabled = false
[metrics]
enabled = false
[storage]
state_dir = "state"
"""


def make_config(tmp_path: Path) -> LineConfig:
    path = tmp_path / "line.toml"
    path.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
    return load_config(path)


class Line:
    """A started service with the order runtime, and every event it published."""

    def __init__(self, service: LineService) -> None:
        self.service = service
        self.events: list[Any] = []
        service.bus.subscribe("test", self.events.extend)
        assert isinstance(service.commands, OrdersRuntime)
        self.rt: OrdersRuntime = service.commands
        self._last_ts = 0.0

    async def feed(self, machine: str, **counters: int) -> None:
        """One poll's counter readings, as a PLC source delivers them."""
        ts = max(time.time(), self._last_ts + 0.001)
        self._last_ts = ts
        samples = tuple(Sample(machine, role, value, ts) for role, value in counters.items())
        await self.service.machine_ref(machine).tell(SampleBatch(samples))

    async def shift(self, machine: str) -> tuple[int, int, int]:
        status = await self.service.machine_ref(machine).ask(GetStatus(time.time()))
        shift = status.current_shift
        assert shift is not None
        return shift.total_count, shift.good_count, shift.reject_count

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def record(self, order_id: str) -> Any:
        (event,) = [e for e in self.of(BatchRecordCompleted) if e.order_id == order_id]
        return event.record


MES = {"source": "mqtt", "user": "mes"}
OPERATOR = {"source": "opcua", "user": "op1"}


async def test_pieces_follow_the_order_across_an_order_change_and_a_hold(tmp_path: Path) -> None:
    async with LineService(make_config(tmp_path), components=[component]) as service:
        line = Line(service)
        rt = line.rt
        await line.feed("M1", total_count=100, good_count=90, reject_count=10)  # baseline
        await line.feed("M1", total_count=105, good_count=94, reject_count=11)  # no order yet
        await rt.download_order(OrderSpec("WO1", "P-1", 30, ("M1",), 0.5), **MES)
        await rt.release_order("WO1", **MES)
        started = await rt.start_order("WO1", **OPERATOR)
        assert (started.status, started.good_count) == ("running", 0)
        await line.feed("M1", total_count=125, good_count=112, reject_count=13)
        await line.feed("M1", total_count=140, good_count=126, reject_count=14)
        done = await rt.complete_order("WO1", **OPERATOR)
        # WO1: good (112 - 94) + (126 - 112) = 32; reject (13 - 11) + (14 - 13) = 3
        assert (done.status, done.good_count, done.reject_count) == ("completed", 32, 3)

        # The order changes mid-shift; the next one is held for a while.
        await rt.download_order(OrderSpec("WO2", "P-2", 100, ("M1",)), **MES)
        await rt.release_order("WO2", **MES)
        await rt.start_order("WO2", **OPERATOR)
        await line.feed("M1", total_count=150, good_count=135, reject_count=15)
        held = await rt.hold_order("WO2", "material", **OPERATOR)
        assert held.status == "held"
        await line.feed("M1", total_count=153, good_count=138, reject_count=15)  # no order
        await rt.resume_order("WO2", **OPERATOR)
        await line.feed("M1", total_count=160, good_count=144, reject_count=16)
        done = await rt.complete_order("WO2", **MES)
        # WO2: good (135 - 126) + (144 - 138) = 15; reject 1 + 1 = 2
        assert (done.good_count, done.reject_count) == (15, 2)
        # The shift saw every piece from the baseline: 160 - 100 = 60, 144 - 90, 16 - 10.
        assert await line.shift("M1") == (60, 54, 6)

    first, second = line.record("WO1"), line.record("WO2")
    assert (first.good_quantity, first.reject_quantity, first.total_quantity) == (32, 3, 35)
    assert first.machines["M1"]["kpis"]["segments"] == 1
    assert first.machines["M1"]["kpis"]["total_count"] == 35  # all of it in planned production
    assert (second.good_quantity, second.reject_quantity, second.total_quantity) == (15, 2, 17)
    kpis = second.machines["M1"]["kpis"]
    # Two run segments (before and after the hold), merged.
    assert (kpis["segments"], kpis["good_count"], kpis["reject_count"]) == (2, 15, 2)
    assert [h["status"] for h in second.history] == [
        "created",
        "released",
        "running",
        "held",
        "running",
        "completed",
    ]
    assert second.history[3]["reason"] == "material"
    assert [(e.order_id, e.status) for e in line.of(OrderStatusChanged)][:4] == [
        ("WO1", "created"),
        ("WO1", "released"),
        ("WO1", "running"),
        ("WO1", "completed"),
    ]
    # Commands are audited once: the runtime audits MQTT; OPC UA audits its own calls.
    audits = line.of(CommandAudit)
    assert {a.source for a in audits} == {"mqtt"}
    assert [a.command for a in audits][:2] == ["download_order", "release_order"]
    assert all(a.accepted for a in audits)


async def test_refused_commands_name_the_reason_change_nothing_and_are_audited(
    tmp_path: Path,
) -> None:
    async with LineService(make_config(tmp_path), components=[component]) as service:
        line = Line(service)
        rt = line.rt
        spec = OrderSpec("WO1", "P-1", 10, ("M1",))
        await rt.download_order(spec, **MES)
        assert (await rt.download_order(spec, **MES)).status == "created"  # a resend: no-op
        before = await rt.orders()
        refusals = [
            (rt.start_order("WO1", **MES), "cannot start order 'WO1': it is created; release"),
            (rt.download_order(OrderSpec("WO1", "P-9", 10, ("M1",)), **MES), "another spec"),
            (rt.download_order(OrderSpec("WO2", "P", 10, ("M9",)), **MES), "'M9': no such"),
            (rt.download_order(OrderSpec("WO2", "P", 0, ("M1",)), **MES), "target_quantity"),
            (rt.download_order(OrderSpec("W O", "P", 1, ("M1",)), **MES), "order_id must be"),
            (rt.hold_order("WO9", "x", **MES), "order_id 'WO9': no such order"),
            (rt.set_stop_reason("M9", "jam", **MES), "machine_id 'M9': no such machine"),
            (rt.acknowledge_alarm("spc/Q1/weight/7", **MES), "no such alarm"),
            (rt.record_inspection("Q9", passed=1, **MES), "station_id 'Q9': no such station"),
            (rt.record_lot_scan("S1", "L1", "M2", **MES), "machine 'M2' runs no order"),
        ]
        for call, reason in refusals:
            with pytest.raises(CommandError, match=reason):
                await call
        assert await rt.orders() == before
        await rt.release_order("WO1", **MES)
        await rt.start_order("WO1", **MES)
        await rt.download_order(OrderSpec("WO2", "P-2", 10, ("M1", "M2")), **MES)
        await rt.release_order("WO2", **MES)
        with pytest.raises(CommandError, match="machine 'M1' is running order 'WO1'"):
            await rt.start_order("WO2", **MES)
        await rt.complete_order("WO1", **MES)
        with pytest.raises(CommandError, match="order 'WO1' is completed; a completed order"):
            await rt.abort_order("WO1", "late", **MES)
        with pytest.raises(CommandError, match="already exists and is completed"):
            await rt.download_order(spec, **MES)
        aborted = await rt.abort_order("WO2", "cancelled by MES", **MES)
        assert aborted.status == "aborted"
    refused = [a for a in line.of(CommandAudit) if not a.accepted]
    assert len(refused) == len(refusals) + 3
    assert refused[0].command == "start_order"
    assert refused[0].result.startswith("cannot start order 'WO1'")
    # An aborted order has a batch record too, without pieces.
    record = line.record("WO2")
    assert (record.status, record.reason, record.start) == ("aborted", "cancelled by MES", None)


async def test_quality_stations_lots_and_alarms(tmp_path: Path) -> None:
    async with LineService(make_config(tmp_path), components=[component]) as service:
        line = Line(service)
        rt = line.rt
        await line.feed("M1", total_count=0, good_count=0, reject_count=0)
        await line.feed("M2", total_count=0)
        await rt.download_order(OrderSpec("WO3", "P-3", 50, ("M2",)), **MES)
        await rt.download_order(
            OrderSpec("WO4", "P-4", 50, ("M1",), produced_lot_id="OUT-4"), **MES
        )
        for order in ("WO3", "WO4"):
            await rt.release_order(order, **MES)
            await rt.start_order(order, **MES)

        # M2 counts only total pieces: Q2's failures are its rejects.
        await line.feed("M2", total_count=10)
        status = await rt.record_inspection("Q2", passed=7, failed=3, **MES)
        assert (status.order_id, status.pending) == ("WO3", 3)
        assert await rt.dispose_rejects("Q2", 2, "scrap", "R1", **MES) == "WO3"
        assert await rt.dispose_rejects("Q2", 1, "rework", "R2", **MES) == "WO3"
        with pytest.raises(CommandError, match="exceeds the 0 pending"):
            await rt.dispose_rejects("Q2", 1, "scrap", "R1", **MES)

        # M1's PLC counts rejects: Q1 reports its failures without adding them.
        await line.feed("M1", total_count=20, good_count=18, reject_count=2)
        await rt.record_inspection(
            "Q1", passed=18, failed=2, measurements={"weight": [100.0, 104.0]}, **MES
        )
        await rt.dispose_rejects("Q1", 2, "rework", "D02", **MES)
        with pytest.raises(CommandError, match="reason_code 'X' is not one of station 'Q1'"):
            await rt.dispose_rejects("Q1", 1, "scrap", "X", **MES)

        # 104 > UCL 103 (rule 1 on the value), and its moving range 4 > D4 * MRbar =
        # 3.267 * 1.128 = 3.685 (rule 1 on the range): two events, two alarms.
        violations = line.of(SpcViolation)
        assert [(v.station_id, v.chart, v.rule, v.value) for v in violations] == [
            ("Q1", "x", 1, 104.0),
            ("Q1", "range", 1, 4.0),
        ]
        assert {v.order_id for v in violations} == {"WO4"}
        alarms = await rt.active_alarms()
        assert [a.alarm_id for a in alarms] == [v.alarm_id for v in violations]
        for alarm in alarms:
            await rt.acknowledge_alarm(alarm.alarm_id, **OPERATOR)
        await rt.acknowledge_alarm(alarms[0].alarm_id, **OPERATOR)  # again: harmless
        assert await rt.active_alarms() == []
        assert len(line.of(AlarmAcknowledged)) == 2

        # Lot scans: a resend is ignored, a reused id refused.
        first = await rt.record_lot_scan("S1", "LOT-A", "M1", material="paste", **MES)
        again = await rt.record_lot_scan("S1", "LOT-A", "M1", material="paste", **OPERATOR)
        assert (first.recorded, again.recorded, first.scan.order_id) == (True, False, "WO4")
        with pytest.raises(CommandError, match="scan_id 'S1' was already used for lot 'LOT-A'"):
            await rt.record_lot_scan("S1", "LOT-B", "M1", **MES)
        await rt.record_lot_scan("S2", "LOT-B", "M1", order_id="WO4", quantity=5.0, **MES)
        assert len(line.of(LotScanned)) == 2

        await rt.complete_order("WO3", **MES)
        await rt.complete_order("WO4", **MES)
        # No double counting: M1's rejects are its PLC's 2, M2's are Q2's 3.
        assert await line.shift("M1") == (20, 18, 2)
        assert await line.shift("M2") == (10, 7, 3)

    wo3 = line.record("WO3")
    # M2: total 10, station rejects 3 -> good 7; rework = Q2's 1
    assert (wo3.good_quantity, wo3.reject_quantity, wo3.rework_quantity) == (7, 3, 1)
    (q2,) = wo3.quality
    assert {k: q2[k] for k in ("station_id", "passed", "failed", "pending", "scrap", "rework")} == {
        "station_id": "Q2",
        "passed": 7,
        "failed": 3,
        "pending": 0,
        "scrap": 2,
        "rework": 1,
    }
    assert q2["by_reason"]["scrap"] == {"R1": 2}
    wo4 = line.record("WO4")
    assert (wo4.good_quantity, wo4.reject_quantity, wo4.rework_quantity) == (18, 2, 2)
    (q1,) = wo4.quality
    assert (q1["feeds_machine_rejects"], q1["failed"], q1["rework"]) == (False, 2, 2)
    weight = q1["characteristics"]["weight"]
    # n 2, mean (100 + 104) / 2 = 102, two violations (value and range)
    assert (weight["n"], weight["mean"], weight["violations"]) == (2, 102.0, 2)
    assert wo4.produced_lot_id == "OUT-4"
    assert wo4.genealogy["consumed_lot_ids"] == ["LOT-A", "LOT-B"]
    assert [(s["scan_id"], s["quantity"]) for s in wo4.consumed_lots] == [
        ("S1", None),
        ("S2", 5.0),
    ]


async def test_orders_and_quality_state_survive_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with LineService(config, components=[component]) as service:
        line = Line(service)
        rt = line.rt
        await line.feed("M1", total_count=0, good_count=0, reject_count=0)
        await rt.download_order(OrderSpec("WO1", "P-1", 100, ("M1",), 0.8, "OP10"), **MES)
        await rt.release_order("WO1", **MES)
        await rt.start_order("WO1", **MES)
        await line.feed("M1", total_count=10, good_count=9, reject_count=1)
        await rt.record_lot_scan("S1", "LOT-A", "M1", **MES)
        await rt.record_inspection(
            "Q1", passed=5, failed=2, measurements={"weight": [100.0, 104.0]}, **MES
        )
        before = await rt.order_info("WO1")
        alarms = await rt.active_alarms()
        assert (before.good_count, before.reject_count, len(alarms)) == (9, 1, 2)

    async with LineService(config, components=[component]) as service:
        line = Line(service)
        rt = line.rt
        assert await rt.order_info("WO1") == before
        view = await rt.order_view("WO1")
        assert (view.ideal_cycle_s, view.started_at is not None) == (0.8, True)
        station = await rt.station_status("Q1")
        assert (station.order_id, station.passed, station.failed, station.pending) == (
            "WO1",
            5,
            2,
            2,
        )
        assert await rt.active_alarms() == alarms
        assert (await rt.record_lot_scan("S1", "LOT-A", "M1", **MES)).recorded is False
        # The machine continues from its persisted counters: +15 total, +14 good, +1 reject.
        await line.feed("M1", total_count=25, good_count=23, reject_count=2)
        await rt.dispose_rejects("Q1", 2, "scrap", "D01", **MES)
        done = await rt.complete_order("WO1", **MES)
        assert (done.good_count, done.reject_count) == (23, 2)
        record = line.record("WO1")
        assert [s["scan_id"] for s in record.consumed_lots] == ["S1"]
        (q1,) = record.quality
        assert (q1["passed"], q1["failed"], q1["scrap"], q1["pending"]) == (5, 2, 2, 0)
        assert q1["characteristics"]["weight"]["n"] == 2

    async with LineService(config, components=[component]) as service:
        rt = cast(OrdersRuntime, service.commands)
        assert rt.batch_record("WO1") == record
        assert (await rt.order_info("WO1")).status == "completed"
        assert [i.order_id for i in await rt.orders()] == ["WO1"]
        with pytest.raises(CommandError, match="already exists and is completed"):
            await rt.download_order(OrderSpec("WO1", "P-1", 100, ("M1",)), **MES)


async def test_a_command_whose_caller_gives_up_still_completes_whole(tmp_path: Path) -> None:
    async with LineService(make_config(tmp_path), components=[component]) as service:
        line = Line(service)
        rt = line.rt
        await line.feed("M1", total_count=0, good_count=0, reject_count=0)
        await rt.download_order(OrderSpec("WO1", "P-1", 10, ("M1",)), **MES)
        await rt.release_order("WO1", **MES)
        await rt.start_order("WO1", **MES)
        await line.feed("M1", total_count=4, good_count=4, reject_count=0)
        caller = asyncio.ensure_future(rt.complete_order("WO1", **MES))
        await asyncio.sleep(0)  # the command has started...
        caller.cancel()  # ...and its caller leaves (a front end's timeout)
        with pytest.raises(asyncio.CancelledError):
            await caller
        deadline = time.monotonic() + 5
        while rt.batch_record("WO1") is None:
            assert time.monotonic() < deadline, "the command was cut short"
            await asyncio.sleep(0.01)
        assert (await rt.order_info("WO1")).good_count == 4
        # The machine is off the order: a new order can start on it.
        await rt.download_order(OrderSpec("WO2", "P-1", 10, ("M1",)), **MES)
        await rt.release_order("WO2", **MES)
        assert (await rt.start_order("WO2", **MES)).status == "running"
    assert [a.accepted for a in line.of(CommandAudit) if a.command == "complete_order"] == [True]
