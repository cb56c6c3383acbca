"""[[quality_stations]] and [orders] in the line config: defaults, the double-counting
rule, and every bad input named by its key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from actors.quality.params import Disposition
from edge.config import LineConfig, load_config
from edge.errors import ConfigError

LINE = """
[line]
site = "BKK"
area = "smt"
id = "L1"

[calendar]
timezone = "UTC"
[[calendar.shifts]]
name = "Day"
start = "06:00"
end = "18:00"

[[plcs]]
id = "p1"
protocol = "modbus"
host = "127.0.0.1"

# Counts rejects itself (generic-modbus maps good_count and reject_count).
[[machines]]
id = "M1"
ideal_cycle_s = 2.0
plc = "p1"
plc_map = "generic-modbus"

# Counts total pieces only: its rejects come from quality stations.
[[machines]]
id = "M2"
ideal_cycle_s = 2.0
plc = "p1"
plc_map = "total-only"
unit_id = 2
"""

TOTAL_ONLY_MAP = """
protocol = "modbus"
[[signals]]
role = "total_count"
area = "holding_register"
address = 0
type = "uint32"
"""

STATION_MAP = """
protocol = "modbus"
[[signals]]
name = "pass_count"
area = "holding_register"
address = 0
type = "uint16"
[[signals]]
name = "fail_count"
area = "holding_register"
address = 1
type = "uint16"
[[signals]]
name = "thickness"
area = "holding_register"
address = 2
type = "float32"
[[signals]]
name = "speed"
area = "holding_register"
address = 4
type = "float32"
"""


def load(tmp_path: Path, extra: str) -> LineConfig:
    maps = tmp_path / "plc_maps"
    maps.mkdir(exist_ok=True)
    (maps / "total-only.toml").write_text(TOTAL_ONLY_MAP, encoding="utf-8")
    (maps / "station.toml").write_text(STATION_MAP, encoding="utf-8")
    path = tmp_path / "line.toml"
    path.write_text(textwrap.dedent(LINE) + textwrap.dedent(extra), encoding="utf-8")
    return load_config(path)


def problems(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    return [str(p) for p in info.value.problems]


def test_defaults_and_the_double_counting_rule(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [[quality_stations]]
        id = "Q1"
        machine = "M1"

        [[quality_stations]]
        id = "Q2"
        machine = "M2"
        plc = "p1"
        plc_map = "station"
        unit_id = 3
        pass_signal = "pass_count"
        fail_signal = "fail_count"
        plc_disposition = "scrap"
        reason_codes = ["D1", "D2"]
        [[quality_stations.characteristics]]
        name = "thickness"
        signal = "thickness"
        lsl = 1.0
        usl = 2.0
        subgroup_size = 5
        baseline_mean = 1.5
        baseline_range = 0.1
        rules = [4, 1, 2]
        """,
    )
    q1, q2 = config.quality_stations
    # M1 counts rejects itself: the station only reports them.
    assert q1.params.feeds_machine_rejects is False
    assert (q1.name, q1.plc, q1.params.characteristics) == ("Q1", None, ())
    assert q1.params.plc_disposition is Disposition.PENDING
    # M2 counts total only: the station's failures are its rejects.
    assert q2.params.feeds_machine_rejects is True
    assert (q2.plc, q2.plc_map, q2.unit_id) == ("p1", "station", 3)
    assert q2.params.counter_bits == 16  # the map's uint16 counters
    assert q2.params.plc_disposition is Disposition.SCRAP
    assert q2.params.reason_codes == ("D1", "D2")
    (thickness,) = q2.params.characteristics
    assert (thickness.subgroup_size, thickness.rules, thickness.warmup) == (5, (1, 2, 4), 25)
    limits = thickness.baseline_limits()
    assert limits is not None
    # X-bar/R, n = 5: 1.5 +/- A2 * Rbar = 1.5 +/- 0.577 * 0.1
    assert limits.ucl == pytest.approx(1.5577)
    assert q2.params.signals == {"pass_count", "fail_count", "thickness"}
    assert config.orders.quantity_rule == "series"
    assert config.orders.retain_finished == 100


