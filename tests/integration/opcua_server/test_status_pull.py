"""A machine's status values nobody watches are asked when a client reads them.

The refresh asks a machine for its status (state, stop, ~45 KPI values) after
each of its events and once a second anyway, so that SCADA sees numbers that
move with time. While no client subscribes to any of them, the refresh only
marks the status stale and a Read answers it from the actor at once; a
subscription brings the asking back. Real server, real machine actors, an
asyncua client; counts by hand (OEE.md: the first reading is the baseline).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from actors.machine import GetStatus, SampleBatch
from actors.messages import Sample
from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server
from edge.serve.opcua import OpcUaServer

from .conftest import client, free_port, make_config, node_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def feed(service: LineService, *samples: tuple[str, object, float]) -> None:
    batch = tuple(Sample("M1", signal, value, ts) for signal, value, ts in samples)
    ref = service.machine_ref("M1")
    await ref.tell(SampleBatch(batch))
    await ref.ask(GetStatus(time.time()))  # handled, events published


class Counts:
    def __init__(self) -> None:
        self.values: list[object] = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.values.append(val)


async def test_unwatched_status_is_asked_when_read_and_a_watched_one_with_each_refresh(
    tmp_path: Any,
) -> None:
    port = free_port()
    config = make_config(tmp_path, port)
    interval = config.opcua.status_interval_s
    async with LineService(
        config, components=[opcua_server.component], tick_interval_s=None
    ) as service:
        server = next(c for c in service.components if isinstance(c, OpcUaServer))
        # Each machine is asked once after the start (what a pull then brings up to date).
        await wait_for(lambda: server.statistics().status_asks >= 2)
        t0 = time.time() - 60
        await feed(service, ("running", True, t0), ("total_count", 1000, t0))
        await feed(service, ("total_count", 1007, t0 + 10))  # 7 pieces

        asks = server.statistics().status_asks
        await asyncio.sleep(5 * interval)  # five refresh intervals, an event before them
        assert server.statistics().status_asks == asks, "nobody watches: nobody is asked"

        async with client(port) as c:
            total = c.get_node(await node_of(c, "L1.M1.OEE.TotalCount"))
            availability = c.get_node(await node_of(c, "L1.M1.OEE.Availability"))
            pulls = server.statistics().status_pulls
            # One Read of two of the machine's values: one status answered for both.
            read = await c.read_attributes([total, availability])
            assert server.statistics().status_pulls == pulls + 1
            assert read[0].StatusCode.is_good() and read[0].Value.Value == 7
            # 10 s of run time, all of it running, since the baseline
            assert read[1].Value.Value == pytest.approx(1.0)

            counts = Counts()
            subscription = await c.create_subscription(50, counts)
            await subscription.subscribe_data_change(total)
            await wait_for(lambda: 7 in counts.values)
            asks = server.statistics().status_asks
            await feed(service, ("total_count", 1010, t0 + 20))  # 3 more
            await wait_for(lambda: 10 in counts.values)
            assert server.statistics().status_asks > asks, "a watched status is asked"
            await subscription.delete()
