"""Quality station core: PLC counters, manual entries, dispositions, SPC alarms, summaries."""

from __future__ import annotations

import math

import pytest

from actors.actor import start_actor
from actors.messages import Quality, Sample
from actors.quality.actor import (
    AcknowledgeAlarm,
    Dispose,
    GetStationStatus,
    QualityStationActor,
    RecordInspection,
    SetStationOrder,
    StationSamples,
)
from actors.quality.core import QualityStationCore
from actors.quality.events import (
    AlarmAcknowledged,
    InspectionRecorded,
    RejectsDisposed,
    SpcLimitsSet,
    SpcViolation,
)
from actors.quality.params import CharacteristicParams, Disposition, StationParams
from actors.supervisor import ChildSpec, Supervisor
from edge.errors import CommandError
from tests.unit.actors_runtime.helpers import eventually

THICKNESS = CharacteristicParams(
    name="thickness", signal="thickness", unit="mm", lsl=6.0, usl=20.0, warmup=5
)
WEIGHT = CharacteristicParams(
    name="weight", lsl=90.0, usl=110.0, baseline_mean=100.0, baseline_range=1.128, rules=(1, 2)
)


def params(**kw: object) -> StationParams:
    fields: dict[str, object] = {
        "station_id": "AOI1",
        "machine_id": "M1",
        "feeds_machine_rejects": False,
        "pass_signal": "pass_count",
        "fail_signal": "fail_count",
        "counter_bits": 16,
        "reason_codes": ("D01", "D02"),
        "characteristics": (THICKNESS, WEIGHT),
    }
    fields.update(kw)
    return StationParams(**fields)  # type: ignore[arg-type]


def sample(signal: str, value: object, ts: float, quality: Quality = Quality.GOOD) -> Sample:
    return Sample("AOI1", signal, value, ts, quality)  # type: ignore[arg-type]


def test_plc_counters_baseline_deltas_and_rollover() -> None:
    core = QualityStationCore(params())
    core.set_order("WO1")
    core.apply(sample("pass_count", 65530, 1.0))  # baseline
    core.apply(sample("fail_count", 7, 1.0))  # baseline
    assert core.drain_events() == []
    core.apply(sample("pass_count", 3, 2.0))  # 16-bit rollover: 65536 - 65530 + 3 = 9
    core.apply(sample("fail_count", 9, 2.0))  # 2 failed
    core.apply(sample("fail_count", 11, 3.0, Quality.BAD))  # not applied
    events = core.drain_events()
    assert events == [
        InspectionRecorded("M1", 2.0, "AOI1", "WO1", 9, 0, "", "", "plc", False),
        InspectionRecorded("M1", 2.0, "AOI1", "WO1", 0, 2, "pending", "", "plc", False),
    ]
    summary = core.order_quality("WO1")
    assert (summary["inspected"], summary["passed"], summary["failed"], summary["pending"]) == (
        11,
        9,
        2,
        2,
    )


def test_plc_failures_take_the_configured_disposition() -> None:
    core = QualityStationCore(params(plc_disposition=Disposition.SCRAP))
    core.apply(sample("fail_count", 0, 1.0))
    core.apply(sample("fail_count", 3, 2.0))
    [event] = core.drain_events()
    assert isinstance(event, InspectionRecorded)
    assert (event.order_id, event.disposition, event.reason_code) == (None, "scrap", "plc")
    assert core.order_quality("")["by_reason"]["scrap"] == {"plc": 3}