def test_feeding_rejects_of_a_machine_that_counts_them_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [[quality_stations]]
        id = "Q1"
        machine = "M1"
        feeds_machine_rejects = true
        """,
    )
    assert found == [
        "quality_stations[0].feeds_machine_rejects: machine 'M1' counts rejects itself "
        "(its plc_map 'generic-modbus' maps good_count and reject_count): adding the "
        "station's failures would count them twice; set it false (the default for this machine)"
    ]
    # Not feeding a total-only machine is allowed (the rejects then stay out of OEE).
    config = load(
        tmp_path,
        """
        [[quality_stations]]
        id = "Q2"
        machine = "M2"
        feeds_machine_rejects = false
        """,
    )
    assert config.quality_stations[0].params.feeds_machine_rejects is False


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('id = "Q1"', "quality_stations[0].machine: missing required key"),
        ('id = "Q1"\nmachine = "M9"', "quality_stations[0].machine: unknown machine 'M9'"),
        ('id = "M1"\nmachine = "M1"', "quality_stations[0].id: 'M1' is a machine id"),
        ('id = "Q 1"\nmachine = "M1"', "quality_stations[0].id: must be 1-64 characters"),
        ('id = "Q1"\nmachine = "M1"\ncolour = 1', "quality_stations[0].colour: unknown key"),
        (
            'id = "Q1"\nmachine = "M1"\npass_signal = "pass_count"',
            "quality_stations[0].pass_signal: plc_map 'generic-modbus' has no process value "
            "'pass_count'",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nplc = "p1"',
            "quality_stations[0].plc_map: missing: a station read from a plc needs a plc_map",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nplc = "p9"\nplc_map = "station"',
            "quality_stations[0].plc: unknown plc 'p9'",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nplc = "p1"\nplc_map = "nope"',
            "quality_stations[0].plc_map: unknown plc_map 'nope'",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nplc = "p1"\nplc_map = "station"\nfail_signal = "fails"',
            "quality_stations[0].fail_signal: plc_map 'station' has no process value 'fails'",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nplc = "p1"\nplc_map = "station"\npass_signal = "speed"',
            "quality_stations[0].pass_signal: 'speed' must be an unscaled uint16/uint32/uint64",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nplc = "p1"\nplc_map = "station"\n'
            'pass_signal = "pass_count"\ncounter_bits = 32',
            "quality_stations[0].counter_bits: is 32 but the plc_map's pass/fail counters are 16",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nplc_disposition = "burn"',
            "quality_stations[0].plc_disposition: must be one of 'pending', 'scrap'",
        ),
        (
            'id = "Q1"\nmachine = "M1"\nreason_codes = ["D1", "D1"]',
            "quality_stations[0].reason_codes[1]: 'D1' is listed twice",
        ),
    ],
)
def test_station_problems_name_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    found = problems(tmp_path, "[[quality_stations]]\n" + extra + "\n")
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    ("characteristic", "expected"),
    [
        ('name = "t"\nlsl = 2.0\nusl = 1.0', "characteristics[0].usl: must be > lsl (2), got 1"),
        ('name = "t"\nsubgroup_size = 11', "characteristics[0].subgroup_size: must be between 1"),
        ('name = "t"\nbaseline_mean = 1.0', "characteristics[0].baseline_range: missing"),
        (
            'name = "t"\nbaseline_range = 0.0\nbaseline_mean = 1.0',
            "characteristics[0].baseline_range: must be > 0",
        ),
        ('name = "t"\nwarmup = 1', "characteristics[0].warmup: must be between 2"),
        ('name = "t"\nrules = [1, 9]', "characteristics[0].rules[1]: must be a run rule number"),
        ('name = "t"\nrules = []', "characteristics[0].rules: must list at least one"),
        ('signal = "x"', "characteristics[0].name: missing required key"),
        (
            'name = "t"\nsignal = "thickness"',
            "characteristics[0].signal: plc_map 'generic-modbus' has no process value",
        ),
        ('name = "t"\nsignal = "good_count"', "characteristics[0].signal: plc_map 'generic"),
    ],
)
def test_characteristic_problems_name_the_key(
    tmp_path: Path, characteristic: str, expected: str
) -> None:
    extra = (
        '[[quality_stations]]\nid = "Q1"\nmachine = "M1"\n'
        "[[quality_stations.characteristics]]\n" + characteristic + "\n"
    )
    found = problems(tmp_path, extra)
    assert any(p.startswith("quality_stations[0]." + expected) for p in found), found


def test_orders_section(tmp_path: Path) -> None:
    config = load(tmp_path, '[orders]\nquantity_rule = "parallel"\nretain_finished = 5\n')
    assert (config.orders.quantity_rule, config.orders.retain_finished) == ("parallel", 5)
    found = problems(tmp_path, '[orders]\nquantity_rule = "sideways"\nretain = 1\n')
    assert any(p.startswith("orders.quantity_rule: must be one of 'series'") for p in found)
    assert any(p.startswith("orders.retain: unknown key") for p in found)


def test_a_station_without_a_plc_reads_its_machines_signals(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
        [[quality_stations]]
        id = "Q1"
        machine = "M1"
        pass_signal = "good_count"      # the machine PLC counts the inspection results
        fail_signal = "reject_count"
        [[quality_stations.characteristics]]
        name = "pressure"
        signal = "pressure"             # a process value of M1's generic-modbus map
        """,
    )
    (station,) = config.quality_stations
    assert station.plc is None
    assert station.params.counter_bits == 32
    assert station.params.feeds_machine_rejects is False
    assert station.params.signals == {"good_count", "reject_count", "pressure"}
    lonely = LINE.replace('plc = "p1"\nplc_map = "total-only"\nunit_id = 2\n', "")
    path = tmp_path / "lonely.toml"
    path.write_text(
        textwrap.dedent(lonely)
        + '[[quality_stations]]\nid = "Q2"\nmachine = "M2"\nfail_signal = "fails"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        "quality_stations[0].fail_signal: a PLC signal needs a plc_map: the station's own "
        "(plc, plc_map) or its machine's"
    ]
