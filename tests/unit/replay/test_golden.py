"""Golden replays: every expected number is worked out by hand from OEE.md (see comments).

Timestamps are whole seconds, so time sums are exact floats; ratios are compared
with a relative tolerance of 1e-12.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.replay.helpers import config, line, replay, shifts

REPORT_KEYS = [
    "shift",
    "start",
    "end",
    "observed_start",
    "observed_end",
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
    "availability",
    "performance",
    "quality",
    "oee",
    "teep",
    "mtbf_s",
    "mttr_s",
    "downtime_by_reason",
]


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-12)


def test_day_shift_with_break(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """
        [calendar]
        timezone = "Asia/Bangkok"
        [[calendar.shifts]]
        name = "Day"
        start = "08:00"
        end = "16:00"
        breaks = ["12:00-12:30"]
        [[machines]]
        id = "SMT01"
        ideal_cycle_s = 2.0
        reasons = [ { code = 17, name = "jam at infeed" } ]
        """,
    )
    # Bangkok is UTC+7: the shift is 01:00-09:00Z, the break 05:00-05:30Z.
    d = "2025-08-22T"
    lines = [
        line(d + "01:00:00Z", "SMT01", "running", True, work_order_id="WO1"),
        line(d + "01:00:00Z", "SMT01", "total_count", 1000),  # baselines
        line(d + "01:00:00Z", "SMT01", "good_count", 1000),
        line(d + "02:00:00Z", "SMT01", "total_count", 2500),  # +1500
        line(d + "02:00:00Z", "SMT01", "good_count", 2470),  # +1470
        line(d + "02:00:00Z", "SMT01", "running", False),  # stop 1 ...
        line(d + "02:00:00Z", "SMT01", "fault_code", 17),  # ... a jam
        line(d + "02:30:00Z", "SMT01", "running", True),  # 1800 s: downtime event
        line(d + "02:30:00Z", "SMT01", "fault_code", 0),
        line(d + "03:00:00Z", "SMT01", "running", False),  # stop 2, no fault
        line(d + "03:01:00Z", "SMT01", "running", True),  # 60 s: micro-stop
        line(d + "05:10:00Z", "SMT01", "total_count", 2600),  # +100 in the break
        line(d + "05:10:00Z", "SMT01", "good_count", 2570),  # +100 in the break
        line(d + "08:00:00Z", "SMT01", "total_count", 7000),  # +4400
        line(d + "08:00:00Z", "SMT01", "good_count", 6900),  # +4330
        line(d + "09:00:00Z", "SMT01", "temp_zone1", 41.5),  # the trace ends at 09:00
    ]
    report, err = replay(cfg, lines)
    assert err == ""
    [day] = shifts(report, "SMT01")
    assert list(day) == REPORT_KEYS
    # scheduled 8 h = 28800; the 30 min break is planned stop time: PPT = 27000.
    # Downtime: the 1800 s jam. The 60 s micro-stop stays in run time (performance
    # bucket): run = 27000 - 1800 = 25200.
    # Counts inside PPT: total 1500 + 4400 = 5900, good 1470 + 4330 = 5800,
    # reject = total - good = 100; the break's 100 pieces are outside PPT.
    availability = 25200 / 27000
    performance = 5900 * 2.0 / 25200
    quality = 5800 / 5900
    oee = availability * performance * quality
    assert day == {
        "shift": "Day",
        "start": "2025-08-22T01:00:00Z",
        "end": "2025-08-22T09:00:00Z",
        "observed_start": "2025-08-22T01:00:00Z",  # the trace covers the whole shift
        "observed_end": "2025-08-22T09:00:00Z",
        "scheduled_s": 28800.0,
        "planned_stop_s": 1800.0,
        "planned_production_s": 27000.0,
        "run_s": 25200.0,
        "downtime_s": 1800.0,
        "downtime_events": 1,
        "micro_stops": 1,
        "micro_stop_s": 60.0,
        "total_count": 5900,
        "good_count": 5800,
        "reject_count": 100,
        "availability": approx(availability),
        "performance": approx(performance),
        "quality": approx(quality),
        "oee": approx(oee),
        "teep": approx(oee * 27000 / 28800),
        "mtbf_s": 25200.0,  # run_s / 1 event
        "mttr_s": 1800.0,  # 1800 s of events / 1 event
        "downtime_by_reason": {"jam at infeed": 1800.0},
    }


def test_night_shift_across_midnight_and_spring_dst(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """
        [calendar]
        timezone = "Europe/Berlin"
        [[calendar.shifts]]
        name = "Night"
        start = "22:00"
        end = "06:00"
        breaks = ["01:00-01:15"]
        [[machines]]
        id = "M1"
        ideal_cycle_s = 1.5
        """,
    )
    # 2025-03-29 22:00 CET = 21:00Z; clocks jump 02:00 CET -> 03:00 CEST at 01:00Z;
    # 2025-03-30 06:00 CEST = 04:00Z: the night lasts 7 h = 25200 s of real time.
    # The break 01:00-01:15 CET is 00:00-00:15Z.
    lines = [
        line("2025-03-29T20:00:00Z", "M1", "running", True),  # before the shift
        line("2025-03-29T20:00:00Z", "M1", "total_count", 0),
        line("2025-03-29T20:30:00Z", "M1", "total_count", 900),  # unscheduled pieces
        line("2025-03-29T23:00:00Z", "M1", "total_count", 4500),  # +3600
        line("2025-03-30T00:30:00Z", "M1", "running", False),  # a stop across the DST change
        line("2025-03-30T00:30:00Z", "M1", "fault_code", 3),  # not in the reason table
        line("2025-03-30T01:30:00Z", "M1", "running", True),  # 3600 s of real time
        line("2025-03-30T01:30:00Z", "M1", "fault_code", 0),
        line("2025-03-30T03:00:00Z", "M1", "total_count", 10000),  # +5500
        line("2025-03-30T03:59:00Z", "M1", "total_count", 12000),  # +2000
        line("2025-03-30T05:00:00Z", "M1", "total_count", 12100),  # after the shift
    ]
    report, err = replay(cfg, lines)
    assert err == ""
    [night] = shifts(report, "M1")
    # PPT = 25200 - 900 (break) = 24300; downtime 3600 (one event, reason "3");
    # run = 20700. Pieces in the shift: 3600 + 5500 + 2000 = 11100, all good (no
    # good/reject counter, no quality station).
    availability = 20700 / 24300
    performance = 11100 * 1.5 / 20700
    oee = availability * performance * 1.0
    assert night == {
        "shift": "Night",
        "start": "2025-03-29T21:00:00Z",
        "end": "2025-03-30T04:00:00Z",
        "observed_start": "2025-03-29T21:00:00Z",  # the trace covers the whole shift
        "observed_end": "2025-03-30T04:00:00Z",
        "scheduled_s": 25200.0,
        "planned_stop_s": 900.0,
        "planned_production_s": 24300.0,
        "run_s": 20700.0,
        "downtime_s": 3600.0,
        "downtime_events": 1,
        "micro_stops": 0,
        "micro_stop_s": 0.0,
        "total_count": 11100,
        "good_count": 11100,
        "reject_count": 0,
        "availability": approx(availability),
        "performance": approx(performance),
        "quality": 1.0,
        "oee": approx(oee),
        "teep": approx(oee * 24300 / 25200),
        "mtbf_s": 20700.0,
        "mttr_s": 3600.0,
        "downtime_by_reason": {"3": 3600.0},
    }


UTC_EARLY = """
    [calendar]
    timezone = "UTC"
    [[calendar.shifts]]
    name = "A"
    start = "06:00"
    end = "14:00"
