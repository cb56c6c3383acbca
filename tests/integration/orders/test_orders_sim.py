"""Orders on the simulated line (a real pymodbus server): pieces attributed across an
order change equal the simulator's ground truth; two quality stations, one reading the
machine's own samples and one reading the PLC through its own map (over the line's one
connection to that PLC), count the same inspections; an auto-complete order finishes
at its target by itself."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

from actors.machine import GetStatus
from actors.orders.events import BatchRecordCompleted, OrderProgress
from edge.commands import OrderSpec
from edge.config import LineConfig, SimulatorConfig, load_config
from edge.orders import OrdersRuntime, component
from edge.service import LineService
from edge.simulator import SimTruth, SimulatedLine, machine_specs

POLL_S = 0.05
MES = {"source": "mqtt", "user": "mes"}

# The inspection station's own map of the simulated machine's registers
# (generic-modbus: good_count at 12, reject_count at 14, temperature at input 0).
STATION_MAP = """
protocol = "modbus"
[[signals]]
name = "pass_count"
area = "holding_register"
address = 12
type = "uint32"
[[signals]]
name = "fail_count"
area = "holding_register"
address = 14
type = "uint32"
[[signals]]
name = "temperature"
area = "input_register"
address = 0
type = "int16"
scale = 0.1
"""


def make_config(tmp_path: Path, port: int) -> LineConfig:
    (tmp_path / "plc_maps").mkdir()
    (tmp_path / "plc_maps" / "aoi-sim.toml").write_text(STATION_MAP, encoding="utf-8")
    text = f"""
    [line]
    site = "T"
    area = "a"
    id = "L1"

    [calendar]
    timezone = "UTC"
    [[calendar.shifts]]
    name = "All"
    start = "00:00"
    end = "00:00"

    [[plcs]]
    id = "sim"
    protocol = "modbus"
    host = "127.0.0.1"
    port = {port}
    poll_interval_s = {POLL_S}
    timeout_s = 0.5
    backoff_initial_s = 0.05
    backoff_max_s = 0.2

    [[machines]]
    id = "M1"
    ideal_cycle_s = 1.0
    max_rate_factor = 50.0  # the simulator runs 20 x faster than event time
    plc = "sim"
    plc_map = "generic-modbus"

    # Reads M1's own samples: its good/reject counters are the inspection results.
    [[quality_stations]]
    id = "QM"
    machine = "M1"
    pass_signal = "good_count"
    fail_signal = "reject_count"
    [[quality_stations.characteristics]]
    name = "pressure"
    signal = "pressure"
    lsl = 0.0
    usl = 400.0
    warmup = 2

    # Polls the PLC itself through its own map.
    [[quality_stations]]
    id = "QP"
    machine = "M1"
    plc = "sim"
    plc_map = "aoi-sim"
    pass_signal = "pass_count"
    fail_signal = "fail_count"

    [simulator]
    port = {port}
    seed = 11
    time_scale = 20.0
    micro_stops_per_hour = 30
    faults_per_hour = 2
    reject_ratio = 0.1

    [opcua]
    enabled = false
    [metrics]
    enabled = false
    [storage]
    state_dir = "state"
    """
    path = tmp_path / "line.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path)


def sim_config(config: LineConfig) -> SimulatorConfig:
    fields = {
        name: getattr(config.simulator, name) for name in config.simulator.__dataclass_fields__
    }
    return SimulatorConfig(**{**fields, "enabled": True})


async def settle(service: LineService) -> None:
    """Several polls with the simulator paused: the engine and the stations saw the last values."""
    await asyncio.sleep(10 * POLL_S)
    await service.machine_ref("M1").ask(GetStatus(time.time()))


async def first_readings(service: LineService) -> None:
    deadline = time.monotonic() + 10
    while not (await service.machine_ref("M1").ask(GetStatus(time.time()))).counters:
        assert time.monotonic() < deadline, "no first counter reading"
        await asyncio.sleep(0.05)
    await settle(service)  # the stations' first readings (their baselines) too


def delta(after: SimTruth, before: SimTruth) -> tuple[int, int]:
    return after.good - before.good, after.reject - before.reject


async def test_orders_on_the_simulated_line_match_its_ground_truth(
    tmp_path: Path, free_port: int
) -> None:
    config = make_config(tmp_path, free_port)
    events: list[Any] = []
    async with SimulatedLine(sim_config(config), machine_specs(config)) as sim:
        sim.pause()
        async with LineService(config, components=[component]) as service:
            service.bus.subscribe("test", events.extend)
            rt = service.commands
            assert isinstance(rt, OrdersRuntime)
            # QP's points are read over the one connection M1 is polled through
            (source,) = service.sources
            assert source.plc_id == "sim" and source.binding_ids == ("M1", "QP")
            await first_readings(service)
            truth = [sim.ground_truth("M1")]
            for n, order in enumerate(("WO1", "WO2")):
                await rt.download_order(OrderSpec(order, "P", 10_000, ("M1",)), **MES)
                await rt.release_order(order, **MES)
                await rt.start_order(order, **MES)
                sim.resume()
                await asyncio.sleep(1.5 - 0.5 * n)
                sim.pause()
                await settle(service)
                truth.append(sim.ground_truth("M1"))
                await rt.complete_order(order, **MES)

    records = {e.order_id: e.record for e in events if isinstance(e, BatchRecordCompleted)}
    for n, order in enumerate(("WO1", "WO2")):
        good, reject = delta(truth[n + 1], truth[n])
        assert good > 10, f"{order}: too few pieces to prove anything"
        record = records[order]
        assert (record.good_quantity, record.reject_quantity) == (good, reject), order
        by_station = {q["station_id"]: q for q in record.quality}
        for station in ("QM", "QP"):
            q = by_station[station]
            assert (q["passed"], q["failed"], q["pending"]) == (good, reject, reject), station
    # Measurements reached the station reading the machine's samples.
    assert {q["station_id"]: q for q in records["WO1"].quality}["QM"]["characteristics"][
        "pressure"
    ]["n"] >= 1
    assert any(isinstance(e, OrderProgress) and e.order_id == "WO1" for e in events)


async def test_auto_complete_finishes_the_order_at_its_target(
    tmp_path: Path, free_port: int
) -> None:
    config = make_config(tmp_path, free_port)
    events: list[Any] = []
    async with SimulatedLine(sim_config(config), machine_specs(config)) as sim:
        sim.pause()
        async with LineService(config, components=[component]) as service:
            service.bus.subscribe("test", events.extend)
            rt = service.commands
            assert isinstance(rt, OrdersRuntime)
            await first_readings(service)
            spec = OrderSpec("WO1", "P", 15, ("M1",), auto_complete=True, produced_lot_id="OUT")
            await rt.download_order(spec, **MES)
            await rt.release_order("WO1", **MES)
            await rt.start_order("WO1", **MES)
            sim.resume()
            deadline = time.monotonic() + 20
            while rt.batch_record("WO1") is None:
                assert time.monotonic() < deadline, "the order did not complete by itself"
                await asyncio.sleep(0.05)
            sim.pause()
            info = await rt.order_info("WO1")

    record = rt.batch_record("WO1")
    assert record is not None
    assert (info.status, record.status, record.reason) == (
        "completed",
        "completed",
        "target reached",
    )
    # Pieces already counted when the edge took the order off the machine belong to it.
    assert record.good_quantity >= 15
    # ...a few polls' worth at most (20 pieces/s here; generous for a loaded machine).
    assert record.good_quantity < 15 + 40
    assert (record.history[-1]["source"], record.history[-1]["user"]) == ("auto", "edge")
    (completed,) = [e for e in events if isinstance(e, BatchRecordCompleted)]
    assert completed.record == record
