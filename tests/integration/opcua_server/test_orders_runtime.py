"""OPC UA methods against the real order runtime (edge.orders): an order
downloaded and released by the MES is started and completed from SCADA, and its
order object follows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import opcua_server
from edge.commands import OrderSpec
from edge.orders import component as orders_component
from edge.service import LineService

from .conftest import USERS, client, free_port, make_config, node_of, wait_for

pytestmark = pytest.mark.integration


async def test_scada_starts_and_completes_an_order_of_the_real_runtime(tmp_path: Path) -> None:
    port = free_port()
    config = make_config(tmp_path, port, opcua=USERS)
    components = [orders_component, opcua_server.component]
    async with LineService(config, components=components) as service:
        commands = service.commands
        assert commands is not None
        spec = OrderSpec("WO-77", "cap-38mm", 500, ("M1",), ideal_cycle_s=0.8)
        await commands.download_order(spec, source="mqtt", user="mes")
        await commands.release_order("WO-77", source="mqtt", user="mes")
        async with client(port, "op") as c:
            orders = c.get_node(await node_of(c, "L1.Orders"))
            start = c.get_node(await node_of(c, "L1.Orders.StartOrder"))
            assert await orders.call_method(start, "WO-77") == "running"
            status = c.get_node(await node_of(c, "L1.Orders.WO-77.Status"))

            async def shows(expected: str) -> bool:
                return bool(await status.read_value() == expected)

            await wait_for(lambda: shows("running"))
            product = c.get_node(await node_of(c, "L1.Orders.WO-77.Product"))
            assert await product.read_value() == "cap-38mm"
            current = c.get_node(await node_of(c, "L1.M1.CurrentOrder"))
            await wait_for(lambda: _is(current.read_value(), "WO-77"))
        async with client(port, "lead") as c:
            orders = c.get_node(await node_of(c, "L1.Orders"))
            complete = c.get_node(await node_of(c, "L1.Orders.CompleteOrder"))
            assert await orders.call_method(complete, "WO-77") == "completed"
            status = c.get_node(await node_of(c, "L1.Orders.WO-77.Status"))
            await wait_for(lambda: _is(status.read_value(), "completed"))


async def _is(value: object, expected: object) -> bool:
    return bool(await value == expected)  # type: ignore[misc]
