"""The simulated line: a real Modbus server, deterministic per seed, read exactly by a source."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.messages import Quality
from edge.config import SimulatorConfig
from edge.errors import ConfigError
from edge.sources.plc import MachineBinding, ModbusSource, load_plc_map
from edge.sources.simulator import (
    PACKML_ABORTED,
    PACKML_EXECUTE,
    PACKML_HELD,
    PACKML_SUSPENDED,
    SimMachineSpec,
    SimulatedLine,
)

from .conftest import Collector, plc_config

pytestmark = pytest.mark.integration

MAPS = [Path(__file__).resolve().parents[3] / "plc_maps"]


def specs(map_name: str = "sim-line") -> list[SimMachineSpec]:
    plc_map = load_plc_map(map_name, MAPS)
    return [
        SimMachineSpec("M1", 1.0, plc_map, unit_id=1, address_offset=0),
        SimMachineSpec("M2", 1.5, plc_map, unit_id=1, address_offset=100),
        SimMachineSpec("M3", 0.8, plc_map, unit_id=2, address_offset=0),
    ]


def sim_config(port: int, **overrides: Any) -> SimulatorConfig:
    settings: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "seed": 7,
        "time_scale": 1.0,
        # many stops so a short simulated span shows all states
        "micro_stops_per_hour": 120.0,
        "faults_per_hour": 20.0,
        "reject_ratio": 0.1,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)


async def test_same_seed_same_simulated_sequence(free_port_factory: Any) -> None:
    # Run 1 in real time at 3600x for a moment; run 2 paused and stepped by hand in
    # uneven slices. Both must show the same events, and the same truth at one instant.
    runs = []
    first = SimulatedLine(sim_config(free_port_factory(), time_scale=3600.0), specs())
    async with first:
        await asyncio.sleep(0.4)
        first.pause()
    second = SimulatedLine(sim_config(free_port_factory()), specs())
    async with second:
        second.pause()
        while second.sim_time_s < first.sim_time_s + 500.0:
            second.advance(123.4)
    for line in (first, second):
        runs.append({m: line.events(m) for m in line.machine_ids})
    for machine_id in ("M1", "M2", "M3"):
        horizon = first.ground_truth(machine_id).sim_time_s  # what both runs simulated
        assert horizon == first.sim_time_s > 600.0
        a = [e for e in runs[0][machine_id] if e.sim_time_s <= horizon]
        b = [e for e in runs[1][machine_id] if e.sim_time_s <= horizon]
        assert a == b
        assert len(a) > 3, "stops happened"

    # exact truth at one simulated instant, however the time was sliced
    third = SimulatedLine(sim_config(free_port_factory()), specs())
    fourth = SimulatedLine(sim_config(free_port_factory()), specs())
    third.pause()
    fourth.pause()
    third.advance(1800.0)
    for _ in range(18):
        fourth.advance(100.0)
    for machine_id in ("M1", "M2", "M3"):
        assert third.ground_truth(machine_id) == fourth.ground_truth(machine_id)

    other = SimulatedLine(sim_config(free_port_factory(), seed=8), specs())
    other.pause()
    other.advance(1800.0)
    assert other.events("M1") != third.events("M1")


async def test_ground_truth_equals_what_a_source_reads(
    free_port: int, collector: Collector
) -> None:
    machines = specs()
    config = sim_config(free_port, time_scale=600.0, micro_stops_per_hour=20.0, faults_per_hour=2.0)
    line = SimulatedLine(config, machines)
    source = ModbusSource(
        plc_config(free_port),
        [MachineBinding(m.machine_id, m.plc_map, m.unit_id, m.address_offset) for m in machines],
        collector,
    )
    async with line, source:
        await asyncio.sleep(0.6)
        line.pause()
        # two complete polls after the freeze see the frozen registers
        polls = source.statistics().polls
        await collector.wait_for(lambda: source.statistics().polls >= polls + 2)

    states_seen: set[Any] = set()
    for spec in machines:
        truth = line.ground_truth(spec.machine_id)
        latest = {
            signal: collector.latest(spec.machine_id, signal)
            for signal in (
                "running",
                "state",
                "fault_code",
                "total_count",
                "good_count",
                "reject_count",
            )
        }
        assert all(s is not None and s.quality is Quality.GOOD for s in latest.values())
        values = {k: s.value for k, s in latest.items() if s is not None}
        assert values == {
            "running": truth.running,
            "state": truth.state,
            "fault_code": truth.fault_code,
            "total_count": truth.total_reading,
            "good_count": truth.good_reading,
            "reject_count": truth.reject_reading,
        }
        assert truth.total > 10  # 360 simulated seconds at 0.8..1.5 s a piece, minus stops
        assert truth.total == truth.good + truth.reject
        states_seen |= set(collector.values(spec.machine_id, "state"))
        # every counter reading went up and the first reading was the start
        totals = collector.values(spec.machine_id, "total_count")
        assert totals == sorted(totals)
    assert states_seen <= {PACKML_EXECUTE, PACKML_SUSPENDED, PACKML_HELD, PACKML_ABORTED}
    # the simulator stays inside every process value's type and min..max: nothing BAD
    assert all(getattr(e, "quality", Quality.GOOD) is Quality.GOOD for e in collector.events)


async def test_16_bit_counters_roll_over_near_the_start_value(
    free_port: int, collector: Collector
) -> None:
    machines = specs("packml-modbus")[:1]
    # 65530 + more than 6 pieces wraps past 65535
    config = sim_config(
        free_port, counter_start=65530, micro_stops_per_hour=0.0, faults_per_hour=0.0
    )
    line = SimulatedLine(config, machines)
    source = ModbusSource(
        plc_config(free_port),
        [MachineBinding("M1", machines[0].plc_map)],
        collector,
    )
    async with line, source:
        line.pause()
        await collector.wait_for(lambda: collector.values("M1", "total_count") == [65530])
        line.advance(20.0)  # 1.0..1.1 s cycles -> 18..20 pieces
        truth = line.ground_truth("M1")
        await collector.wait_for(
            lambda: collector.values("M1", "total_count")[-1:] == [truth.total_reading]
        )
    # 65530 + total wraps at 65536: reading = total - 6
    assert truth.total >= 18
    assert truth.total_reading == truth.total - 6
    assert collector.values("M1", "total_count") == [65530, truth.total - 6]


def test_machines_that_collide_in_the_address_space_are_refused() -> None:
    plc_map = load_plc_map("sim-line", MAPS)
    with pytest.raises(ConfigError, match="is also used by machine M1"):
        SimulatedLine(
            sim_config(1),
            [
                SimMachineSpec("M1", 1.0, plc_map, unit_id=1, address_offset=0),
                SimMachineSpec("M2", 1.0, plc_map, unit_id=1, address_offset=20),
            ],
        )
