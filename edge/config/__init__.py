"""The line config: one TOML file per line, parsed once at start.

:func:`load_config` turns the file into frozen, validated objects or raises one
:class:`~edge.errors.ConfigError` listing *every* problem, each with its key path and what
was expected (``machines[2].ideal_cycle_s: must be > 0, got -1``). Nothing is started
before the whole file is valid. Unknown keys are errors too (with a "did you mean" hint):
a misspelt key silently ignored is a default nobody chose. Each section's frozen dataclass
is its schema (:mod:`edge.config.schema`); here are ``[line]``, ``[calendar]``,
``[storage]``, ``[logging]`` and ``[orders]``; ``config/example-line.toml`` explains every key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from actors.oee.params import BreakDef, CalendarDef, ShiftDef
from edge.config import equipment, northbound
from edge.config import schema as rule
from edge.config.equipment import (
    MachineConfig,
    ModbusPlcConfig,
    OpcUaPlcConfig,
    PlcConfig,
    QualityStationConfig,
    SimulatorConfig,
)
from edge.config.northbound import (
    MQTT_COMMANDS,
    OPCUA_DEFAULT_METHOD_ROLES,
    MetricsConfig,
    MqttConfig,
    OpcUaServerConfig,
    OpcUaUser,
    OutboxConfig,
    QmibConfig,
    Synchronous,
    WebConfig,
)
from edge.config.schema import Reader, schema_of
from edge.errors import ConfigError, Problem
from edge.secrets import SecretReader

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_PLC_MAPS = PROJECT_ROOT / "plc_maps"
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "demo-line.toml"


@dataclass(frozen=True, slots=True)
class LineIdentity:
    site: Annotated[str, rule.Identifier]
    area: Annotated[str, rule.Identifier]
    id: Annotated[str, rule.Identifier]
    name: str = ""  # empty: the id


_HHMM = r"([01]\d|2[0-3]):([0-5]\d)"
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_DAYS = rule.matches(f"(?i)^({'|'.join(_WEEKDAYS)})$", f"one of {', '.join(_WEEKDAYS)}")
_BREAK = rule.matches(rf"^\s*{_HHMM}\s*-\s*{_HHMM}\s*$", '"HH:MM-HH:MM" (local time)')
LocalTime = Annotated[str, rule.matches(f"^{_HHMM}$", 'a local time "HH:MM" (00:00-23:59)')]


@dataclass(frozen=True, slots=True)
class ShiftEntry:
    name: Annotated[str, rule.NonEmpty]
    start: LocalTime
    end: LocalTime
    days: tuple[Annotated[str, _DAYS], ...] = ()
    breaks: tuple[Annotated[str, _BREAK], ...] = ()


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """``[calendar]``: the time zone and the shift patterns, as the OEE core's CalendarDef."""

    timezone: Annotated[str, rule.NonEmpty]
    shifts: tuple[ShiftEntry, ...] = ()


def _time(text: str) -> time:
    hours, minutes = text.strip().split(":")
    return time(int(hours), int(minutes))


def _shift(shift: ShiftEntry) -> ShiftDef:
    days = frozenset(_WEEKDAYS[day.lower()] for day in shift.days)
    breaks = tuple(BreakDef(*map(_time, text.split("-"))) for text in shift.breaks)
    return ShiftDef(shift.name, _time(shift.start), _time(shift.end), days, breaks)


def read_calendar(reader: Reader, doc: dict[str, Any]) -> CalendarDef:
    from actors.oee.calendar import validate_calendar  # noqa: PLC0415 - keeps import cheap

    entry = reader.build(CalendarEntry, doc.get("calendar", {}), "calendar")
    calendar = CalendarDef(entry.timezone, tuple(map(_shift, entry.shifts))) if entry else None
    reader.problems.extend(validate_calendar(calendar, "calendar") if calendar else ())
    return calendar or CalendarDef("UTC", ())