def test_manual_inspection_and_dispositions() -> None:
    core = QualityStationCore(params())
    core.set_order("WO1")
    core.record_inspection(10, 3, 5.0)
    core.record_inspection(0, 2, 6.0, disposition="scrap", reason_code="D01")
    assert core.dispose(2, "rework", "D02", 7.0) == "WO1"
    assert core.dispose(1, Disposition.REUSE, "D01", 8.0, order_id="WO1") == "WO1"
    events = core.drain_events()
    assert events[-2:] == [
        RejectsDisposed("M1", 7.0, "AOI1", "WO1", 2, "rework", "D02"),
        RejectsDisposed("M1", 8.0, "AOI1", "WO1", 1, "reuse", "D01"),
    ]
    summary = core.order_quality("WO1")
    # 10 passed; 3 + 2 failed; 3 pending -> 2 rework + 1 reuse, 0 pending; 2 scrap at entry
    assert {k: summary[k] for k in ("passed", "failed", "pending", "scrap", "rework", "reuse")} == {
        "passed": 10,
        "failed": 5,
        "pending": 0,
        "scrap": 2,
        "rework": 2,
        "reuse": 1,
    }
    assert summary["by_reason"] == {
        "scrap": {"D01": 2},
        "rework": {"D02": 2},
        "reuse": {"D01": 1},
    }
    status = core.status()
    assert (status.inspected, status.pending, status.dispositions["rework"]) == (15, 0, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.record_inspection(-1, 0, 1.0), "passed must be a non-negative integer"),
        (lambda c: c.record_inspection(1, True, 1.0), "failed must be a non-negative integer"),
        (lambda c: c.record_inspection(0, 0, 1.0), "needs passed, failed or measurements"),
        (lambda c: c.record_inspection(1, 0, math.inf), "ts must be a finite"),
        (
            lambda c: c.record_inspection(0, 1, 1.0, disposition="melt"),
            "disposition must be one of",
        ),
        (lambda c: c.record_inspection(0, 1, 1.0, disposition="scrap"), "reason_code is required"),
        (
            lambda c: c.record_inspection(0, 1, 1.0, disposition="scrap", reason_code="X9"),
            "reason_code 'X9' is not one of station 'AOI1'",
        ),
        (
            lambda c: c.record_inspection(1, 0, 1.0, measurements={"color": [1.0]}),
            "has no characteristic 'color'",
        ),
        (
            lambda c: c.record_inspection(1, 0, 1.0, measurements={"weight": [1.0, float("nan")]}),
            "measurements.weight: values must be finite numbers",
        ),
        (lambda c: c.dispose(1, "scrap", "D01", 1.0), "exceeds the 0 pending failed pieces"),
        (lambda c: c.dispose(0, "scrap", "D01", 1.0), "count must be at least 1"),
        (lambda c: c.dispose(1, "pending", "D01", 1.0), "must be one of scrap, rework, reuse"),
        (lambda c: c.acknowledge("spc/AOI1/weight/9", 1.0, "op"), "no such alarm"),
    ],
)
def test_refused_commands_name_the_argument_and_change_nothing(call: object, message: str) -> None:
    core = QualityStationCore(params())
    before = core.snapshot()
    with pytest.raises(CommandError, match=message):
        call(core)  # type: ignore[operator]
    assert core.snapshot() == before
    assert core.drain_events() == []


def test_measurements_warm_up_then_raise_alarms() -> None:
    core = QualityStationCore(params())
    core.set_order("WO1")
    for n, value in enumerate([10.0, 12.0, 11.0, 13.0, 14.0]):
        core.apply(sample("thickness", value, 10.0 + n))
    [limits_set] = core.drain_events()
    assert isinstance(limits_set, SpcLimitsSet)
    # UCL = 12 + 3 * 1.5 / 1.128 = 15.989 (see tests/unit/spc)
    assert limits_set.limits["ucl"] == pytest.approx(12 + 4.5 / 1.128)
    core.apply(sample("thickness", 16.5, 20.0))
    core.apply(sample("thickness", 17.0, 21.0))
    violations = core.drain_events()
    assert [type(e) for e in violations] == [SpcViolation, SpcViolation]
    first, second = violations
    assert isinstance(first, SpcViolation) and isinstance(second, SpcViolation)
    assert (first.rule, first.chart, first.new_alarm, first.order_id) == (1, "x", True, "WO1")
    # Same characteristic, chart and rule while unacknowledged: the same alarm, counted.
    assert (second.alarm_id, second.new_alarm) == (first.alarm_id, False)
    [alarm] = core.active_alarms
    assert (alarm.alarm_id, alarm.count, alarm.last_value) == ("spc/AOI1/thickness/1", 2, 17.0)
    assert core.acknowledge(alarm.alarm_id, 22.0, "op1") is True
    assert core.drain_events() == [AlarmAcknowledged("M1", 22.0, "AOI1", alarm.alarm_id, "op1")]
    assert core.acknowledge(alarm.alarm_id, 23.0, "op1") is False  # repeated: harmless
    assert core.active_alarms == ()
    core.apply(sample("thickness", 17.5, 24.0))
    [again] = core.drain_events()
    assert isinstance(again, SpcViolation) and again.new_alarm
    assert again.alarm_id == "spc/AOI1/thickness/2"


