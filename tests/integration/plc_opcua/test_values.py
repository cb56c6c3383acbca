"""OpcUaSource against a real asyncua server: value types, timestamps, changes, bad values.

One server for the module (it takes about two seconds to start); every test
follows its own machine's tags, so the tests do not see each other's writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio
from asyncua.ua.status_codes import StatusCodes

from actors.messages import LinkChanged, Quality, Sample
from edge.config.plc_maps import Area, DataType, ModbusLocation, PlcMap, Protocol, SignalDef
from edge.errors import ConfigError
from edge.sources.plc.binding import MachineBinding, SourceState
from edge.sources.plc.delivery import SourceEvent
from edge.sources.plc.opcua import OpcUaSource

from .conftest import (
    OpcUaPlc,
    Recorder,
    free_port,
    machine_nodes,
    opcua_map,
    plc_config,
    signal,
    utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SIGNALS = (
    signal("running", DataType.BOOL, "ns=2;s={machine}.Running"),
    signal("state", DataType.INT32, "ns=2;s={machine}.State"),
    signal("total_count", DataType.UINT32, "ns=2;s={machine}.Total"),
    # engineering value = raw * 0.5 - 10, BAD outside -40..100
    signal(
        "temperature",
        DataType.FLOAT32,
        "ns=2;s={machine}.Temperature",
        scale=0.5,
        offset=-10.0,
        minimum=-40.0,
        maximum=100.0,
    ),
)
MAP = opcua_map(*SIGNALS)
MACHINES = ("types", "changes", "bad", "unknown", "sink", "slow")
T0 = utc(2025, 1, 1)  # every tag's SourceTimestamp when the server starts


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plc() -> AsyncIterator[OpcUaPlc]:
    variables: dict[str, DataType] = {}
    for machine in MACHINES:
        variables.update(machine_nodes(machine, SIGNALS))
    server = OpcUaPlc(free_port(), variables)
    await server.start()
    yield server
    await server.stop()


def tag(machine: str, name: str) -> str:
    return f"ns=2;s={machine}.{name}"


async def test_each_value_type_arrives_with_the_servers_source_timestamp(plc: OpcUaPlc) -> None:
    sink = Recorder()
    async with OpcUaSource(plc_config(plc.endpoint), [MachineBinding("types", MAP)], sink):
        await sink.wait_for(lambda: len(sink.events) >= 5, "link up and the current values")
        # First the link, then every current value, each with the tag's own timestamp.
        assert sink.batches[0][0] == LinkChanged("types", up=True, ts=sink.batches[0][0].ts)
        current = {e.signal: e for e in sink.events if isinstance(e, Sample)}
        assert current == {
            "running": Sample("types", "running", False, T0.timestamp()),
            "state": Sample("types", "state", 0, T0.timestamp()),
            "total_count": Sample("types", "total_count", 0, T0.timestamp()),
            # raw 0.0 * 0.5 - 10 = -10.0
            "temperature": Sample("types", "temperature", -10.0, T0.timestamp()),
        }

        t1, t2, t3, t4 = (utc(2025, 3, 1, 6, 0, 0, ms * 1000) for ms in (125, 250, 375, 500))
        await plc.write(tag("types", "Running"), True, t1)
        await plc.write(tag("types", "State"), 6, t2)
        # above 2**31: a uint32 counter must not pass through a signed type
        await plc.write(tag("types", "Total"), 4_000_000_000, t3)
        await plc.write(tag("types", "Temperature"), 65.0, t4)
        await sink.wait_for(lambda: len(sink.events) >= 9, "four changes")

    changes = sink.events[5:]
    assert sorted(changes, key=lambda e: e.ts) == [
        Sample("types", "running", True, t1.timestamp()),
        Sample("types", "state", 6, t2.timestamp()),
        Sample("types", "total_count", 4_000_000_000, t3.timestamp()),
        # raw 65.0 * 0.5 - 10 = 22.5
        Sample("types", "temperature", 22.5, t4.timestamp()),
    ]
    values = {e.signal: e.value for e in changes if isinstance(e, Sample)}
    assert type(values["running"]) is bool
    assert type(values["state"]) is int
    assert type(values["total_count"]) is int
    assert type(values["temperature"]) is float


async def test_only_changed_values_are_delivered(plc: OpcUaPlc) -> None:
    sink = Recorder()
    source = OpcUaSource(plc_config(plc.endpoint), [MachineBinding("changes", MAP)], sink)
    async with source:
        await sink.wait_for(lambda: len(sink.events) >= 5, "link up and the current values")
        total = tag("changes", "Total")
        await plc.write(total, 5, utc(2025, 3, 1, 7))
        await sink.wait_value("changes", "total_count", 5)
        # Same value again with a later timestamp, then a real change.
        await plc.write(total, 5, utc(2025, 3, 1, 7, 0, 1))
        await plc.write(tag("changes", "State"), 0, utc(2025, 3, 1, 7, 0, 1))
        await plc.write(total, 6, utc(2025, 3, 1, 7, 0, 2))
        await sink.wait_value("changes", "total_count", 6)
        stats = source.statistics()

    # The read on connect and the subscription's first notifications carry the
    # same values: each signal still arrives once.
    assert sink.values("changes", "total_count") == [0, 5, 6]
    assert [s.ts for s in sink.samples("changes", "total_count")] == [
        T0.timestamp(),
        utc(2025, 3, 1, 7).timestamp(),
        utc(2025, 3, 1, 7, 0, 2).timestamp(),
    ]
    assert sink.values("changes", "state") == [0]
    assert sink.values("changes", "running") == [False]
    assert stats.link_up
    assert stats.monitored_items == 4
    assert stats.notifications >= 6  # 4 initial notifications, 5 and 6 at least


async def test_bad_status_and_out_of_range_values_are_bad_samples(
    plc: OpcUaPlc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.plc.opcua")
    sink = Recorder()
    async with OpcUaSource(plc_config(plc.endpoint), [MachineBinding("bad", MAP)], sink):
        await sink.wait_for(lambda: len(sink.events) >= 5, "link up and the current values")
        temperature = tag("bad", "Temperature")
        # raw 230.0 * 0.5 - 10 = 105.0 > max 100: BAD; then raw 60.0 -> 20.0 GOOD
        await plc.write(temperature, 230.0, utc(2025, 3, 1, 8))
        await sink.wait_value("bad", "temperature", None)
        await plc.write(temperature, 231.0, utc(2025, 3, 1, 8, 0, 1))  # still BAD: no sample
        await plc.write(temperature, 60.0, utc(2025, 3, 1, 8, 0, 2))
        await sink.wait_value("bad", "temperature", 20.0)

        await plc.write_status(tag("bad", "State"), StatusCodes.BadSensorFailure)
        await sink.wait_value("bad", "state", None)
        await plc.write(tag("bad", "State"), 4, utc(2025, 3, 1, 8, 0, 3))
        await sink.wait_value("bad", "state", 4)

    temperatures = sink.samples("bad", "temperature")
    assert [(s.value, s.quality) for s in temperatures] == [
        (-10.0, Quality.GOOD),
        (None, Quality.BAD),
        (20.0, Quality.GOOD),
    ]
    assert temperatures[1].ts == utc(2025, 3, 1, 8).timestamp()
    states = sink.samples("bad", "state")
    assert [(s.value, s.quality) for s in states] == [
        (0, Quality.GOOD),
        (None, Quality.BAD),
        (4, Quality.GOOD),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "temperature" in w]) == 1  # logged once, not per value
    assert len([w for w in warnings if "BadSensorFailure" in w]) == 1
    assert any("temperature good again" in r.getMessage() for r in caplog.records)


async def test_a_node_the_server_does_not_know_is_bad_and_the_others_work(
    plc: OpcUaPlc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.plc.opcua")
    plc_map = opcua_map(*SIGNALS, signal("speed", DataType.FLOAT64, "ns=2;s={machine}.NoSuchTag"))
    sink = Recorder()
    source = OpcUaSource(plc_config(plc.endpoint), [MachineBinding("unknown", plc_map)], sink)
    async with source:
        await sink.wait_for(lambda: len(sink.events) >= 6, "link up and the current values")
        await plc.write(tag("unknown", "Total"), 17, utc(2025, 3, 1, 9))
        await sink.wait_value("unknown", "total_count", 17)
        stats = source.statistics()

    speed = sink.samples("unknown", "speed")
    assert [(s.value, s.quality) for s in speed] == [(None, Quality.BAD)]
    assert sink.values("unknown", "total_count") == [0, 17]
    assert sink.values("unknown", "running") == [False]
    assert stats.unknown_nodes == 1
    assert stats.monitored_items == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "machine unknown" in lines[0]
    assert "'ns=2;s=unknown.NoSuchTag' is unknown to the server" in lines[0]


async def test_a_failing_sink_gets_the_link_change_and_every_value_again(plc: OpcUaPlc) -> None:
    sink = Recorder()
    sink.fail_next = 1  # refuses the first batch: link up and the current values
    async with OpcUaSource(plc_config(plc.endpoint), [MachineBinding("sink", MAP)], sink):
        await sink.wait_for(lambda: len(sink.events) >= 5, "the retried batch")
    first = sink.batches[0]
    assert first[0] == LinkChanged("sink", up=True, ts=first[0].ts)
    assert sorted(e.signal for e in first[1:] if isinstance(e, Sample)) == [
        "running",
        "state",
        "temperature",
        "total_count",
    ]


async def test_bindings_that_cannot_be_followed_are_config_errors(plc: OpcUaPlc) -> None:
    modbus_map = PlcMap(
        name="generic-modbus",
        protocol=Protocol.MODBUS,
        signals=(SignalDef("running", DataType.BOOL, ModbusLocation(Area.COIL, 0)),),
    )
    unparsable = opcua_map(signal("state", DataType.INT32, "ns=two;s={machine}.State"))
    with pytest.raises(ConfigError) as caught:
        OpcUaSource(
            plc_config(plc.endpoint),
            [
                MachineBinding("m1", modbus_map),
                MachineBinding("m2", unparsable),
                MachineBinding("m3", MAP, address_offset=10),
                MachineBinding("m3", MAP),
            ],
            Recorder(),
        )
    assert [p.path for p in caught.value.problems] == [
        "machine m1.plc_map",
        "machine m2.plc_map.state",
        "machine m3.address_offset",
        "machine m3",
    ]
    assert "'ns=two;s=m2.State' is not an OPC UA node id" in str(caught.value)


class SlowRecorder(Recorder):
    async def __call__(self, batch: Sequence[SourceEvent]) -> None:
        await asyncio.sleep(0.2)
        await super().__call__(batch)


async def test_a_slow_sink_gets_the_latest_values_in_order_after_an_overflow(
    plc: OpcUaPlc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.plc.opcua")
    sink = SlowRecorder()
    binding = [MachineBinding("slow", MAP)]
    source = OpcUaSource(plc_config(plc.endpoint), binding, sink, queue_size=2)
    async with source:
        await sink.wait_for(lambda: len(sink.events) >= 5, "link up and the current values")
        for count in range(1, 31):
            await plc.write(tag("slow", "Total"), count, utc(2025, 3, 1, 10, 0, count))
            await plc.write(tag("slow", "State"), count % 7, utc(2025, 3, 1, 10, 0, count))
            await asyncio.sleep(0.01)
        await sink.wait_value("slow", "total_count", 30)
        stats = source.statistics()

    counts = [s.value for s in sink.samples("slow", "total_count") if isinstance(s.value, int)]
    assert len(counts) == len(sink.samples("slow", "total_count"))
    assert counts == sorted(set(counts))  # no count twice, none out of order
    stamps = [s.ts for s in sink.samples("slow", "total_count")]
    assert stamps == sorted(stamps)
    assert stats.overflows >= 1
    assert [r.getMessage() for r in caplog.records if "notifications waiting" in r.getMessage()]


async def test_a_source_runs_once(plc: OpcUaPlc) -> None:
    source = OpcUaSource(plc_config(plc.endpoint), [MachineBinding("types", MAP)], Recorder())
    states = [source.state]
    async with source:
        states.append(source.state)
    states.append(source.state)
    assert states == [SourceState.UNOPENED, SourceState.RUNNING, SourceState.CLOSED]
    with pytest.raises(RuntimeError, match="runs once"):
        async with source:
            pass
