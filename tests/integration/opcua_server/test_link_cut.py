"""A real PLC link cut (the TCP connection to the simulated PLC cut and restored)
turns a machine's OPC UA values Uncertain with the last usable value, and Good
again after the reconnect; meanwhile the machine's PlcLinkAlarm is active."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from asyncua import ua

from edge.config import LineConfig, SimulatorConfig
from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server
from edge.sources.simulator import SimulatedLine, machine_specs
from tests.integration.line.test_line_service import CuttableLink, _sim_fields
from tests.integration.opcua_server.conftest import client, make_config, node_of, wait_for


async def test_cutting_the_plc_link_makes_the_machine_uncertain_then_good(
    tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    opc_port, sim_port, proxy_port = free_port_factory(), free_port_factory(), free_port_factory()
    config = make_config(tmp_path, opc_port, sim_port=proxy_port)
    sim_config = SimulatorConfig(
        **{**_sim_fields(config.simulator), "enabled": True, "port": sim_port, "time_scale": 20.0}
    )
    link = CuttableLink(proxy_port, sim_port)
    await link.up()
    try:
        await _cut_and_restore(config, sim_config, opc_port, link)
    finally:
        await link.cut()


async def _cut_and_restore(
    config: LineConfig, sim_config: SimulatorConfig, opc_port: int, link: CuttableLink
) -> None:
    async with (
        SimulatedLine(sim_config, machine_specs(config)),
        LineService(config, components=[opcua_server.component]),
        client(opc_port) as c,
    ):
        total = c.get_node(await node_of(c, "L1.M1.OEE.TotalCount"))
        link_up = c.get_node(await node_of(c, "L1.M1.PlcLinkUp"))
        alarm = c.get_node(await node_of(c, "L1.M1.PlcLinkAlarm.ActiveState.Id"))
        retained = c.get_node(await node_of(c, "L1.M1.PlcLinkAlarm.Retain"))

        async def alarm_is(active: bool) -> bool:
            return bool(await alarm.read_value() is active)

        async def status() -> int:
            value: ua.DataValue = await total.read_data_value(raise_on_bad_status=False)
            return int(value.StatusCode.value)

        async def is_status(code: int) -> bool:
            return await status() == code

        await wait_for(lambda: is_status(ua.StatusCodes.Good), 10)
        await link.cut()
        await wait_for(lambda: is_status(ua.StatusCodes.UncertainLastUsableValue), 10)
        last = await total.read_data_value(raise_on_bad_status=False)
        assert last.Value.Value is not None  # the last usable value, not a made-up one
        assert await link_up.read_value() is False
        await wait_for(lambda: alarm_is(True), 10)
        message = await c.get_node(await node_of(c, "L1.M1.PlcLinkAlarm.Message")).read_value()
        assert message.Text == "M1: PLC link lost"
        await asyncio.sleep(0.5)
        await link.up()
        await wait_for(lambda: is_status(ua.StatusCodes.Good), 10)
        assert await link_up.read_value() is True
        await wait_for(lambda: alarm_is(False), 10)
        assert await retained.read_value() is True  # not acknowledged yet
