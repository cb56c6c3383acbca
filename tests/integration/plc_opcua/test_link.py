"""OpcUaSource link handling against a real asyncua server: restarts, dead paths, no server.

One server for the module; each test follows its own machine's tags. The
restart test stops and starts that server, and leaves it running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from actors.messages import LinkChanged, Sample
from edge.config.plc_maps import DataType, load_plc_map
from edge.sources.plc.binding import MachineBinding
from edge.sources.plc.opcua import OpcUaSource

from .conftest import (
    OpcUaPlc,
    Recorder,
    SilentProxy,
    free_port,
    machine_nodes,
    opcua_map,
    plc_config,
    signal,
    utc,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLC_MAPS = Path(__file__).resolve().parents[3] / "plc_maps"
GENERIC = load_plc_map("generic-opcua", [PLC_MAPS])  # the map shipped with the product
COUNTER = opcua_map(signal("total_count", DataType.UINT32, "ns=2;s={machine}.Counters.Total"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plc() -> AsyncIterator[OpcUaPlc]:
    variables = machine_nodes("L1", GENERIC.signals)
    for machine in ("W1", "Q1"):
        variables |= machine_nodes(machine, COUNTER.signals)
    server = OpcUaPlc(free_port(), variables)
    await server.start()
    yield server
    await server.stop()


def ups_and_downs(sink: Recorder, machine_id: str) -> list[bool]:
    return [link.up for link in sink.links(machine_id)]


async def test_a_restarted_server_gives_one_down_one_up_and_no_lost_or_doubled_count(
    plc: OpcUaPlc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.plc.opcua")
    total = "ns=2;s=L1.Counters.Total"
    sink = Recorder()
    source = OpcUaSource(plc_config(plc.endpoint), [MachineBinding("L1", GENERIC)], sink)
    async with source:
        await sink.wait_for(lambda: len(sink.events) >= 9, "link up and all 8 current values")
        for count in range(1, 6):
            await plc.write(total, count, utc(2025, 3, 2, 6, 0, count))
            await sink.wait_value("L1", "total_count", count)

        await plc.power_off()
        await sink.wait_for(lambda: ups_and_downs(sink, "L1") == [True, False], "link down")
        # The PLC made 3 pieces while nobody could see it.
        await plc.write(total, 8, utc(2025, 3, 2, 6, 0, 8))
        await asyncio.sleep(0.6)  # several reconnect attempts (backoff 0.05..0.2 s)
        failures_while_off = source.statistics().consecutive_failures
        await plc.power_on()
        await sink.wait_for(lambda: ups_and_downs(sink, "L1") == [True, False, True], "link up")
        await sink.wait_value("L1", "total_count", 8)

        for count in (9, 10):
            await plc.write(total, count, utc(2025, 3, 2, 6, 0, count))
            await sink.wait_value("L1", "total_count", count)
        stats = source.statistics()

    # Every reading the server held while up, once each; 6, 7 were never on
    # the server while it was up: 8 reveals them (the core does the delta).
    assert sink.values("L1", "total_count") == [0, 1, 2, 3, 4, 5, 8, 9, 10]
    assert [s.ts for s in sink.samples("L1", "total_count")[-3:]] == [
        utc(2025, 3, 2, 6, 0, 8).timestamp(),
        utc(2025, 3, 2, 6, 0, 9).timestamp(),
        utc(2025, 3, 2, 6, 0, 10).timestamp(),
    ]
    assert ups_and_downs(sink, "L1") == [True, False, True]
    down, up = sink.links("L1")[1:]
    assert down.detail
    assert down.ts <= up.ts
    # After the link is back: the link change, then every current value.
    events = sink.events
    after_up = events[events.index(up) + 1 : events.index(up) + 9]
    assert sorted(e.signal for e in after_up if isinstance(e, Sample)) == sorted(
        s.name for s in GENERIC.signals
    )
    assert failures_while_off >= 2
    assert stats.link_up
    assert stats.consecutive_failures == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "link down" in m]) == 1
    assert len([m for m in messages if "link restored" in m]) == 1


async def test_a_connection_that_goes_silent_is_noticed_and_replaced(plc: OpcUaPlc) -> None:
    proxy = SilentProxy(plc.port)
    await proxy.start()
    total = "ns=2;s=W1.Counters.Total"
    sink = Recorder()
    try:
        async with OpcUaSource(plc_config(proxy.endpoint), [MachineBinding("W1", COUNTER)], sink):
            await sink.wait_for(lambda: ups_and_downs(sink, "W1") == [True], "link up")
            await sink.wait_for(lambda: sink.values("W1", "total_count") == [0], "current value")

            # No FIN, no RST, no bytes: only the watchdog can tell.
            proxy.silent = True
            await sink.wait_for(lambda: ups_and_downs(sink, "W1") == [True, False], "link down")
            await plc.write(total, 3, utc(2025, 3, 2, 7))
            await asyncio.sleep(0.3)

            proxy.silent = False
            await sink.wait_for(lambda: ups_and_downs(sink, "W1") == [True, False, True], "up")
            await sink.wait_value("W1", "total_count", 3)
            await plc.write(total, 4, utc(2025, 3, 2, 7, 0, 1))
            await sink.wait_value("W1", "total_count", 4)
    finally:
        await proxy.stop()
    assert sink.values("W1", "total_count") == [0, 3, 4]
    assert ups_and_downs(sink, "W1") == [True, False, True]
    # Noticed by the source's own liveness read, not by a closed socket.
    assert "CurrentTime" in sink.links("W1")[1].detail


async def test_no_server_gives_one_link_down_and_keeps_trying() -> None:
    sink = Recorder()
    config = plc_config(f"opc.tcp://127.0.0.1:{free_port()}/")
    source = OpcUaSource(config, [MachineBinding("N1", COUNTER)], sink)
    async with source:
        await sink.wait_for(lambda: source.statistics().connects >= 3, "three attempts")
        stats = source.statistics()
    (down,) = sink.links("N1")
    assert sink.events == [LinkChanged("N1", up=False, ts=down.ts, detail=down.detail)]
    assert down.detail.startswith("connect: ")
    assert not stats.link_up
    assert stats.errors >= 2


async def test_a_quiet_server_is_not_taken_for_a_dead_one(plc: OpcUaPlc) -> None:
    # Nothing changes for several watchdog periods (probe every 0.25 s, silence
    # limit 0.25 s keep-alive + 0.5 s timeout): keep-alives and the liveness read
    # must keep the link up.
    sink = Recorder()
    source = OpcUaSource(plc_config(plc.endpoint), [MachineBinding("Q1", COUNTER)], sink)
    async with source:
        await sink.wait_for(lambda: ups_and_downs(sink, "Q1") == [True], "link up")
        await asyncio.sleep(2.0)
        stats = source.statistics()
    assert ups_and_downs(sink, "Q1") == [True]
    assert stats.connects == 1
    assert stats.link_up