@dataclass(frozen=True, slots=True)
class StorageConfig:
    state_dir: Path
    sqlite_synchronous: Synchronous = "FULL"


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"  # edge run --log-level wins


@dataclass(frozen=True, slots=True)
class OrdersConfig:
    # series: good = the last machine's good, rejects summed; parallel: everything summed.
    quantity_rule: Literal["series", "parallel"] = "series"
    # finished orders kept for queries (info and batch record)
    retain_finished: Annotated[int, rule.between(0, 100_000)] = 100
    # scan ids of finished orders kept to spot resends
    max_finished_scans: Annotated[int, rule.between(0, 10_000_000)] = 10_000


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
        return {machine.id: machine for machine in self.machines}[machine_id]

    def plc(self, plc_id: str) -> PlcConfig:
        return {plc.id: plc for plc in self.plcs}[plc_id]

    @property
    def namespace_uri(self) -> str:
        ident = self.line
        return self.opcua.namespace_uri or f"urn:{ident.site}:{ident.area}:{ident.id}"


def parse_config(
    doc: dict[str, Any], source: str, base_dir: Path, *, defer_credentials: bool = False
) -> LineConfig:
    """Validate an already-parsed TOML document; raises ConfigError with every problem.
    ``defer_credentials`` (``edge check-config``): without ``$CREDENTIALS_DIRECTORY``,
    systemd credentials are listed in ``unread_secrets`` instead of being problems."""
    secrets = SecretReader.from_environment(base_dir, defer_credentials=defer_credentials)
    reader, sections = Reader(base_dir, secrets), schema_of(LineConfig)
    reader.known_keys(doc, "", set(sections) - {"source_path", "unread_secrets"})
    line = reader.build(LineIdentity, doc.get("line", {}), "line") or LineIdentity("", "", "")
    calendar = read_calendar(reader, doc)
    extra = reader.value(tuple[Path, ...], doc.get("plc_map_dirs", []), "plc_map_dirs")
    extra = extra if isinstance(extra, tuple) else ()
    map_dirs = (*extra, base_dir / "plc_maps", BUILTIN_PLC_MAPS)
    plcs = equipment.read_plcs(reader, doc)
    machines = equipment.read_machines(reader, doc, plcs, map_dirs)
    # systemd's StateDirectory= sets $STATE_DIRECTORY (maybe several paths, ':'-separated).
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    state_dir = state_dir or str(Path.cwd() / "var" / (line.id or "line"))
    storage = reader.section(StorageConfig, doc, "storage", state_dir=state_dir)
    plain = ("simulator", "mqtt", "metrics", "web", "qmib", "logging", "orders")
    plain_sections = {key: reader.section(sections[key][0], doc, key) for key in plain}
    config = LineConfig(
        source_path=Path(source),
        line=dataclasses.replace(line, name=line.name or line.id),
        calendar=calendar,
        machines=tuple(machines.configs.values()),
        plcs=tuple(plc for plc in plcs.values() if plc is not None),
        opcua=northbound.read_opcua(reader, doc),
        storage=storage,
        outbox=reader.section(OutboxConfig, doc, "outbox", path=f"{storage.state_dir}/outbox.db"),
        plc_map_dirs=tuple(dict.fromkeys(map_dirs)),
        quality_stations=equipment.read_stations(reader, doc, machines, plcs, map_dirs),
        unread_secrets=tuple(secrets.deferred),
        **plain_sections,
    )
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return config


def load_config(path: str | Path, *, defer_credentials: bool = False) -> LineConfig:
    """Read and validate a line config file; raises ConfigError naming every problem."""
    file = Path(path)
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(file), [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    except ValueError as exc:  # not UTF-8 text, or not TOML
        raise ConfigError(str(file), [Problem("", f"invalid TOML: {exc}")]) from exc
    return parse_config(doc, str(file), file.resolve().parent, defer_credentials=defer_credentials)
