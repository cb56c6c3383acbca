"""ModbusSource against a real pymodbus server: decoding, coalescing, bindings, lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.messages import LinkChanged, Quality, Sample
from edge.config.plc_maps import Area, PlcMap
from edge.errors import ConfigError
from edge.sources.plc import MachineBinding, ModbusSource, SourceState, parse_plc_map

from .conftest import Collector, PlcServer, plc_config

pytestmark = pytest.mark.integration


def modbus_map(*signals: dict[str, Any], name: str = "t") -> PlcMap:
    return parse_plc_map({"protocol": "modbus", "signals": list(signals)}, name=name)


def hr(name: str, address: int, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "area": "holding_register", "address": address, "type": type_, **extra}


# name, type, byte order, word order, registers written (by hand), value expected
CASES: list[tuple[str, str, str, str, list[int], Any]] = [
    ("f32_bb", "float32", "big", "big", [0x3F80, 0x0000], 1.0),
    ("f32_bl", "float32", "big", "little", [0x0000, 0x3F80], 1.0),
    ("f32_lb", "float32", "little", "big", [0x803F, 0x0000], 1.0),
    ("f32_ll", "float32", "little", "little", [0x0000, 0x803F], 1.0),
    ("f64_bb", "float64", "big", "big", [0xC004, 0, 0, 0], -2.5),  # -2.5 = 0xC004000000000000
    ("f64_bl", "float64", "big", "little", [0, 0, 0, 0xC004], -2.5),
    ("i16", "int16", "big", "big", [0xFFFE], -2),
    ("i16_l", "int16", "little", "big", [0xFEFF], -2),
    ("u16", "uint16", "big", "big", [0xFFFF], 65535),
    ("i32_bb", "int32", "big", "big", [0xFFFF, 0xFFFE], -2),
    ("i32_bl", "int32", "big", "little", [0xFFFE, 0xFFFF], -2),
    ("u32_bb", "uint32", "big", "big", [0x1234, 0x5678], 0x12345678),
    ("u32_lb", "uint32", "little", "big", [0x3412, 0x7856], 0x12345678),
    ("u32_ll", "uint32", "little", "little", [0x7856, 0x3412], 0x12345678),
    ("i64", "int64", "big", "big", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD], -3),
    ("u64_bb", "uint64", "big", "big", [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    ("u64_bl", "uint64", "big", "little", [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
]


async def test_every_type_and_order_decodes_end_to_end(
    free_port: int, collector: Collector
) -> None:
    signals: list[dict[str, Any]] = []
    address = 0
    server = PlcServer(free_port)
    for name, type_, byte_order, word_order, words, _ in CASES:
        signals.append(hr(name, address, type_, byte_order=byte_order, word_order=word_order))
        server.set_registers(address, words)
        address += len(words)
    signals += [
        {"name": "tenths", "area": "input_register", "address": 0, "type": "int16", "scale": 0.1},
        {"name": "coil", "area": "coil", "address": 3, "type": "bool"},
        {"name": "input", "area": "discrete_input", "address": 5, "type": "bool"},
        {"name": "bit9", "area": "holding_register", "address": 200, "type": "bool", "bit": 9},
        {"name": "bit8", "area": "holding_register", "address": 200, "type": "bool", "bit": 8},
    ]
    server.set_registers(0, [0xFF9C], area=Area.INPUT_REGISTER)  # raw -100 -> -10.0
    server.set_bits(3, [True], area=Area.COIL)
    server.set_bits(5, [True], area=Area.DISCRETE_INPUT)
    server.set_registers(200, [0x0200])  # bit 9 set, bit 8 clear
    plc_map = modbus_map(*signals)

    async with (
        server,
        ModbusSource(plc_config(free_port), [MachineBinding("M1", plc_map)], collector),
    ):
        await collector.wait_for(lambda: collector.latest("M1", "bit8") is not None)

    for name, *_, expected in CASES:
        sample = collector.latest("M1", name)
        assert sample is not None, name
        assert sample.quality is Quality.GOOD
        assert sample.value == expected, name
    tenths = collector.latest("M1", "tenths")
    assert tenths is not None and tenths.value == pytest.approx(-10.0)
    assert collector.values("M1", "coil") == [True]
    assert collector.values("M1", "input") == [True]
    assert collector.values("M1", "bit9") == [True]
    assert collector.values("M1", "bit8") == [False]
    # the first batch starts with the link coming up, and carries ts = poll completion
    first = collector.batches[0]
    assert isinstance(first[0], LinkChanged) and first[0].up
    assert all(isinstance(e, Sample) and e.ts == first[0].ts for e in first[1:])


async def test_block_reads_are_coalesced_as_planned(free_port: int, collector: Collector) -> None:
    # Holding registers 0, 1..2, 6 -> one block 0..6 (hole 3..5 = 3 <= max_gap 4);
    # 20 -> its own block (hole 7..19 = 13 > 4). Input register 0 -> one block.
    # Coils 0 and 4 -> one block 0..4 (hole 3). So 4 requests per poll.
    plc_map = modbus_map(
        hr("a", 0, "uint16"),
        hr("b", 1, "uint32"),
        hr("c", 6, "int16"),
        hr("d", 20, "uint16"),
        {"name": "e", "area": "input_register", "address": 0, "type": "uint16"},
        {"name": "f", "area": "coil", "address": 0, "type": "bool"},
        {"name": "g", "area": "coil", "address": 4, "type": "bool"},
    )
    server = PlcServer(free_port)
    source = ModbusSource(
        plc_config(free_port, max_gap=4), [MachineBinding("M1", plc_map)], collector
    )
    async with server, source:
        # A poll is counted when it starts: wait on the requests of three whole polls.
        await collector.wait_for(lambda: source.statistics().requests >= 3 * 4)
    stats = source.statistics()
    assert stats.blocks_per_poll == 4
    # function codes: 1 read coils, 3 read holding registers, 4 read input registers
    expected = {(1, 1, 0, 5), (1, 3, 0, 7), (1, 3, 20, 1), (1, 4, 0, 1)}
    assert set(server.requests) == expected
    # every request the source counted reached the server, and nothing else did
    assert len(server.requests) == stats.requests
    assert stats.requests >= 3 * 4


async def test_machines_on_units_and_offsets_share_one_connection(
    free_port: int, collector: Collector
) -> None:
    plc_map = modbus_map(
        {"role": "total_count", "area": "holding_register", "address": 0, "type": "uint32"},
        {"role": "running", "area": "coil", "address": 0, "type": "bool"},
    )
    server = PlcServer(free_port, units=(1, 2))
    server.set_registers(0, [0, 11])  # M1: unit 1, offset 0
    server.set_registers(100, [0, 22])  # M2: unit 1, offset 100
    server.set_registers(0, [1, 33], unit=2)  # M3: unit 2 -> 65536 + 33 = 65569
    server.set_bits(100, [True])  # M2 running
    bindings = [
        MachineBinding("M1", plc_map, unit_id=1, address_offset=0),
        MachineBinding("M2", plc_map, unit_id=1, address_offset=100),
        MachineBinding("M3", plc_map, unit_id=2, address_offset=0),
    ]
    source = ModbusSource(plc_config(free_port), bindings, collector)
    async with server, source:
        await collector.wait_for(lambda: collector.latest("M3", "running") is not None)
        # one request per (unit, area, block): M1 and M2 are 100 apart (> max_gap 8)
        assert source.statistics().blocks_per_poll == 6
    assert collector.values("M1", "total_count") == [11]
    assert collector.values("M2", "total_count") == [22]
    assert collector.values("M3", "total_count") == [65569]
    assert collector.values("M1", "running") == [False]
    assert collector.values("M2", "running") == [True]
    assert {unit for unit, *_ in server.requests} == {1, 2}


async def test_only_changes_are_delivered(free_port: int, collector: Collector) -> None:
    plc_map = modbus_map(hr("a", 0, "uint16"), hr("b", 1, "uint16"))
    server = PlcServer(free_port)
    server.set_registers(0, [5, 7])
    source = ModbusSource(plc_config(free_port), [MachineBinding("M1", plc_map)], collector)
    async with server, source:
        await collector.wait_for(lambda: collector.values("M1", "a") == [5])
        polls = source.statistics().polls
        await collector.wait_for(lambda: source.statistics().polls >= polls + 3)
        server.set_registers(0, [6])
        await collector.wait_for(lambda: collector.values("M1", "a") == [5, 6])
        polls = source.statistics().polls
        await collector.wait_for(lambda: source.statistics().polls >= polls + 3)
    assert collector.values("M1", "a") == [5, 6]
    assert collector.values("M1", "b") == [7]


def test_bindings_that_cannot_be_read_are_config_errors() -> None:
    opcua_map = parse_plc_map(
        {"protocol": "opcua", "signals": [{"name": "t", "node": "ns=2;s=T", "type": "float32"}]},
        name="ua",
    )
    plc_map = modbus_map(hr("a", 65000, "uint32"))
    with pytest.raises(ConfigError) as info:
        ModbusSource(
            plc_config(1),
            [
                MachineBinding("M1", opcua_map),
                MachineBinding("M2", plc_map, address_offset=600),
                MachineBinding("M3", plc_map, unit_id=300),
            ],
            Collector(),
        )
    text = str(info.value)
    assert "machine M1.plc_map: 'ua' is an opcua map, not a Modbus map" in text
    # 65000 + 600 = 65600 > 65535
    assert "machine M2.address_offset: a at 65000 + offset 600 is outside 0..65535" in text
    assert "machine M3.unit_id: must be 0..255, got 300" in text


async def test_a_source_runs_once(free_port: int) -> None:
    plc_map = modbus_map(hr("a", 0, "uint16"))
    source = ModbusSource(plc_config(free_port), [MachineBinding("M1", plc_map)], Collector())
    assert source.state is SourceState.UNOPENED
    async with source:
        assert source.state is SourceState.RUNNING
    assert source.state is SourceState.CLOSED
    with pytest.raises(RuntimeError, match="runs once"):
        await source.__aenter__()


async def test_a_slow_sink_makes_polls_skip_not_pile_up(free_port: int) -> None:
    plc_map = modbus_map(hr("a", 0, "uint16"))
    server = PlcServer(free_port)
    batches = 0

    async def slow_sink(batch: Any) -> None:
        nonlocal batches
        batches += 1
        server.set_registers(0, [batches])  # always a change, so every poll delivers
        await asyncio.sleep(0.12)

    source = ModbusSource(
        plc_config(free_port, poll_interval_s=0.05), [MachineBinding("M1", plc_map)], slow_sink
    )
    async with server, source:
        await asyncio.sleep(0.8)
    stats = source.statistics()
    # each poll takes >= 0.12 s: at most 0.8 / 0.12 + 1 = 7.7 polls fit, not the 16 slots
    assert 2 <= stats.polls <= 8
    # the slots a poll overran were skipped, not queued up
    assert stats.skipped_polls >= stats.polls - 1


async def test_a_failing_sink_loses_no_link_change(free_port: int, collector: Collector) -> None:
    plc_map = modbus_map(hr("a", 0, "uint16"))
    server = PlcServer(free_port)
    server.set_registers(0, [3])
    calls = 0

    async def flaky_sink(batch: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("mailbox closed")
        await collector(batch)

    source = ModbusSource(plc_config(free_port), [MachineBinding("M1", plc_map)], flaky_sink)
    async with server, source:
        await collector.wait_for(lambda: collector.values("M1", "a") == [3])
    # the refused first batch (link up + value) arrives whole with the next poll
    first = collector.batches[0]
    assert isinstance(first[0], LinkChanged) and first[0].up
    assert [(e.signal, e.value) for e in first[1:] if isinstance(e, Sample)] == [("a", 3)]
    assert len(collector.links("M1")) == 1
