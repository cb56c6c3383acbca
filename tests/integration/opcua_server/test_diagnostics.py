"""The Diagnostics object shows the outbox depth and the MQTT state that the real
outbox and MQTT components report (the broker here is unreachable: events wait)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import edge.forward.mqtt
import edge.state.outbox
from actors.oee.events import PiecesCounted
from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server
from tests.integration.opcua_server.conftest import client, make_config, node_of, wait_for


async def test_outbox_depth_and_mqtt_state_reach_the_diagnostics(
    tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    opc_port, dead_broker = free_port_factory(), free_port_factory()
    mqtt = f"""
        [mqtt]
        enabled = true
        host = "127.0.0.1"
        port = {dead_broker}
        """
    config = make_config(tmp_path, opc_port, opcua=mqtt)
    components = [
        edge.forward.streams.component,
        opcua_server.component,
        edge.forward.mqtt.component,
    ]
    async with LineService(config, components=components) as service, client(opc_port) as c:
        service.bus.publish(
            [PiecesCounted("M1", 1.7e9 + i, "total_count", 1, None) for i in range(5)]
        )
        depth = c.get_node(await node_of(c, "L1.Diagnostics.OutboxDepth"))
        connected = c.get_node(await node_of(c, "L1.Diagnostics.MqttConnected"))

        async def waiting() -> bool:
            value = await depth.read_data_value(raise_on_bad_status=False)
            return value.StatusCode.is_good() and value.Value.Value >= 5

        await wait_for(waiting, 10)
        assert await connected.read_value() is False
