"""Protocol-neutral pieces shared by every PLC source (Modbus, OPC UA)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edge.plc.maps import PlcMap


class SourceState(Enum):
    UNOPENED = "unopened"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class MachineBinding:
    """A machine read through a PLC connection with a plc_map.

    ``address_offset`` is added to every address of the map, so one map serves
    several identical machines behind one PLC; ``unit_id`` is the Modbus device id.
    """

    machine_id: str
    plc_map: PlcMap
    unit_id: int = 1
    address_offset: int = 0
