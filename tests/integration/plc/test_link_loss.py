"""Link loss and recovery, a PLC that never answers, and bad data from a PLC."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from actors.messages import LinkChanged, Quality, Sample
from edge.config.plc_maps import PlcMap
from edge.sources.plc import MachineBinding, ModbusSource, parse_plc_map

from .conftest import Collector, PlcServer, plc_config

pytestmark = pytest.mark.integration


def counter_map() -> PlcMap:
    return parse_plc_map(
        {
            "protocol": "modbus",
            "signals": [
                {"role": "total_count", "area": "holding_register", "address": 0, "type": "uint32"},
                {"name": "temperature", "area": "holding_register", "address": 2, "type": "int16"},
            ],
        },
        name="counter",
    )


def u32(value: int) -> list[int]:
    return [value >> 16, value & 0xFFFF]


async def test_plc_stopped_and_restarted(free_port: int, collector: Collector) -> None:
    server = PlcServer(free_port)
    server.set_registers(0, [*u32(100), 25])
    source = ModbusSource(plc_config(free_port), [MachineBinding("M1", counter_map())], collector)
    written = [100]

    def delivered() -> list[Any]:
        return collector.values("M1", "total_count")

    await server.start()
    async with source:
        await collector.wait_for(lambda: delivered() == [100])
        for value in (101, 102, 70_000):  # 70 000 needs both words of the uint32
            server.set_registers(0, u32(value))
            written.append(value)
            await collector.wait_for(lambda: delivered() == written)

        stopped_at = time.time()
        await server.stop()
        await collector.wait_for(lambda: len(collector.links("M1")) == 2)
        down = collector.links("M1")[1]
        assert down.up is False
        # ts = start of the first failed poll: after the last good poll, about when we stopped
        last_good = collector.samples("M1", "total_count")[-1].ts
        assert last_good <= down.ts
        assert stopped_at - 0.1 <= down.ts <= time.time()
        assert not source.statistics().link_up

        # pieces made while the link is down; the counter moves on in the PLC
        server.set_registers(0, u32(70_005))
        written.append(70_005)
        await asyncio.sleep(0.3)  # several failed reconnects, still one LinkChanged
        assert len(collector.links("M1")) == 2

        restarted_at = time.time()
        await server.start()
        await collector.wait_for(lambda: len(collector.links("M1")) == 3)
        up_batch = next(b for b in collector.batches if b and b[0] == collector.links("M1")[2])
        await collector.wait_for(lambda: delivered() == written)

        server.set_registers(0, u32(70_006))
        written.append(70_006)
        await collector.wait_for(lambda: delivered() == written)
        await server.stop()

    links = collector.links("M1")
    assert [link.up for link in links] == [True, False, True]
    up = links[2]
    assert up.ts >= restarted_at
    # recovery: LinkChanged(up) then the full current value set in the same batch,
    # the unchanged temperature included (the core re-baselines on it)
    assert isinstance(up_batch[0], LinkChanged)
    resent = {e.signal: e.value for e in up_batch[1:] if isinstance(e, Sample)}
    assert resent == {"total_count": 70_005, "temperature": 25}
    assert all(e.ts == up.ts for e in up_batch[1:])
    # every reading the PLC held while reachable arrived once, in order: none lost, none
    # invented, none repeated (the re-sent 70 005 is the first reading after the outage)
    assert delivered() == [100, 101, 102, 70_000, 70_005, 70_006]
    assert collector.values("M1", "temperature") == [25, 25]


async def test_a_plc_that_never_answers_does_not_stall_another(
    free_port_factory: Any, collector: Collector
) -> None:
    dead_port, healthy_port = free_port_factory(), free_port_factory()
    connections: list[asyncio.StreamWriter] = []

    async def accept_and_ignore(
        _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connections.append(writer)

    dead = await asyncio.start_server(accept_and_ignore, "127.0.0.1", dead_port)
    healthy = PlcServer(healthy_port)
    plc_map = counter_map()
    dead_collector = Collector()
    # dead PLC: 0.3 s timeout, 1 retry -> each failed request blocks its loop 0.6 s
    dead_source = ModbusSource(
        plc_config(dead_port, id="dead", timeout_s=0.3, retries=1, backoff_initial_s=0.1),
        [MachineBinding("D1", plc_map)],
        dead_collector,
    )
    healthy_source = ModbusSource(
        plc_config(healthy_port, id="healthy", poll_interval_s=0.05),
        [MachineBinding("H1", plc_map)],
        collector,
    )
    async with dead, healthy, dead_source, healthy_source:
        await dead_collector.wait_for(lambda: len(dead_collector.links("D1")) == 1, within_s=3.0)
        before = healthy_source.statistics().polls
        started = time.monotonic()
        # wait through two more of the dead PLC's 0.6 s request timeouts
        errors = dead_source.statistics().errors
        await dead_collector.wait_for(
            lambda: dead_source.statistics().errors >= errors + 2, within_s=4.0
        )
        elapsed = time.monotonic() - started
        healthy_polls = healthy_source.statistics().polls - before
    for writer in connections:
        writer.close()

    assert connections, "the dead PLC accepted connections"
    assert dead_collector.links("D1")[0].up is False
    assert elapsed >= 0.6
    # the healthy PLC kept its 0.05 s schedule: >= 0.6 / 0.05 = 12 slots passed;
    # a loop stalled behind the dead PLC would have managed about one poll per 0.6 s
    assert healthy_polls >= 6
    assert healthy_source.statistics().link_up


async def test_bad_plc_data_is_bad_quality_not_a_crash(
    free_port: int, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    plc_map = parse_plc_map(
        {
            "protocol": "modbus",
            "signals": [
                {"role": "total_count", "area": "holding_register", "address": 0, "type": "uint32"},
                {"name": "flow", "area": "holding_register", "address": 2, "type": "float32"},
                {
                    "role": "state",
                    "area": "holding_register",
                    "address": 4,
                    "type": "uint16",
                    "max": 17,
                },
                # beyond the server's 1000 registers: the PLC answers with an exception
                {"name": "missing", "area": "input_register", "address": 2000, "type": "uint16"},
            ],
        },
        name="bad",
    )
    server = PlcServer(free_port)
    server.set_registers(0, [*u32(1000), 0x7FC0, 0x0000, 6])  # flow = NaN (0x7FC00000)
    source = ModbusSource(plc_config(free_port), [MachineBinding("M1", plc_map)], collector)
    with caplog.at_level(logging.WARNING, logger="edge.plc.modbus"):
        async with server, source:
            await collector.wait_for(lambda: collector.latest("M1", "flow") is not None)
            polls = source.statistics().polls
            await collector.wait_for(lambda: source.statistics().polls >= polls + 3)
            # a counter going back by a little is delivered raw: the core decides
            server.set_registers(0, u32(998))
            server.set_registers(4, [42])  # not a PackML state (max 17)
            await collector.wait_for(lambda: collector.values("M1", "total_count") == [1000, 998])
            await collector.wait_for(lambda: len(collector.samples("M1", "state")) == 2)
            server.set_registers(2, [0x4120, 0x0000])  # 10.0 = 0x41200000
            server.set_registers(4, [6])
            await collector.wait_for(lambda: collector.values("M1", "flow") == [None, 10.0])
            await collector.wait_for(lambda: collector.values("M1", "state") == [6, None, 6])

    flow = collector.samples("M1", "flow")
    assert [s.quality for s in flow] == [Quality.BAD, Quality.GOOD]
    state = collector.samples("M1", "state")
    assert [s.quality for s in state] == [Quality.GOOD, Quality.BAD, Quality.GOOD]
    missing = collector.samples("M1", "missing")
    assert [(s.value, s.quality) for s in missing] == [(None, Quality.BAD)]
    assert all(s.quality is Quality.GOOD for s in collector.samples("M1", "total_count"))
    # one log line per problem, however many polls saw it
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("flow: not a number" in w for w in warnings) == 1
    assert sum("state: 42 outside" in w for w in warnings) == 1
    assert sum("Modbus exception" in w for w in warnings) == 1
    assert source.statistics().link_up is True
