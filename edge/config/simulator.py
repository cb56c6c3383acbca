"""``[simulator]``: the built-in simulated line (a Modbus TCP server playing the PLCs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from edge.config.schema import NonEmpty, NonNegative, Port, Positive, between


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    enabled: bool = False
    host: Annotated[str, NonEmpty] = "127.0.0.1"
    port: Annotated[int, Port] = 5020
    seed: int = 1
    time_scale: Annotated[float, Positive] = 1.0
    micro_stops_per_hour: Annotated[float, NonNegative] = 20.0
    faults_per_hour: Annotated[float, NonNegative] = 2.0
    reject_ratio: Annotated[float, between(0, 1)] = 0.02
    counter_start: Annotated[int, NonNegative] = 0
    jitter: Annotated[float, between(0, 1)] = 0.1
