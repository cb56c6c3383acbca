"""The live-value writer against a real asyncua server and client: a value nobody
watches is made when read (with the timestamps it was staged with), a client that
subscribes gets the current value and then every change, and after it leaves the
values are deferred again — reads stay right throughout."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from asyncua import Client, ua

from edge.serve.opcua.address_space import AddressSpace
from edge.serve.opcua.bulk import StoredAttribute
from edge.serve.opcua.uaids import AttributeIds, StatusCodes
from edge.serve.opcua.writer import LiveValueWriter

from .conftest import endpoint, free_port, wait_for
from .test_bulk_load import build_line, new_server

pytestmark = pytest.mark.integration

SOURCE_TS = 1_700_000_000.5  # 2023-11-14T22:13:20.5Z


class Changes:
    """A subscription handler keeping every data change it is told of."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.values.append(value)


def _holder(server: Any, node_id: ua.NodeId) -> StoredAttribute:
    held = server.iserver.aspace[node_id].attributes[AttributeIds.Value]
    assert isinstance(held, StoredAttribute)
    return held


async def test_unwatched_values_are_made_when_read_and_watched_ones_are_written() -> None:
    server, idx = await new_server()
    port = free_port()
    server.set_endpoint(endpoint(port))
    space = AddressSpace(server, idx)
    await build_line(space)
    speed = space.handle("L1.M1.ProcessValues.speed")
    writer = LiveValueWriter(server)
    async with server:
        writer.start()
        try:
            writer.stage(speed, 120.0, SOURCE_TS)
            assert writer.statistics().deferred == 1
            assert writer.statistics().pending == 0  # nothing to write: nobody watches
            async with Client(endpoint(port), timeout=5) as client:
                node = client.get_node(speed.node_id)
                read = await node.read_data_value()
                assert read.Value.Value == 120.0
                assert read.StatusCode.is_good()
                assert read.SourceTimestamp == dt.datetime.fromtimestamp(SOURCE_TS, dt.UTC)

                changes = Changes()
                subscription = await client.create_subscription(50, changes)
                await subscription.subscribe_data_change(node)
                await wait_for(lambda: changes.values == [120.0])
                assert _holder(server, speed.node_id).watched
                for value in (121.0, 122.0):
                    writer.stage(speed, value, SOURCE_TS + value)
                    await wait_for(lambda v=value: changes.values[-1:] == [v])
                assert changes.values == [120.0, 121.0, 122.0]
                written = writer.statistics().written
                assert written >= 2
                await subscription.delete()
                await wait_for(lambda: not _holder(server, speed.node_id).watched)

                # Unwatched again: deferred, and a read still gets the newest value.
                writer.stage(speed, 130.0, SOURCE_TS + 30, StatusCodes.UncertainLastUsableValue)
                assert writer.statistics().written == written
                read = await node.read_data_value(raise_on_bad_status=False)
                assert read.Value.Value == 130.0
                assert read.StatusCode.value == StatusCodes.UncertainLastUsableValue
                assert read.SourceTimestamp == dt.datetime.fromtimestamp(SOURCE_TS + 30, dt.UTC)
        finally:
            await writer.stop()


async def test_a_write_pending_from_a_watched_moment_does_not_land_after_a_newer_value() -> None:
    server, idx = await new_server()
    space = AddressSpace(server, idx)
    await build_line(space)
    level = space.handle("L1.M1.ProcessValues.level")
    holder = _holder(server, level.node_id)
    holder.datachange_callbacks[1] = _ignore  # a monitored item, as asyncua registers it
    writer = LiveValueWriter(server)  # not started: the write stays pending
    writer.stage(level, 0.25, SOURCE_TS)
    assert writer.statistics().pending == 1
    del holder.datachange_callbacks[1]
    writer.stage(level, 0.5, SOURCE_TS + 1)
    assert writer.statistics().pending == 0
    await writer.flush()
    value = holder.value
    assert value is not None and value.Value is not None
    assert value.Value.Value == 0.5


async def _ignore(handle: int, value: ua.DataValue) -> None:
    await asyncio.sleep(0)


async def test_a_deferred_recipe_gives_its_source_newest_value_and_a_watcher_gets_the_next() -> (
    None
):
    server, idx = await new_server()
    space = AddressSpace(server, idx)
    await build_line(space)
    level = space.handle("L1.M1.ProcessValues.level")
    holder = _holder(server, level.node_id)
    writer = LiveValueWriter(server)  # not started: a write stays pending
    source = [0.25]

    def recipe() -> ua.DataValue:
        return ua.DataValue(ua.Variant(source[0], ua.VariantType.Double))

    writer.stage(level, 0.5, SOURCE_TS)
    holder.datachange_callbacks[1] = _ignore
    assert not writer.defer_cell(writer.cell(level), recipe)  # watched: the caller stages
    writer.stage(level, 0.75, SOURCE_TS + 1)
    assert writer.statistics().pending == 1
    del holder.datachange_callbacks[1]
    assert writer.defer_cell(writer.cell(level), recipe)  # the pending 0.75 is older: dropped
    assert writer.statistics().pending == 0
    source[0] = 0.125  # the source moved on after the deferral: a read sees where it is
    value = holder.value
    assert value is not None and value.Value is not None
    assert value.Value.Value == 0.125
    # What was deferred is not known to staging: the same value staged again is written.
    holder.datachange_callbacks[1] = _ignore
    writer.stage(level, 0.75, SOURCE_TS + 2)
    assert writer.statistics().pending == 1
    await writer.flush()
    value = holder.value
    assert value is not None and value.Value is not None
    assert value.Value.Value == 0.75