def test_baseline_limits_apply_from_the_first_measurement() -> None:
    core = QualityStationCore(params())
    # weight: centre 100, MRbar 1.128 -> sigma 1, limits 97..103
    core.record_inspection(1, 0, 1.0, measurements={"weight": [100.0, 103.5]})
    events = core.drain_events()
    violation = events[-1]
    assert isinstance(violation, SpcViolation)
    assert (violation.characteristic, violation.rule, violation.value) == ("weight", 1, 103.5)


def test_order_quality_summary_by_hand() -> None:
    core = QualityStationCore(params())
    core.set_order("WO1")
    for n, value in enumerate([10.0, 12.0, 11.0, 13.0, 14.0]):
        core.apply(sample("thickness", value, 10.0 + n))
    core.set_order("WO2")
    core.apply(sample("thickness", 12.0, 20.0))
    thickness = core.order_quality("WO1")["characteristics"]["thickness"]
    # n 5, mean 12, min 10, max 14
    # stdev = sqrt(((-2)^2 + 0 + (-1)^2 + 1 + 2^2) / 4) = sqrt(10 / 4) = 1.5811388
    # moving ranges inside the order: 2, 1, 2, 1 -> sigma within 1.5 / 1.128
    # Cp = 14 * 1.128 / 9 = 1.7546667; Cpk = 6 * 1.128 / 4.5 = 1.504
    assert thickness["n"] == 5
    assert (thickness["mean"], thickness["min"], thickness["max"]) == (12.0, 10.0, 14.0)
    assert thickness["stdev"] == pytest.approx(1.5811388, abs=1e-6)
    assert thickness["sigma_within"] == pytest.approx(1.5 / 1.128)
    assert thickness["cp"] == pytest.approx(1.7546667, abs=1e-6)
    assert thickness["cpk"] == pytest.approx(1.504)
    assert thickness["violations"] == 0
    assert core.order_quality("WO2")["characteristics"]["thickness"]["n"] == 1
    core.forget_order("WO1")
    assert core.order_quality("WO1")["characteristics"]["thickness"]["n"] == 0


def test_snapshot_round_trip_keeps_counters_charts_and_alarms() -> None:
    core = QualityStationCore(params())
    core.set_order("WO1")
    core.apply(sample("pass_count", 100, 1.0))
    core.record_inspection(2, 1, 2.0, measurements={"weight": [104.0]})
    twin = QualityStationCore.restore(params(), core.snapshot())
    assert twin.snapshot() == core.snapshot()
    # The counter continues from the persisted reading: nothing lost, nothing doubled.
    twin.apply(sample("pass_count", 103, 3.0))
    passed = [e for e in twin.drain_events() if isinstance(e, InspectionRecorded)]
    assert [e.passed for e in passed] == [3]
    assert [a.alarm_id for a in twin.active_alarms] == ["spc/AOI1/weight/1"]