"""


def test_counter_rollover_16_bit_and_reset_32_bit(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        UTC_EARLY
        + """
        [[machines]]
        id = "R16"
        ideal_cycle_s = 0.5
        counter_bits = 16
        [[machines]]
        id = "R32"
        ideal_cycle_s = 0.5
        """,
    )
    d = "2025-08-22T"
    lines = [
        line(d + "06:00:00Z", "R16", "running", True),
        line(d + "06:00:00Z", "R16", "total_count", 60000),  # baseline
        line(d + "06:00:00Z", "R32", "running", True),
        line(d + "06:00:00Z", "R32", "total_count", 5000),  # baseline
        line(d + "07:00:00Z", "R16", "total_count", 65000),  # +5000
        line(d + "07:00:00Z", "R32", "total_count", 9000),  # +4000
        # 16 bit: 65000 >= 0.75 * 65536 = 49152 and 300 < 0.25 * 65536 = 16384:
        # rollover, 65536 - 65000 + 300 = 836.
        line(d + "08:00:00Z", "R16", "total_count", 300),
        # 32 bit: 9000 < 0.75 * 2^32: a PLC reset, delta = the new reading, 120.
        line(d + "08:00:00Z", "R32", "total_count", 120),
        line(d + "09:00:00Z", "R16", "total_count", 10000),  # +9700
        line(d + "09:00:00Z", "R32", "total_count", 1120),  # +1000
        # 16 bit: 10000 < 49152, so a decrease to 100 is a reset: +100.
        line(d + "10:00:00Z", "R16", "total_count", 100),
    ]
    report, err = replay(cfg, lines)
    [r16] = shifts(report, "R16")
    [r32] = shifts(report, "R32")
    assert r16["total_count"] == 5000 + 836 + 9700 + 100
    assert r32["total_count"] == 4000 + 120 + 1000
    # Resets are reported (a warning each); the rollover is not.
    assert "R32: total_count went from 9000 to 120" in err
    assert "R16: total_count went from 10000 to 100" in err
    assert "65000 to 300" not in err
    # Span 06:00-10:00: 14400 s of running; performance = pieces * 0.5 / 14400.
    assert r16["run_s"] == 14400.0
    assert r16["performance"] == approx(15636 * 0.5 / 14400)
    assert r32["performance"] == approx(5120 * 0.5 / 14400)


def test_micro_stop_threshold_in_both_loss_buckets(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        UTC_EARLY
        + """
        [[machines]]
        id = "MP"
        ideal_cycle_s = 2.0
        micro_stop_s = 120
        micro_stop_bucket = "performance"
        reasons = [ { code = 17, name = "jam at infeed" } ]
        [[machines]]
        id = "MA"
        ideal_cycle_s = 2.0
        micro_stop_s = 120
        micro_stop_bucket = "availability"
        reasons = [ { code = 17, name = "jam at infeed" } ]
        """,
    )
    d = "2025-08-22T"
    lines = []
    for machine in ("MP", "MA"):
        lines += [
            line(d + "06:00:00Z", machine, "running", True),
            line(d + "06:10:00Z", machine, "running", False),
            line(d + "06:10:00Z", machine, "fault_code", 17),
            line(d + "06:12:00Z", machine, "running", True),  # exactly 120 s: downtime event
            line(d + "06:12:00Z", machine, "fault_code", 0),
            line(d + "06:20:00Z", machine, "running", False),
            line(d + "06:21:59Z", machine, "running", True),  # 119 s: micro-stop, unassigned
            line(d + "06:30:00Z", machine, "running", False),
            line(d + "06:30:00Z", machine, "fault_code", 3),
            line(d + "06:30:30Z", machine, "running", True),  # 30 s: micro-stop, reason "3"
            line(d + "06:30:30Z", machine, "fault_code", 0),
        ]
    lines.append(line(d + "07:00:00Z", "MP", "temp", 20.0))  # span 06:00-07:00
    report, err = replay(cfg, lines)
    assert err == ""
    [mp] = shifts(report, "MP")
    [ma] = shifts(report, "MA")
    common = {
        "scheduled_s": 3600.0,
        "planned_stop_s": 0.0,
        "planned_production_s": 3600.0,
        "downtime_events": 1,
        "micro_stops": 2,
        "micro_stop_s": 149.0,  # 119 + 30
        "mttr_s": 120.0,  # only the downtime event's time
        "total_count": 0,
        "quality": None,  # no pieces: 0 / 0
        "oee": None,
        "teep": None,
    }
    # Performance bucket: micro-stop time stays in run time. run = 3600 - 120.
    assert mp | common == mp
    assert mp["downtime_s"] == 120.0
    assert mp["run_s"] == 3480.0
    assert mp["availability"] == approx(3480 / 3600)
    assert mp["performance"] == 0.0  # 0 pieces / 3480 s: a real zero, not null
    assert mp["mtbf_s"] == 3480.0
    assert mp["downtime_by_reason"] == {"jam at infeed": 120.0}
    # Availability bucket: micro-stops are downtime (but not events).
    # downtime = 120 + 119 + 30 = 269, run = 3331.
    assert ma | common == ma
    assert ma["downtime_s"] == 269.0
    assert ma["run_s"] == 3331.0
    assert ma["availability"] == approx(3331 / 3600)
    assert ma["mtbf_s"] == 3331.0
    assert ma["downtime_by_reason"] == {"jam at infeed": 120.0, "unassigned": 119.0, "3": 30.0}


def test_planned_reason_stops_are_planned_whatever_their_length(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        UTC_EARLY
        + """
        [[machines]]
        id = "P"
        ideal_cycle_s = 2.0
        reasons = [ { code = 40, name = "cleaning", category = "planned" } ]
        """,
    )
    d = "2025-08-22T"
    lines = [
        line(d + "06:00:00Z", "P", "running", True),
        line(d + "06:00:00Z", "P", "total_count", 0),
        line(d + "06:30:00Z", "P", "running", False),
        line(d + "06:30:00Z", "P", "fault_code", 40),
        line(d + "06:50:00Z", "P", "running", True),  # 1200 s cleaning
        line(d + "06:50:00Z", "P", "fault_code", 0),
        line(d + "07:00:00Z", "P", "fault_code", 40),
        line(d + "07:00:00Z", "P", "running", False),  # fault present at the start
        line(d + "07:01:00Z", "P", "running", True),  # 60 s cleaning: not a micro-stop
        line(d + "07:01:00Z", "P", "fault_code", 0),
        line(d + "07:30:00Z", "P", "total_count", 1500),
        line(d + "08:00:00Z", "P", "temp", 20.0),
    ]
    report, err = replay(cfg, lines)
    assert err == ""
    [p] = shifts(report, "P")
    # scheduled 7200; planned stop 1200 + 60 = 1260; PPT 5940, no downtime.
    assert p["scheduled_s"] == 7200.0
    assert p["planned_stop_s"] == 1260.0
    assert p["planned_production_s"] == 5940.0
    assert p["downtime_s"] == 0.0
    assert p["run_s"] == 5940.0
    assert p["micro_stops"] == 0
    assert p["micro_stop_s"] == 0.0
    assert p["downtime_events"] == 0
    assert p["downtime_by_reason"] == {}
    assert p["availability"] == 1.0
    assert p["performance"] == approx(1500 * 2.0 / 5940)
    assert p["mtbf_s"] is None  # no downtime event: run / 0
    assert p["mttr_s"] is None


def test_stop_crossing_a_shift_boundary_is_classified_by_its_whole_length(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """
        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "Early"
        start = "06:00"
        end = "14:00"
        [[calendar.shifts]]
        name = "Late"
        start = "14:00"
        end = "22:00"
        [[machines]]
        id = "M1"
        ideal_cycle_s = 2.0
        [[machines]]
        id = "M2"
        ideal_cycle_s = 2.0
        """,
    )
    d = "2025-08-22T"
    lines = [
        line(d + "13:00:00Z", "M1", "running", True),
        line(d + "13:00:00Z", "M2", "running", True),
        line(d + "13:59:00Z", "M1", "running", False),  # M1: 13:59:00-14:01:30 = 150 s
        line(d + "13:59:20Z", "M2", "running", False),  # M2: 13:59:20-14:01:00 = 100 s
        line(d + "14:01:00Z", "M2", "running", True),
        line(d + "14:01:30Z", "M1", "running", True),
        line(d + "15:00:00Z", "M1", "temp", 20.0),
    ]
    report, err = replay(cfg, lines)
    assert err == ""
    early1, late1 = shifts(report, "M1")
    early2, late2 = shifts(report, "M2")
    # start/end name the shift instance (its calendar bounds); the observed span is
    # the part of it the trace covers (13:00-15:00), which scheduled_s measures.
    assert (early1["shift"], early1["start"], early1["end"]) == (
        "Early",
        "2025-08-22T06:00:00Z",
        "2025-08-22T14:00:00Z",
    )
    assert (early1["observed_start"], early1["observed_end"]) == (
        "2025-08-22T13:00:00Z",
        "2025-08-22T14:00:00Z",
    )
    assert early1["scheduled_s"] == 3600.0
    assert (late1["shift"], late1["start"], late1["end"]) == (
        "Late",
        "2025-08-22T14:00:00Z",
        "2025-08-22T22:00:00Z",
    )
    assert (late1["observed_start"], late1["observed_end"]) == (
        "2025-08-22T14:00:00Z",
        "2025-08-22T15:00:00Z",
    )
    assert late1["scheduled_s"] == 3600.0
    # M1: 150 s >= 120 s, a downtime event in both shifts although each part
    # (60 s and 90 s) is shorter than the threshold.
    assert early1["downtime_s"] == 60.0
    assert early1["downtime_events"] == 1
    assert early1["micro_stops"] == 0
    assert early1["run_s"] == 3540.0
    assert early1["mttr_s"] == 60.0
    assert early1["downtime_by_reason"] == {"unassigned": 60.0}
    assert late1["downtime_s"] == 90.0
    assert late1["downtime_events"] == 1
    assert late1["run_s"] == 3510.0
    assert late1["mttr_s"] == 90.0
    # M2: 100 s < 120 s, a micro-stop in both shifts, its time split 40 s / 60 s,
    # inside run time (performance bucket).
    assert (early2["micro_stops"], early2["micro_stop_s"]) == (1, 40.0)
    assert (late2["micro_stops"], late2["micro_stop_s"]) == (1, 60.0)
    assert early2["downtime_s"] == late2["downtime_s"] == 0.0
    assert early2["run_s"] == late2["run_s"] == 3600.0
    assert early2["downtime_events"] == 0


def test_count_only_stop_inference(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        UTC_EARLY
        + """
        [[machines]]
        id = "C"
        ideal_cycle_s = 2.0
        state_source = "counts"
        """,
    )
    # stop_after_s defaults to 5 x 2 s = 10 s.
    base = 1755842400  # 2025-08-22T06:00:00Z

    def at(offset: int) -> str:
        minutes, seconds = divmod(offset, 60)
        return f"2025-08-22T06:{minutes:02d}:{seconds:02d}Z"

    assert at(0) == "2025-08-22T06:00:00Z" and base % 86400 == 6 * 3600
    lines = [line(at(2 * k), "C", "total_count", k) for k in range(31)]  # 06:00:00-06:01:00
    lines.append(line(at(65), "C", "temp", 20.0))  # 06:01:05: before the deadline 06:01:10
    lines.append(line(at(300), "C", "total_count", 31))  # 06:05:00: counts again
    lines += [line(at(300 + 2 * k), "C", "total_count", 31 + k) for k in range(1, 151)]
    lines.append(line(at(720), "C", "temp", 20.0))  # 06:12:00: the trace ends
    report, err = replay(cfg, lines)
    assert err == ""
    [c] = shifts(report, "C")
    # Running from the first sample (06:00:00). Last count 06:01:00; no count for
    # more than 10 s, so a stop back-dated to 06:01:00 + 2 s = 06:01:02, detected
    # at 06:05:00 where the next count also ends it: 238 s, a downtime event.
    # Counts resume every 2 s to 06:10:00; at the end (06:12:00) no count since
    # 06:10:00: an open stop from 06:10:02, 118 s so far: a micro-stop (run time).
    # Pieces: 30 (to 06:01:00) + 1 (06:05:00) + 150 (06:05:02-06:10:00) = 181.
    assert c["scheduled_s"] == 720.0
    assert c["downtime_s"] == 238.0
    assert c["downtime_events"] == 1
    assert (c["micro_stops"], c["micro_stop_s"]) == (1, 118.0)
    assert c["run_s"] == 482.0
    assert c["total_count"] == 181
    assert c["performance"] == approx(181 * 2.0 / 482)
    assert c["availability"] == approx(482 / 720)
    assert c["mttr_s"] == 238.0
    assert c["downtime_by_reason"] == {"unassigned": 238.0}


BANGKOK_DAY = """
    [calendar]
    timezone = "Asia/Bangkok"
    [[calendar.shifts]]
    name = "Day"
    start = "08:00"
    end = "16:00"
    breaks = ["12:00-12:30"]
