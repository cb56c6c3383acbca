"""``[line]``: who the line is; and :class:`LineConfig`, the whole validated file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from actors.oee.params import CalendarDef
from edge.config.logs import LoggingConfig
from edge.config.machines import MachineConfig
from edge.config.metrics import MetricsConfig
from edge.config.mqtt import MqttConfig
from edge.config.opcua import OpcUaServerConfig
from edge.config.orders import OrdersConfig
from edge.config.plcs import PlcConfig
from edge.config.qmib import QmibConfig
from edge.config.schema import Identifier, Reader
from edge.config.simulator import SimulatorConfig
from edge.config.stations import QualityStationConfig
from edge.config.storage import OutboxConfig, StorageConfig
from edge.config.web import WebConfig

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_PLC_MAPS = PROJECT_ROOT / "plc_maps"
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "demo-line.toml"


@dataclass(frozen=True, slots=True)
class LineIdentity:
    site: Annotated[str, Identifier]
    area: Annotated[str, Identifier]
    id: Annotated[str, Identifier]
    name: str = ""  # empty: the id


def read_line(reader: Reader, doc: dict[str, Any]) -> LineIdentity:
    if "line" not in doc:
        reader.problem("line", "missing required table [line] with site, area and id")
    line = reader.section(LineIdentity, reader.table(doc, "line"), "line")
    line = line or LineIdentity("", "", "", "")
    return LineIdentity(line.site, line.area, line.id, line.name or line.id)


@dataclass(frozen=True, slots=True)
class LineConfig:
    source_path: Path
    line: LineIdentity
    calendar: CalendarDef
    machines: tuple[MachineConfig, ...]
    plcs: tuple[PlcConfig, ...] = ()
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    opcua: OpcUaServerConfig = field(default_factory=OpcUaServerConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    qmib: QmibConfig = field(default_factory=QmibConfig)
    storage: StorageConfig = field(default_factory=lambda: StorageConfig(Path("var")))
    outbox: OutboxConfig = field(default_factory=lambda: OutboxConfig(Path("var/outbox.db")))
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    plc_map_dirs: tuple[Path, ...] = (BUILTIN_PLC_MAPS,)
    quality_stations: tuple[QualityStationConfig, ...] = ()
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    # Secrets `edge check-config` left unread outside the service (systemd credentials).
    unread_secrets: tuple[str, ...] = ()

    def machine(self, machine_id: str) -> MachineConfig:
        for machine in self.machines:
            if machine.id == machine_id:
                return machine
        raise KeyError(machine_id)

    def plc(self, plc_id: str) -> PlcConfig:
        for plc in self.plcs:
            if plc.id == plc_id:
                return plc
        raise KeyError(plc_id)

    @property
    def namespace_uri(self) -> str:
        ident = self.line
        return self.opcua.namespace_uri or f"urn:{ident.site}:{ident.area}:{ident.id}"