async def test_station_actor_feeds_machine_rejects_after_publishing() -> None:
    published: list[object] = []
    rejects: list[tuple[int, float]] = []

    def add_rejects(count: int, ts: float) -> None:
        published.append(("rejects", count))
        rejects.append((count, ts))

    actor = QualityStationActor(params(feeds_machine_rejects=True), published.extend, add_rejects)
    ref = await start_actor(actor)
    try:
        await ref.tell(SetStationOrder("WO1"))
        await ref.tell(StationSamples((sample("fail_count", 5, 1.0), sample("fail_count", 8, 2.0))))
        await ref.ask(RecordInspection(4, 1, 3.0, disposition="scrap", reason_code="D01"))
        assert await ref.ask(Dispose(3, "rework", "D02", 4.0)) == "WO1"
        with pytest.raises(CommandError, match="exceeds the 0 pending"):
            await ref.ask(Dispose(1, "rework", "D02", 5.0))
        with pytest.raises(CommandError, match="no such alarm"):
            await ref.ask(AcknowledgeAlarm("spc/AOI1/x/1", 5.0, "op"))
        status = await ref.ask(GetStationStatus())
    finally:
        await ref.stop()
    assert rejects == [(3, 2.0), (1, 3.0)]
    kinds = [type(e).__name__ if not isinstance(e, tuple) else e[0] for e in published]
    assert kinds == [
        "InspectionRecorded",
        "rejects",
        "InspectionRecorded",
        "rejects",
        "RejectsDisposed",
    ]
    assert (status.failed, status.pending, status.dispositions["scrap"]) == (4, 0, 1)


async def test_station_that_does_not_feed_the_machine_never_adds_rejects() -> None:
    rejects: list[int] = []

    def add_rejects(count: int, ts: float) -> None:
        rejects.append(count)

    ref = await start_actor(QualityStationActor(params(), lambda events: None, add_rejects))
    try:
        await ref.ask(RecordInspection(0, 4, 1.0))
    finally:
        await ref.stop()
    assert rejects == []


def test_charts_keep_the_plotted_points_with_the_rules_they_broke() -> None:
    core = QualityStationCore(params())
    for n, value in enumerate([10.0, 12.0, 11.0, 13.0, 14.0, 16.5, 12.0]):
        core.apply(sample("thickness", value, 10.0 + n))
    thickness, weight = core.charts()
    assert (thickness.characteristic, thickness.unit, thickness.lsl, thickness.usl) == (
        "thickness",
        "mm",
        6.0,
        20.0,
    )
    assert thickness.limits is not None and thickness.limits["ucl"] == pytest.approx(
        12 + 4.5 / 1.128
    )
    assert [(p.index, p.ts, p.value) for p in thickness.points] == [
        (n + 1, 10.0 + n, v) for n, v in enumerate([10.0, 12.0, 11.0, 13.0, 14.0, 16.5, 12.0])
    ]
    assert [p.range for p in thickness.points] == [None, 2.0, 1.0, 2.0, 1.0, 2.5, 4.5]
    # 16.5 > UCL 15.99: rule 1 on the X chart; MR 4.5 < the MR chart's UCL 3.267 * 1.5 = 4.9
    assert [p.rules for p in thickness.points] == [(), (), (), (), (), (1,), ()]
    assert [p.range_out for p in thickness.points] == [False] * 7
    assert weight.points == () and weight.limits is not None  # baseline: limits from the start
    twin = QualityStationCore.restore(params(), core.snapshot())
    assert twin.charts() == core.charts()


async def test_a_station_restart_hands_the_machine_no_reject_twice() -> None:
    rejects: list[int] = []

    def factory() -> QualityStationActor:
        return QualityStationActor(
            params(feeds_machine_rejects=True), lambda events: None, lambda n, ts: rejects.append(n)
        )

    # Under the line's supervisor, a snapshot every second (none falls in this test).
    async with Supervisor(name="line", restart_backoff_s=0.0) as supervisor:
        ref = await supervisor.add_child(ChildSpec(id="AOI1", factory=factory))
        await ref.tell(StationSamples((sample("fail_count", 5, 1.0),)))  # the baseline
        await ref.ask(GetStationStatus())
        assert ref.cut() is not None  # the state writer's cut
        await ref.tell(StationSamples((sample("fail_count", 8, 2.0),)))  # +3
        await ref.tell(Dispose(99, "rework", "D02", 2.5))  # more than pending: a crash
        await ref.tell(StationSamples((sample("fail_count", 10, 3.0),)))  # +2
        await eventually(lambda: ref.statistics().restarts == 1, timeout_s=5.0)
        status = await ref.ask(GetStationStatus())
    assert ref.statistics().restarts == 1
    assert rejects == [3, 2]  # not [3, 5]: the 3 after the snapshot were handed on already
    assert status.failed == 5
