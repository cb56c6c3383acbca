"""Where the line's quality stations sit (actors.quality.routes): which samples reach
which station and in what order, alarm ids, and the station commands' arguments."""

from __future__ import annotations

import pytest

from actors.errors import CommandError
from actors.messages import LinkChanged, Sample
from actors.quality.actor import Dispose, RecordInspection, StationSamples
from actors.quality.params import CharacteristicParams, StationParams
from actors.quality.routes import StationRoute, StationRoutes

WEIGHT = CharacteristicParams(name="weight", signal="weight")
Q1 = StationParams("Q1", "M1", False, pass_signal="q1_pass", characteristics=(WEIGHT,))
Q2 = StationParams("Q2", "M2", True)  # manual entry only: reads no samples
Q3 = StationParams("Q3", "M1", False, pass_signal="q3_pass")  # its own PLC
Q4 = StationParams("Q4", "M1", False, fail_signal="q4_fail")
ROUTES = StationRoutes(
    [StationRoute(Q1), StationRoute(Q2), StationRoute(Q3, own_plc=True), StationRoute(Q4)]
)


def test_a_machines_samples_reach_the_stations_reading_them_in_order() -> None:
    s1 = Sample("M1", "weight", 100.0, 1.0)
    s2 = Sample("M1", "q4_fail", 1, 1.0)
    s3 = Sample("M1", "q1_pass", 5, 3.0)
    down = LinkChanged("M1", False, 2.0, "timeout")
    batch = [
        s1,
        Sample("M1", "speed", 3.0, 1.0),  # nobody reads it
        Sample("M2", "weight", 1.0, 1.0),  # Q2 reads no samples
        Sample("M1", "q3_pass", 9, 1.0),  # Q3 is read over its own PLC
        s2,
        down,
        s3,
        LinkChanged("M3", False, 2.0),  # no station on M3
    ]
    assert ROUTES.route_samples(batch) == [
        ("Q1", StationSamples((s1,))),
        ("Q1", down),
        ("Q4", StationSamples((s2,))),
        ("Q4", down),
        ("Q1", StationSamples((s3,))),
    ]
    assert ROUTES.read_machine_samples
    assert not StationRoutes(
        [StationRoute(Q2), StationRoute(Q3, own_plc=True)]
    ).read_machine_samples


def test_stations_of_machines_and_where_rejects_go() -> None:
    assert ROUTES.ids == ("Q1", "Q2", "Q3", "Q4")
    assert ROUTES.of_machines(["M2", "M1"]) == ("Q2", "Q1", "Q3", "Q4")
    assert ROUTES.of_machines(["M9"]) == ()
    assert ROUTES.machine_of("Q2") == "M2"


def test_unknown_stations_and_alarms_are_refused_by_name() -> None:
    assert ROUTES.check("Q2") == "Q2"
    assert ROUTES.for_alarm("spc/Q1/weight/3") == "Q1"
    with pytest.raises(CommandError, match=r"station_id 'Q9': no such station \(known: Q1, Q2"):
        ROUTES.check("Q9")
    with pytest.raises(CommandError, match="known: none configured"):
        StationRoutes().check("Q1")
    for alarm_id in ("spc/Q9/weight/3", "spc/Q1/weight", "plc/Q1/x/1", 7):
        with pytest.raises(CommandError, match="no such alarm"):
            ROUTES.for_alarm(alarm_id)


def test_inspection_and_disposal_arguments() -> None:
    station, message = ROUTES.inspection(
        "Q1", passed=3, failed=1, measurements={"weight": 101.0, "len": (1.0, 2.0)},
        disposition="scrap", reason_code="D1", ts=None, now=50.0,
    )  # fmt: skip
    assert (station, message) == (
        "Q1",
        RecordInspection(3, 1, 50.0, "scrap", "D1", {"weight": [101.0], "len": [1.0, 2.0]}),
    )
    with pytest.raises(CommandError, match="measurements must map characteristic names"):
        ROUTES.inspection(
            "Q1", passed=1, failed=0, measurements=[1.0], disposition=None, reason_code="",
            ts=None, now=50.0,
        )  # fmt: skip
    with pytest.raises(CommandError, match="ts must be a finite epoch time"):
        ROUTES.inspection(
            "Q1", passed=1, failed=0, measurements=None, disposition=None, reason_code="",
            ts=float("nan"), now=50.0,
        )  # fmt: skip
    assert ROUTES.disposal(
        "Q2", count=2, disposition="rework", reason_code="R", order_id="WO1", ts=40.0, now=50.0
    ) == ("Q2", Dispose(2, "rework", "R", 40.0, "WO1"))
    with pytest.raises(CommandError, match="order_id must be"):
        ROUTES.disposal(
            "Q2", count=1, disposition="scrap", reason_code="R", order_id="W O", ts=None, now=1.0
        )
