"""A simulated production line behind a real Modbus TCP server (demo, tests, benchmark).

Public surface::

    SimulatedLine(config: SimulatorConfig, machines: Sequence[SimMachineSpec])
        async with; .ground_truth(machine_id) -> SimTruth; .events(machine_id);
        .pause() / .resume() / .advance(sim_seconds)
    SimMachineSpec(machine_id, ideal_cycle_s, plc_map, unit_id=1, address_offset=0)
    machine_specs(line: LineConfig) -> tuple[SimMachineSpec, ...]
    run_simulator(line: LineConfig, paused=False) -> None
        runs until cancelled (``edge simulate``); SIGUSR1 holds simulated time
        (the registers keep their values, the server keeps answering), SIGUSR2
        lets it run again; ``paused`` starts it held

What is deterministic for a seed: each machine's sequence of events in
simulated time (pieces, rejects, micro-stops, faults, their instants,
durations and codes) — see :mod:`edge.simulator.model`. What a poll sees
depends on when it polls; process-value noise depends on update timing.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from edge.config import LineConfig, ModbusPlcConfig
from edge.errors import ConfigError, Problem
from edge.plc.maps import Protocol, load_plc_map
from edge.simulator.line import LineState, SimMachineSpec, SimulatedLine
from edge.simulator.model import (
    FAULT_CODES,
    PACKML_ABORTED,
    PACKML_EXECUTE,
    PACKML_HELD,
    PACKML_SUSPENDED,
    SimEvent,
    SimTruth,
)

__all__ = [
    "FAULT_CODES",
    "PACKML_ABORTED",
    "PACKML_EXECUTE",
    "PACKML_HELD",
    "PACKML_SUSPENDED",
    "LineState",
    "SimEvent",
    "SimMachineSpec",
    "SimTruth",
    "SimulatedLine",
    "machine_specs",
    "run_simulator",
]

_log = logging.getLogger(__name__)


def machine_specs(line: LineConfig) -> tuple[SimMachineSpec, ...]:
    """Every machine the line reads over Modbus, as the simulator plays it.

    The simulator serves all of them on ``line.simulator.host:port``: point the
    line's Modbus PLCs at that address. Raises ConfigError for a bad plc_map.
    """
    modbus_plcs = {plc.id for plc in line.plcs if isinstance(plc, ModbusPlcConfig)}
    specs: list[SimMachineSpec] = []
    for machine in line.machines:
        if machine.plc not in modbus_plcs or machine.plc_map is None:
            continue
        plc_map = load_plc_map(machine.plc_map, line.plc_map_dirs)
        if plc_map.protocol is not Protocol.MODBUS:
            continue
        specs.append(
            SimMachineSpec(
                machine_id=machine.id,
                ideal_cycle_s=machine.params.ideal_cycle_s,
                plc_map=plc_map,
                unit_id=machine.unit_id,
                address_offset=machine.address_offset,
            )
        )
    return tuple(specs)


async def run_simulator(line: LineConfig, *, paused: bool = False) -> None:
    """Serve the line's simulated machines until cancelled.

    SIGUSR1 holds simulated time and SIGUSR2 releases it (a line held still, e.g. so
    a test can read exact counters from outside); ``paused`` starts it held, so
    the counters read ``counter_start`` until SIGUSR2.
    """
    specs = machine_specs(line)
    if not specs:
        raise ConfigError(
            str(line.source_path),
            [Problem("machines", "no machine is read over Modbus: nothing to simulate")],
        )
    async with SimulatedLine(line.simulator, specs) as sim:
        if paused:
            sim.pause()

        def hold(run: bool) -> None:
            if run:
                sim.resume()
            else:
                sim.pause()
            _log.info("simulated time %s at %.3f s", "runs" if run else "held", sim.sim_time_s)

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, hold, False)
        loop.add_signal_handler(signal.SIGUSR2, hold, True)
        try:
            await asyncio.Event().wait()
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)
            loop.remove_signal_handler(signal.SIGUSR2)