"""


def test_zero_denominators_are_null_inside_a_break(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        BANGKOK_DAY
        + """
        [[machines]]
        id = "SMT01"
        ideal_cycle_s = 2.0
        [[machines]]
        id = "SMT02"
        ideal_cycle_s = 2.0
        """,
    )
    # The whole trace lies in the break (05:00-05:30Z).
    lines = [
        line("2025-08-22T05:05:00Z", "SMT01", "running", True),
        line("2025-08-22T05:05:00Z", "SMT01", "total_count", 0),
        line("2025-08-22T05:25:00Z", "SMT01", "total_count", 600),
    ]
    report, _ = replay(cfg, lines)
    for machine in ("SMT01", "SMT02"):
        [day] = shifts(report, machine)
        # scheduled 1200 s, all break: PPT 0, so availability = 0/0, performance
        # = 0/0 (run 0), quality = 0/0 (the 600 pieces are outside PPT).
        assert day["scheduled_s"] == 1200.0
        assert day["planned_stop_s"] == 1200.0
        assert day["planned_production_s"] == 0.0
        assert day["run_s"] == 0.0
        assert day["downtime_s"] == 0.0  # unknown time in a break is not comm_loss
        assert day["total_count"] == 0
        for ratio in ("availability", "performance", "quality", "oee", "teep", "mtbf_s", "mttr_s"):
            assert day[ratio] is None, (machine, ratio)
        assert day["downtime_by_reason"] == {}


def test_comm_loss_before_first_sample_and_for_a_silent_machine(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        BANGKOK_DAY
        + """
        [[machines]]
        id = "SMT01"
        ideal_cycle_s = 2.0
        [[machines]]
        id = "SMT02"
        ideal_cycle_s = 2.0
        [[machines]]
        id = "SMT03"
        ideal_cycle_s = 2.0
        """,
    )
    lines = [
        line("2025-08-22T02:00:00Z", "SMT03", "running", True),  # the span starts here
        line("2025-08-22T02:10:00Z", "SMT01", "running", True),  # SMT01 seen from 02:10
        line("2025-08-22T03:00:00Z", "SMT03", "temp", 20.0),  # the span ends here
    ]
    report, _ = replay(cfg, lines)
    [smt01] = shifts(report, "SMT01")
    [smt02] = shifts(report, "SMT02")
    [smt03] = shifts(report, "SMT03")
    # SMT01: unknown 02:00-02:10 = 600 s comm_loss (downtime, not an event).
    assert smt01["downtime_s"] == 600.0
    assert smt01["downtime_by_reason"] == {"comm_loss": 600.0}
    assert smt01["downtime_events"] == 0
    assert smt01["run_s"] == 3000.0
    assert smt01["mtbf_s"] is None
    # SMT02: no sample at all: the whole hour is comm_loss; availability is a real 0.
    assert smt02["scheduled_s"] == 3600.0
    assert smt02["downtime_by_reason"] == {"comm_loss": 3600.0}
    assert smt02["run_s"] == 0.0
    assert smt02["availability"] == 0.0
    assert smt02["performance"] is None  # 0 / run 0
    assert smt02["oee"] is None
    assert smt03["run_s"] == 3600.0
    assert smt03["downtime_by_reason"] == {}


def test_performance_above_one_is_reported_uncapped_with_a_warning(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """
        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "A"
        start = "06:00"
        end = "07:00"
        [[machines]]
        id = "F"
        ideal_cycle_s = 2.0
        # 2700 pieces in 1800 s is 3 x the ideal rate: allowed with a factor of 4
        # (4 x (1800 / 2 + 1) = 3604), else capped (docs/engine.md, Counts).
        max_rate_factor = 4.0
        """,
    )
    lines = [
        line("2025-08-22T06:00:00Z", "F", "running", True),
        line("2025-08-22T06:00:00Z", "F", "total_count", 0),
        line("2025-08-22T06:30:00Z", "F", "total_count", 2700),
        line("2025-08-22T07:30:00Z", "F", "temp", 20.0),  # the shift closed at 07:00
    ]
    report, err = replay(cfg, lines)
    [a] = shifts(report, "F")
    # 2700 pieces x 2 s ideal = 5400 s of ideal time in 3600 s of run time.
    assert a["performance"] == 1.5
    assert a["end"] == "2025-08-22T07:00:00Z"
    assert err.count("performance 1.500 > 1.0") == 1


def test_stop_still_open_at_the_end_is_classified_by_its_length_so_far(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        """
        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "Early"
        start = "06:00"
        end = "14:00"
        [[calendar.shifts]]
        name = "Late"
        start = "14:00"
        end = "22:00"
        [[machines]]
        id = "M1"
        ideal_cycle_s = 2.0
        """,
    )
    lines = [
        line("2025-08-22T13:00:00Z", "M1", "running", True),
        line("2025-08-22T13:59:00Z", "M1", "running", False),  # never ends in the trace
        line("2025-08-22T14:05:00Z", "M1", "temp", 20.0),
    ]
    report, _ = replay(cfg, lines)
    early, late = shifts(report, "M1")
    # At the end (14:05) the stop is 360 s long so far: a downtime event (>= 120 s)
    # in both shifts, although Early closed when it was only 60 s long.
    assert (early["downtime_s"], early["downtime_events"], early["micro_stops"]) == (60.0, 1, 0)
    assert (late["downtime_s"], late["downtime_events"], late["run_s"]) == (300.0, 1, 0.0)
    assert late["availability"] == 0.0
    assert late["mtbf_s"] == 0.0  # run 0 / 1 event
