"""plc_map loading and validation: the shipped maps, and every kind of problem with its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.errors import ConfigError
from edge.plc.maps import (
    Area,
    DataType,
    Endian,
    ModbusLocation,
    NodeLocation,
    Protocol,
    load_plc_map,
    parse_plc_map,
)

MAPS_DIR = Path(__file__).resolve().parents[3] / "plc_maps"


def modbus(*signals: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"protocol": "modbus", **top, "signals": list(signals)}


def opcua(*signals: dict[str, Any]) -> dict[str, Any]:
    return {"protocol": "opcua", "signals": list(signals)}


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_plc_map(document, name="t")
    return [str(p) for p in info.value.problems]


def hr(address: int, type_: str = "uint16", name: str = "v", **extra: Any) -> dict[str, Any]:
    return {"name": name, "area": "holding_register", "address": address, "type": type_, **extra}


# ---------------------------------------------------------------- shipped maps


def test_generic_modbus_map() -> None:
    plc_map = load_plc_map("generic-modbus", [MAPS_DIR])
    assert plc_map.protocol is Protocol.MODBUS
    assert plc_map.roles >= {"running", "fault_code", "total_count", "good_count", "reject_count"}
    running = plc_map.get("running")
    assert running is not None
    assert running.location == ModbusLocation(Area.COIL, 0)
    assert plc_map.counter_bits == 32
    assert plc_map.process_values


def test_packml_modbus_map_has_state_and_16_bit_counters() -> None:
    plc_map = load_plc_map("packml-modbus", [MAPS_DIR])
    assert "state" in plc_map.roles
    assert plc_map.counter_bits == 16


def test_generic_opcua_map_substitutes_the_machine() -> None:
    plc_map = load_plc_map("generic-opcua", [MAPS_DIR])
    assert plc_map.protocol is Protocol.OPCUA
    total = plc_map.get("total_count")
    assert total is not None
    assert isinstance(total.location, NodeLocation)
    assert total.location.node_id("M7") == "ns=2;s=M7.Counters.Total"


def test_sim_line_map_has_forty_points_of_every_type() -> None:
    plc_map = load_plc_map("sim-line", [MAPS_DIR])
    assert len(plc_map.signals) == 40
    assert len(plc_map.process_values) == 34
    assert len(plc_map.roles) == 6
    assert {s.data_type for s in plc_map.signals} == set(DataType)
    assert any(s.word_order is Endian.LITTLE for s in plc_map.signals)
    assert any(
        isinstance(s.location, ModbusLocation) and s.location.bit is not None
        for s in plc_map.signals
    )


def test_load_by_path_and_search_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "m.toml").write_text('protocol = "modbus"\n' + _toml_signal("x", 0))
    (first / "m.toml").write_text('protocol = "modbus"\n' + _toml_signal("y", 0))
    assert load_plc_map("m", [first, second]).signals[0].name == "y"
    assert load_plc_map(str(second / "m.toml"), []).signals[0].name == "x"


def _toml_signal(name: str, address: int) -> str:
    return (
        f'[[signals]]\nname = "{name}"\narea = "holding_register"\n'
        f'address = {address}\ntype = "uint16"\n'
    )


def test_missing_map_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no plc_map named 'nope'"):
        load_plc_map("nope", [tmp_path])
    (tmp_path / "broken.toml").write_text("protocol = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_plc_map("broken", [tmp_path])


# ---------------------------------------------------------------- each kind of problem


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            modbus(
                {
                    "name": "door",
                    "area": "holding_register",
                    "address": 0,
                    "type": "bool",
                    "bit": 16,
                }
            ),
            "signals[0].bit: must be 0..15, got 16",
        ),
        (modbus(hr(0, "int24")), "signals[0].type: unknown value 'int24'"),
        (
            modbus({"name": "v", "area": "holding_registers", "address": 0, "type": "uint16"}),
            "signals[0].area: unknown value 'holding_registers'",
        ),
        (
            modbus(
                {"role": "total_cont", "area": "holding_register", "address": 0, "type": "uint32"}
            ),
            "signals[0].role: unknown role 'total_cont' (did you mean 'total_count'?)",
        ),
        (
            modbus(hr(0, "uint32", count=1)),
            "signals[0].count: a uint32 in a holding_register occupies 2 registers, got 1",
        ),
        (
            modbus(hr(0, "float64", count=4), hr(3, name="w")),
            "signals[1].address: holding_register 3 is already used by signals[0]",
        ),
        (
            modbus(hr(0, "uint32"), hr(1, name="w")),
            "signals[1].address: holding_register 1 is already used by signals[0]",
        ),
        (
            modbus(
                {"name": "a", "area": "holding_register", "address": 4, "type": "bool", "bit": 1},
                {"name": "b", "area": "holding_register", "address": 4, "type": "bool", "bit": 1},
            ),
            "signals[1].address: holding_register 4 is already used by signals[0]",
        ),
        (
            modbus(
                hr(4, name="word"),
                {"name": "b", "area": "holding_register", "address": 4, "type": "bool", "bit": 1},
            ),
            "signals[1].address: holding_register 4 is already used by signals[0]",
        ),
        (
            modbus({"name": "b", "area": "holding_register", "address": 0, "type": "bool"}),
            "signals[0].bit: missing: a bool in a register needs its bit (0..15)",
        ),
        (
            modbus({"name": "b", "area": "coil", "address": 0, "type": "bool", "bit": 0}),
            "signals[0].bit: only for a bool in a register, not in a coil",
        ),
        (
            modbus({"name": "b", "area": "coil", "address": 0, "type": "uint16"}),
            "signals[0].type: a coil holds one bit: type must be bool, got uint16",
        ),
        (
            modbus(
                {"role": "total_count", "area": "holding_register", "address": 0, "type": "float32"}
            ),
            "signals[0].type: a counter must be uint16, uint32 or uint64",
        ),
        (
            modbus(
                {"role": "good_count", "area": "holding_register", "address": 0, "type": "int32"}
            ),
            "signals[0].type: a counter must be uint16, uint32 or uint64",
        ),
        (
            modbus({"role": "running", "area": "holding_register", "address": 0, "type": "uint16"}),
            "signals[0].type: running must be bool, got uint16",
        ),
        (
            modbus({"role": "state", "area": "holding_register", "address": 0, "type": "float32"}),
            "signals[0].type: state must be an integer type, got float32",
        ),
        (
            modbus(
                {"role": "fault_code", "area": "holding_register", "address": 0, "type": "uint16"},
                {"role": "fault_code", "area": "holding_register", "address": 1, "type": "uint16"},
            ),
            "signals[1].role: role 'fault_code' is already mapped at signals[0]",
        ),
        (
            modbus(hr(0, name="t"), hr(1, name="t")),
            "signals[1].name: signal 't' is already mapped at signals[0]",
        ),
        (
            modbus(hr(0, name="total_count")),
            "signals[0].name: 'total_count' is a role: write role = 'total_count'",
        ),
        (
            modbus(
                {"role": "total_count", "area": "holding_register", "address": 0, "type": "uint32"},
                {"role": "good_count", "area": "holding_register", "address": 2, "type": "uint16"},
            ),
            "signals[1].type: all counters share one width: total_count is 32 bits, this is 16",
        ),
        (
            modbus(
                {
                    "role": "state",
                    "area": "holding_register",
                    "address": 0,
                    "type": "uint16",
                    "scale": 2,
                }
            ),
            "signals[0].scale: not allowed for the role 'state' (raw values)",
        ),
        (modbus(hr(0, scale=0)), "signals[0].scale: must not be 0"),
        (modbus(hr(0, min=10, max=5)), "signals[0].max: must be >= min (10), got 5"),
        (modbus(hr(0, adress=1)), "signals[0].adress: unknown key (did you mean 'address'?)"),
        (
            modbus(hr(65535, "uint32")),
            "signals[0].address: uint32 needs 2 registers from 65535: past 65535",
        ),
        (modbus(hr(70000)), "signals[0].address: must be 0..65535, got 70000"),
        (modbus(hr("10")), "signals[0].address: must be an integer, got '10'"),
        (modbus(hr(0, word_order="middle")), "signals[0].word_order: unknown value 'middle'"),
        (modbus(hr(0, name="9lives")), "signals[0].name: must be a letter then letters"),
        (modbus({"area": "coil", "address": 0, "type": "bool"}), "signals[0].name: missing"),
        (
            modbus({"role": "running", "name": "r", "area": "coil", "address": 0, "type": "bool"}),
            "signals[0]: give either role",
        ),
        (modbus(hr(0, node="ns=2;s=x")), "signals[0].node: only OPC UA maps have node ids"),
        (opcua({"name": "t", "type": "float32"}), "signals[0].node: missing"),
        (
            opcua({"name": "t", "type": "float32", "node": "ns=2;s={line}.{machine}.T"}),
            "signals[0].node: unknown placeholder {line}",
        ),
        (
            opcua({"name": "t", "type": "float32", "node": "ns=2;s=T", "address": 3}),
            "signals[0].address: only Modbus maps have areas, addresses and bits",
        ),
        (
            opcua(
                {"name": "t", "type": "float32", "node": "ns=2;s={machine}.T"},
                {"name": "u", "type": "float32", "node": "ns=2;s={machine}.T"},
            ),
            "signals[1].node: already used by signals[0]",
        ),
        ({"signals": [hr(0)]}, 'protocol: missing: "modbus" or "opcua"'),
        (modbus(), "signals: missing: a map needs at least one [[signals]] entry"),
        (modbus(hr(0), vendor="x"), "vendor: unknown key"),
        (modbus(hr(0, deadband=-0.5)), "signals[0].deadband: must be >= 0, got -0.5"),
        (modbus(hr(0, deadband="1")), "signals[0].deadband: must be a number, got '1'"),
        (
            modbus(
                {
                    "name": "b",
                    "area": "holding_register",
                    "address": 0,
                    "type": "bool",
                    "bit": 0,
                    "deadband": 1,
                }
            ),
            "signals[0].deadband: not allowed for a bool",
        ),
        (
            modbus(
                {
                    "role": "total_count",
                    "area": "holding_register",
                    "address": 0,
                    "type": "uint32",
                    "deadband": 1,
                }
            ),
            "signals[0].deadband: not allowed for the role 'total_count'",
        ),
    ],
)
def test_each_problem_is_reported_with_its_key_path(
    document: dict[str, Any], expected: str
) -> None:
    problems = problems_of(document)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    document = modbus(
        {"name": "a", "area": "holding_register", "address": 0, "type": "bool", "bit": 16},
        {"role": "total_count", "area": "holding_register", "address": 2, "type": "float32"},
        {"name": "c", "area": "bogus", "address": 0, "type": "uint16"},
        hr(10, "int24", name="d"),
    )
    with pytest.raises(ConfigError) as info:
        parse_plc_map(document, name="t", source="maps/t.toml")
    paths = [p.path for p in info.value.problems]
    assert paths == ["signals[0].bit", "signals[1].type", "signals[2].area", "signals[3].type"]
    assert str(info.value).startswith("maps/t.toml: 4 problems:")


def test_defaults_and_overrides_of_byte_and_word_order() -> None:
    plc_map = parse_plc_map(
        modbus(
            hr(0, "float32", name="a"),
            hr(2, "float32", name="b", word_order="big"),
            word_order="little",
        ),
        name="t",
    )
    a, b = plc_map.signals
    assert (a.byte_order, a.word_order) == (Endian.BIG, Endian.LITTLE)
    assert b.word_order is Endian.BIG


def test_bits_of_one_register_may_share_it() -> None:
    plc_map = parse_plc_map(
        modbus(
            {"name": "a", "area": "holding_register", "address": 8, "type": "bool", "bit": 0},
            {"name": "b", "area": "holding_register", "address": 8, "type": "bool", "bit": 1},
        ),
        name="t",
    )
    assert [s.name for s in plc_map.signals] == ["a", "b"]


def test_a_deadband_is_kept_in_engineering_units_and_defaults_to_none() -> None:
    plc_map = parse_plc_map(
        modbus(hr(0, "int16", scale=0.1, deadband=0.5), hr(1, name="w")), name="t"
    )
    assert plc_map.signals[0].deadband == 0.5
    assert plc_map.signals[1].deadband == 0.0
