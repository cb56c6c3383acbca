"""The simulated line: simulated machines behind a real pymodbus TCP server.

Each machine is a :class:`~edge.sources.simulator.model.SimMachine`; its plc_map says
where its signals live. Machines may each have their own unit id (device id),
share one with distinct ``address_offset`` values, or both, exactly as the
line config binds them. A timer advances simulated time (the loop clock x
``time_scale``) every ``tick_s`` and writes what changed into the server's
datastore; process values are refreshed every ``process_every_s``.

Tests can :meth:`SimulatedLine.pause` the clock and :meth:`SimulatedLine.advance`
it by exact simulated seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Self, cast

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer

from edge.config.plc_maps import Area, DataType, ModbusLocation, PlcMap, Protocol, SignalDef
from edge.errors import ConfigError, ConnectorError, Problem
from edge.sources.plc.codec import Raw, encode_registers, with_bit
from edge.sources.simulator.model import SimEvent, SimMachine, SimParams, SimTruth
from edge.sources.simulator.process import ProcessModel

if TYPE_CHECKING:
    from edge.config import SimulatorConfig

__all__ = ["LineState", "SimMachineSpec", "SimulatedLine"]

_log = logging.getLogger("edge.simulator.line")

_FUNCTION_CODE = {
    Area.COIL: 1,
    Area.DISCRETE_INPUT: 2,
    Area.HOLDING_REGISTER: 3,
    Area.INPUT_REGISTER: 4,
}
MAX_UNIT_ID = 247


@dataclass(frozen=True, slots=True)
class SimMachineSpec:
    """A machine to simulate and where the line reads it.

    The counter width comes from the map's counter type (uint16 -> 16 bits).
    """

    machine_id: str
    ideal_cycle_s: float
    plc_map: PlcMap
    unit_id: int = 1
    address_offset: int = 0


class LineState(Enum):
    UNOPENED = "unopened"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(slots=True)
class _Slot:
    """Where one signal of one machine is written, and what was written last."""

    signal: SignalDef
    device: ModbusDeviceContext
    function_code: int
    address: int
    bit: int | None
    last: Raw | None = None

    def write(self, raw: Raw) -> None:
        if raw == self.last and type(raw) is type(self.last):
            return
        self.last = raw
        sig = self.signal
        if sig.data_type is DataType.BOOL:
            if self.bit is None:
                self.device.setValues(self.function_code, self.address, [bool(raw)])
                return
            word = cast(list[int], self.device.getValues(self.function_code, self.address, 1))[0]
            self.device.setValues(
                self.function_code, self.address, [with_bit(word, self.bit, bool(raw))]
            )
            return
        words = encode_registers(raw, sig.data_type, sig.byte_order, sig.word_order)
        self.device.setValues(self.function_code, self.address, words)


@dataclass(slots=True)
class _SimulatedMachine:
    spec: SimMachineSpec
    machine: SimMachine
    process: ProcessModel
    roles: dict[str, _Slot]
    process_slots: list[_Slot]  # in the order of plc_map.process_values
    next_process_at: float = 0.0


def _validate(machines: Sequence[SimMachineSpec]) -> None:
    problems: list[Problem] = []
    seen: set[str] = set()
    # (unit, area, address) -> (machine, bit or None for the whole register)
    used: dict[tuple[int, Area, int], list[tuple[str, int | None]]] = {}
    for spec in machines:
        where = f"machine {spec.machine_id}"
        if spec.machine_id in seen:
            problems.append(Problem(where, "simulated twice"))
        seen.add(spec.machine_id)
        if spec.plc_map.protocol is not Protocol.MODBUS:
            problems.append(
                Problem(f"{where}.plc_map", f"{spec.plc_map.name!r} is not a Modbus map")
            )
            continue
        if not 0 <= spec.unit_id <= MAX_UNIT_ID:
            problems.append(Problem(f"{where}.unit_id", f"must be 0..247, got {spec.unit_id}"))
        if spec.ideal_cycle_s <= 0:
            problems.append(Problem(f"{where}.ideal_cycle_s", "must be > 0"))
        for signal in spec.plc_map.signals:
            loc = signal.location
            if not isinstance(loc, ModbusLocation):
                continue
            start = loc.address + spec.address_offset
            if start < 0 or start + signal.width > 65536:
                problems.append(
                    Problem(f"{where}.address_offset", f"{signal.name} lands outside 0..65535")
                )
                continue
            for address in range(start, start + signal.width):
                users = used.setdefault((spec.unit_id, loc.area, address), [])
                clash = next(
                    (
                        other
                        for other, bit in users
                        if other != spec.machine_id
                        and (bit is None or loc.bit is None or bit == loc.bit)
                    ),
                    None,
                )
                if clash is not None:
                    problems.append(
                        Problem(
                            f"{where}.address_offset",
                            f"unit {spec.unit_id} {loc.area.value} {address} ({signal.name}) "
                            f"is also used by machine {clash}",
                        )
                    )
                    break
                users.append((spec.machine_id, loc.bit))
    if not machines:
        problems.append(Problem("machines", "nothing to simulate"))
    if problems:
        raise ConfigError("simulator", problems)


def _build_devices(machines: Sequence[SimMachineSpec]) -> dict[int, ModbusDeviceContext]:
    """One device context per unit id, each area just large enough."""
    extent: dict[int, dict[Area, int]] = {}
    for spec in machines:
        areas = extent.setdefault(spec.unit_id, dict.fromkeys(Area, 1))
        for signal in spec.plc_map.signals:
            loc = signal.location
            if isinstance(loc, ModbusLocation):
                end = loc.address + spec.address_offset + signal.width
                areas[loc.area] = max(areas[loc.area], end)
    devices: dict[int, ModbusDeviceContext] = {}
    for unit_id, areas in extent.items():

        def block(area: Area, areas: dict[Area, int] = areas) -> ModbusSequentialDataBlock:
            # pymodbus' device context adds 1 to every address: one spare cell.
            fill: list[int] | list[bool] = (
                [False] * (areas[area] + 1) if area.holds_bits else [0] * (areas[area] + 1)
            )
            return ModbusSequentialDataBlock(0, fill)  # type: ignore[no-untyped-call]

        devices[unit_id] = ModbusDeviceContext(
            co=block(Area.COIL),
            di=block(Area.DISCRETE_INPUT),
            hr=block(Area.HOLDING_REGISTER),
            ir=block(Area.INPUT_REGISTER),
        )
    return devices


class SimulatedLine:
    """``async with SimulatedLine(config, machines)`` serves the line on config.host:port."""

    def __init__(
        self,
        config: SimulatorConfig,
        machines: Sequence[SimMachineSpec],
        *,
        tick_s: float = 0.05,
        process_every_s: float = 1.0,
        trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU] | None = None,
    ) -> None:
        _validate(machines)
        if config.time_scale <= 0:
            raise ConfigError("simulator", [Problem("simulator.time_scale", "must be > 0")])
        self._config = config
        self._tick_s = tick_s
        self._process_every_s = process_every_s
        self._trace_pdu = trace_pdu
        self._devices = _build_devices(machines)
        self._machines: dict[str, _SimulatedMachine] = {}
        for spec in machines:
            self._machines[spec.machine_id] = self._simulate(spec)
        self._state = LineState.UNOPENED
        self._server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._sim_base = 0.0
        self._wall_base = 0.0
        self._write_all(force_process=True)

    def _simulate(self, spec: SimMachineSpec) -> _SimulatedMachine:
        config = self._config
        params = SimParams(
            ideal_cycle_s=spec.ideal_cycle_s,
            jitter=config.jitter,
            micro_stops_per_hour=config.micro_stops_per_hour,
            faults_per_hour=config.faults_per_hour,
            reject_ratio=config.reject_ratio,
            counter_start=config.counter_start,
            counter_bits=spec.plc_map.counter_bits or 32,
        )
        # String seeds hash deterministically (unlike hash()), per machine and purpose.
        machine = SimMachine(
            spec.machine_id, params, random.Random(f"{config.seed}:{spec.machine_id}:events")
        )
        process = ProcessModel(
            spec.plc_map.process_values,
            machine,
            random.Random(f"{config.seed}:{spec.machine_id}:process"),
        )
        device = self._devices[spec.unit_id]
        slots: dict[SignalDef, _Slot] = {}
        for signal in spec.plc_map.signals:
            loc = signal.location
            assert isinstance(loc, ModbusLocation)  # _validate checked the protocol
            slots[signal] = _Slot(
                signal=signal,
                device=device,
                function_code=_FUNCTION_CODE[loc.area],
                address=loc.address + spec.address_offset,
                bit=loc.bit,
            )
        return _SimulatedMachine(
            spec=spec,
            machine=machine,
            process=process,
            roles={s.name: slot for s, slot in slots.items() if s.role is not None},
            process_slots=[slots[s] for s in spec.plc_map.process_values],
        )

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> LineState:
        return self._state

    @property
    def address(self) -> tuple[str, int]:
        return self._config.host, self._config.port

    @property
    def machine_ids(self) -> tuple[str, ...]:
        return tuple(self._machines)

    @property
    def sim_time_s(self) -> float:
        """Simulated seconds since the line started."""
        if self._paused or self._state is not LineState.RUNNING:
            return self._sim_base
        now = asyncio.get_running_loop().time()
        return self._sim_base + (now - self._wall_base) * self._config.time_scale

    def ground_truth(self, machine_id: str) -> SimTruth:
        """Exact counts and state as last written to the registers."""
        return self._machines[machine_id].machine.truth()

    def events(self, machine_id: str) -> tuple[SimEvent, ...]:
        """The machine's recent state changes (the last 1000), oldest first."""
        return self._machines[machine_id].machine.events

    # ------------------------------------------------------------------ clock control

    def pause(self) -> None:
        """Freeze simulated time; the registers show the machines at that instant."""
        if not self._paused:
            self._sim_base = self.sim_time_s
            self._paused = True
            self._write_all(force_process=False)

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._wall_base = asyncio.get_running_loop().time()

    def advance(self, sim_seconds: float) -> None:
        """While paused: move simulated time on by exactly ``sim_seconds`` and write."""
        if not self._paused:
            raise RuntimeError("advance() needs a paused line")
        if sim_seconds < 0:
            raise ValueError("simulated time only moves forward")
        self._sim_base += sim_seconds
        self._write_all(force_process=True)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._state is not LineState.UNOPENED:
            raise RuntimeError(f"a SimulatedLine runs once (state {self._state.value})")
        context = ModbusServerContext(devices=self._devices, single=False)  # type: ignore[no-untyped-call]
        server = ModbusTcpServer(context, address=self.address, trace_pdu=self._trace_pdu)
        try:
            await server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            await server.shutdown()  # type: ignore[no-untyped-call]
            self._state = LineState.CLOSED
            host, port = self.address
            raise ConnectorError(f"simulator cannot listen on {host}:{port}: {exc}") from exc
        self._server = server
        self._state = LineState.RUNNING
        self._wall_base = asyncio.get_running_loop().time()
        self._task = asyncio.create_task(self._tick_loop(), name="simulated-line")
        _log.info(
            "simulated line: %d machines on %s:%d (seed %d, time scale %g)",
            len(self._machines),
            *self.address,
            self._config.seed,
            self._config.time_scale,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._paused:
            self._sim_base = self.sim_time_s
        self._state = LineState.CLOSED
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ simulation

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        count = len(self._machines)
        # Stagger process-value refreshes so not every machine updates in one tick.
        for number, sim in enumerate(self._machines.values()):
            sim.next_process_at = loop.time() + self._process_every_s * number / count
        while True:
            await asyncio.sleep(self._tick_s)
            if not self._paused:
                self._write_all(force_process=False)

    def _write_all(self, *, force_process: bool) -> None:
        sim_now = self.sim_time_s
        wall_now = asyncio.get_running_loop().time() if self._task is not None else 0.0
        for sim in self._machines.values():
            changed = sim.machine.advance(sim_now)
            if changed or force_process:
                self._write_roles(sim)
            if force_process or wall_now >= sim.next_process_at:
                sim.next_process_at = max(sim.next_process_at + self._process_every_s, wall_now)
                for slot, raw in zip(sim.process_slots, sim.process.update(sim_now), strict=True):
                    slot.write(raw)

    @staticmethod
    def _write_roles(sim: _SimulatedMachine) -> None:
        truth = sim.machine.truth()
        values: dict[str, Raw] = {
            "running": truth.running,
            "state": truth.state,
            "fault_code": truth.fault_code,
            "total_count": truth.total_reading,
            "good_count": truth.good_reading,
            "reject_count": truth.reject_reading,
        }
        for role, slot in sim.roles.items():
            slot.write(values[role])
