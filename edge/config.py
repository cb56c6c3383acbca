"""The line config: one TOML file per line, parsed once at start.

:func:`load_config` turns the file into frozen, validated objects or raises one
:class:`~edge.errors.ConfigError` listing *every* problem, each with its key
path and what was expected (``machines[2].ideal_cycle_s: must be > 0, got -1``).
Nothing is started before the whole file is valid.

Unknown keys are errors too (with a "did you mean" hint), because a misspelt
key that is silently ignored is a default nobody chose.

The layout of the file is documented in ``config/demo-line.toml`` and the README.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from actors.oee.params import (
    BreakDef,
    CalendarDef,
    LossBucket,
    MachineParams,
    Reason,
    ReasonCategory,
    ShiftDef,
    StateSource,
)
from actors.quality.params import (
    ALL_RULES,
    DEFAULT_RULES,
    MAX_SUBGROUP_SIZE,
    CharacteristicParams,
    Disposition,
    StationParams,
)
from edge.errors import ConfigError, Problem
from edge.secrets import Secret, resolve_secret

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "demo-line.toml"
BUILTIN_PLC_MAPS = PROJECT_ROOT / "plc_maps"

# Ids end up in OPC UA NodeIds (dot-separated), MQTT topics (slash-separated,
# + and # are wildcards) and Prometheus labels: keep them to a safe alphabet.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_LOG_LEVELS = ("debug", "info", "warning", "error")


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class LineIdentity:
    site: str
    area: str
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ModbusPlcConfig:
    id: str
    host: str
    port: int = 502
    poll_interval_s: float = 1.0
    timeout_s: float = 1.0
    retries: int = 1
    max_gap: int = 8
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    protocol: Literal["modbus"] = "modbus"


@dataclass(frozen=True, slots=True)
class OpcUaPlcConfig:
    id: str
    endpoint: str
    sampling_interval_s: float = 0.5
    publishing_interval_s: float = 0.5
    timeout_s: float = 5.0
    username: str | None = None
    password: Secret | None = None
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    protocol: Literal["opcua"] = "opcua"


PlcConfig = ModbusPlcConfig | OpcUaPlcConfig


@dataclass(frozen=True, slots=True)
class MachineConfig:
    id: str
    name: str
    params: MachineParams
    plc: str | None = None
    plc_map: str | None = None
    unit_id: int = 1
    address_offset: int = 0


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5020
    seed: int = 1
    time_scale: float = 1.0
    micro_stops_per_hour: float = 20.0
    faults_per_hour: float = 2.0
    reject_ratio: float = 0.02
    counter_start: int = 0
    jitter: float = 0.1


@dataclass(frozen=True, slots=True)
class OpcUaUser:
    """A user of the line's OPC UA server; ``roles`` decide which methods it may call."""

    name: str
    password: Secret
    roles: frozenset[str]


# Roles of OPC UA users, and the methods each may call unless [opcua.method_roles]
# says otherwise (only supervisor and above complete an order).
OPCUA_ROLES = ("operator", "supervisor", "quality", "maintenance", "admin")
OPCUA_SECURITY_POLICIES = ("Basic256Sha256", "Aes256Sha256RsaPss")
OPCUA_SECURITY_MODES = ("Sign", "SignAndEncrypt")
OPCUA_DEFAULT_METHOD_ROLES: dict[str, frozenset[str]] = {
    "StartOrder": frozenset({"operator", "supervisor", "admin"}),
    "HoldOrder": frozenset({"operator", "supervisor", "admin"}),
    "ResumeOrder": frozenset({"operator", "supervisor", "admin"}),
    "CompleteOrder": frozenset({"supervisor", "admin"}),
    "SetStopReason": frozenset({"operator", "supervisor", "maintenance", "admin"}),
    "AcknowledgeAlarm": frozenset({"operator", "supervisor", "quality", "maintenance", "admin"}),
}


@dataclass(frozen=True, slots=True)
class OpcUaServerConfig:
    enabled: bool = True
    endpoint: str = "opc.tcp://0.0.0.0:4840/edge/"
    namespace_uri: str = ""  # empty: urn:<site>:<area>:<line>
    security_none: bool = True  # offer the unsecured endpoint (SecurityPolicy None)
    security_policies: tuple[str, ...] = OPCUA_SECURITY_POLICIES
    security_modes: tuple[str, ...] = OPCUA_SECURITY_MODES
    anonymous: bool = True  # anonymous sessions (read-only: never a method)
    pki_dir: Path | None = None  # None: <state_dir>/opcua-pki
    status_interval_s: float = 1.0  # KPI refresh from the machine actors
    users: tuple[OpcUaUser, ...] = ()
    method_roles: tuple[tuple[str, frozenset[str]], ...] = tuple(OPCUA_DEFAULT_METHOD_ROLES.items())

    def roles_for(self, method: str) -> frozenset[str]:
        """The roles allowed to call ``method`` (none for an unknown method)."""
        return dict(self.method_roles).get(method, frozenset())


# What the MES may send on <prefix>/<site>/<line>/cmd/<name> (edge.mqtt.commands).
MQTT_COMMANDS = (
    "download_order",
    "release_order",
    "start_order",
    "hold_order",
    "resume_order",
    "complete_order",
    "abort_order",
    "set_stop_reason",
    "acknowledge_alarm",
    "rebirth",
)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "edge"
    client_id: str = ""  # empty: edge-<site>-<line>; also the edge_id in every batch
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    tls_ca_file: Path | None = None  # None: the system's trust store
    tls_cert_file: Path | None = None  # client certificate (mutual TLS)
    tls_key_file: Path | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5, else 3.1.1
    keepalive_s: int = 30
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    publish_timeout_s: float = 10.0
    batch_max_events: int = 500
    batch_max_delay_s: float = 0.2
    batch_max_bytes: int = 1_048_576
    inflight_batches: int = 4
    # True: a batch the broker acknowledges with "no matching subscribers" (MQTT 5) is
    # kept and sent again, so events wait for the central store instead of being dropped
    # (mosquitto 2.0 forgets shared subscriptions when it restarts).
    require_subscriber: bool = False
    kpi_interval_s: float = 10.0  # 0: no retained KPI snapshots
    commands_enabled: bool = True
    command_max_bytes: int = 65_536
    command_users: tuple[str, ...] = ()  # empty: any user
    command_token: Secret | None = None  # set: every command must carry it
    allowed_commands: tuple[str, ...] = MQTT_COMMANDS


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    # 9712: not taken by the well-known exporters (node 9100, OTel 9464, ...).
    port: int = 9712


@dataclass(frozen=True, slots=True)
class QmibConfig:
    enabled: bool = False
    base_url: str = ""
    token: Secret | None = None  # bearer token; or username + password (basic)
    username: str | None = None
    password: Secret | None = None
    timeout_s: float = 10.0
    retries: int = 3  # further attempts after a 5xx or connection error; never after a 4xx
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    verify_tls: bool = True
    ca_file: Path | None = None
    templates_path: str = "/batch-templates/{template_id}"
    equipment_path: str = "/equipment/{equipment_id}"
    batch_records_path: str = "/batch-records"
    event_ack_path: str = "/events/{event_id}/ack"
    alarm_ack_path: str = "/alarms/{alarm_id}/ack"
    # Event types delivered to QMIB through the outbox (edge.wire type names).
    deliver_events: tuple[str, ...] = ("BatchRecordCompleted",)


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: Path  # default <state_dir>/outbox.db
    # FULL survives power loss; NORMAL survives a process crash only.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    max_bytes: int = 1_073_741_824  # stored event bytes; then the policy applies
    policy: Literal["drop-oldest", "reject-new"] = "drop-oldest"
    max_pending_events: int = 200_000  # in memory, waiting for the next group commit
    report_interval_s: float = 10.0  # at most one policy report event per interval


@dataclass(frozen=True, slots=True)
class StorageConfig:
    state_dir: Path
    # FULL survives power loss; NORMAL survives a process crash only.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"


@dataclass(frozen=True, slots=True)
class QualityStationConfig:
    """A quality station (``[[quality_stations]]``); ``params`` is what its core runs on.

    With ``plc``/``plc_map`` the order runtime polls the station's PLC itself
    (a connection of its own, even to a PLC that machines use too).
    """

    id: str
    name: str
    params: StationParams
    plc: str | None = None
    plc_map: str | None = None
    unit_id: int = 1
    address_offset: int = 0


@dataclass(frozen=True, slots=True)
class OrdersConfig:
    """``[orders]``: defaults of the order runtime."""

    # series: good = the last machine's good, rejects summed; parallel: everything summed.
    quantity_rule: Literal["series", "parallel"] = "series"
    retain_finished: int = 100  # finished orders kept for queries (info and batch record)
    max_finished_scans: int = 10_000  # scan ids of finished orders kept to spot resends


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
    qmib: QmibConfig = field(default_factory=QmibConfig)
    storage: StorageConfig = field(default_factory=lambda: StorageConfig(Path("var")))
    outbox: OutboxConfig = field(default_factory=lambda: OutboxConfig(Path("var/outbox.db")))
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    plc_map_dirs: tuple[Path, ...] = (BUILTIN_PLC_MAPS,)
    quality_stations: tuple[QualityStationConfig, ...] = ()
    orders: OrdersConfig = field(default_factory=OrdersConfig)

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


# --------------------------------------------------------------------------- reading

T = TypeVar("T")
_MISSING: Any = object()


class _Reader:
    """Walks the parsed TOML, collecting problems instead of stopping at the first."""

    def __init__(self, base_dir: Path) -> None:
        self.problems: list[Problem] = []
        self.base_dir = base_dir

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def table(self, parent: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.problem(_join(path, key), f"must be a table, got {_kind(value)}")
            return {}
        return value

    def array_of_tables(
        self, parent: Mapping[str, Any], key: str, path: str
    ) -> list[dict[str, Any]]:
        value = parent.get(key, [])
        where = _join(path, key)
        if not isinstance(value, list):
            self.problem(where, f"must be an array of tables ([[{where}]]), got {_kind(value)}")
            return []
        good: list[dict[str, Any]] = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                good.append(item)
            else:
                self.problem(f"{where}[{index}]", f"must be a table, got {_kind(item)}")
                good.append({})
        return good

    def known_keys(self, table: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                allowed_list = ", ".join(sorted(allowed))
                self.problem(
                    _join(path, key), f"unknown key{suffix}; expected one of: {allowed_list}"
                )

    def get(
        self,
        table: Mapping[str, Any],
        key: str,
        path: str,
        kind: type[T] | tuple[type, ...],
        *,
        default: Any = _MISSING,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        where = _join(path, key)
        if key not in table:
            if default is _MISSING:
                self.problem(where, f"missing required key (expected {_kind_name(kind)})")
                return None
            return default
        value = table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # TOML integers are acceptable where a float is expected; booleans are never numbers.
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            self.problem(where, f"must be {_kind_name(kind)}, got a boolean")
            return None
        if not isinstance(value, kinds):
            self.problem(where, f"must be {_kind_name(kind)}, got {_kind(value)} {value!r}")
            return None
        if check is not None:
            message = check(value)
            if message:
                self.problem(where, message)
                return None
        return value

    def secret(self, table: Mapping[str, Any], key: str, path: str) -> Secret | None:
        if key not in table:
            return None
        try:
            return resolve_secret(table[key], base_dir=self.base_dir)
        except ValueError as exc:
            # The message names the source (variable, file), never the value.
            self.problem(_join(path, key), str(exc))
            return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {value:g}"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value:g}"


def _between(low: float, high: float) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        return (
            None if low <= value <= high else f"must be between {low:g} and {high:g}, got {value:g}"
        )

    return check


def _one_of(*choices: object) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value in choices:
            return None
        listed = ", ".join(repr(c) for c in choices)
        return f"must be one of {listed}, got {value!r}"

    return check


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"must be a TCP port 0..65535, got {value}"


def _identifier(value: str) -> str | None:
    if _ID_RE.match(value):
        return None
    return (
        f"must be 1-64 characters of letters, digits, '_' or '-', starting with a letter "
        f"or digit (it becomes part of OPC UA NodeIds and MQTT topics), got {value!r}"
    )


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _parse_hhmm(reader: _Reader, text: str, path: str) -> time | None:
    match = _HHMM_RE.match(text)
    if not match:
        reader.problem(path, f'must be a local time "HH:MM" (00:00-23:59), got {text!r}')
        return None
    return time(int(match.group(1)), int(match.group(2)))


# --------------------------------------------------------------------------- sections


def _read_line(reader: _Reader, doc: Mapping[str, Any]) -> LineIdentity:
    if "line" not in doc:
        reader.problem("line", "missing required table [line] with site, area and id")
        return LineIdentity("", "", "", "")
    table = reader.table(doc, "line", "")
    reader.known_keys(table, "line", {"site", "area", "id", "name"})
    site = reader.get(table, "site", "line", str, check=_identifier)
    area = reader.get(table, "area", "line", str, check=_identifier)
    line_id = reader.get(table, "id", "line", str, check=_identifier)
    name = reader.get(table, "name", "line", str, default=line_id or "")
    return LineIdentity(site or "", area or "", line_id or "", name or "")


def _read_calendar(reader: _Reader, doc: Mapping[str, Any]) -> CalendarDef:
    if "calendar" not in doc:
        reader.problem("calendar", "missing required table [calendar] with timezone and shifts")
        return CalendarDef("UTC", ())
    table = reader.table(doc, "calendar", "")
    reader.known_keys(table, "calendar", {"timezone", "shifts"})
    zone = reader.get(table, "timezone", "calendar", str, check=_non_empty)
    shifts: list[ShiftDef] = []
    for index, raw in enumerate(reader.array_of_tables(table, "shifts", "calendar")):
        path = f"calendar.shifts[{index}]"
        reader.known_keys(raw, path, {"name", "start", "end", "days", "breaks"})
        name = reader.get(raw, "name", path, str, check=_non_empty)
        start_text = reader.get(raw, "start", path, str)
        end_text = reader.get(raw, "end", path, str)
        start = _parse_hhmm(reader, start_text, f"{path}.start") if start_text else None
        end = _parse_hhmm(reader, end_text, f"{path}.end") if end_text else None
        days: set[int] = set()
        for d_index, day in enumerate(reader.get(raw, "days", path, list, default=[]) or []):
            number = _WEEKDAYS.get(day.lower()) if isinstance(day, str) else None
            if number is None:
                reader.problem(
                    f"{path}.days[{d_index}]",
                    f"must be one of {', '.join(_WEEKDAYS)}, got {day!r}",
                )
            else:
                days.add(number)
        breaks: list[BreakDef] = []
        for b_index, text in enumerate(reader.get(raw, "breaks", path, list, default=[]) or []):
            bpath = f"{path}.breaks[{b_index}]"
            parts = text.split("-") if isinstance(text, str) else []
            if len(parts) != 2:
                reader.problem(bpath, f'must be "HH:MM-HH:MM" (local time), got {text!r}')
                continue
            b_start = _parse_hhmm(reader, parts[0].strip(), bpath)
            b_end = _parse_hhmm(reader, parts[1].strip(), bpath)
            if b_start is not None and b_end is not None:
                breaks.append(BreakDef(b_start, b_end))
        if name and start is not None and end is not None:
            shifts.append(ShiftDef(name, start, end, frozenset(days), tuple(breaks)))
    definition = CalendarDef(zone or "UTC", tuple(shifts))
    if zone:
        from actors.oee.calendar import validate_calendar  # noqa: PLC0415 - keeps import cheap

        reader.problems.extend(validate_calendar(definition, "calendar"))
    return definition


_MACHINE_KEYS = {
    "id",
    "name",
    "ideal_cycle_s",
    "micro_stop_s",
    "stop_after_s",
    "micro_stop_bucket",
    "counter_bits",
    "state_source",
    "reasons",
    "plc",
    "plc_map",
    "unit_id",
    "address_offset",
}


def _read_reasons(reader: _Reader, raw: Mapping[str, Any], path: str) -> tuple[Reason, ...]:
    reasons: list[Reason] = []
    codes: set[int] = set()
    names: set[str] = set()
    for index, item in enumerate(reader.array_of_tables(raw, "reasons", path)):
        rpath = f"{path}.reasons[{index}]"
        reader.known_keys(item, rpath, {"code", "name", "category"})
        code = reader.get(item, "code", rpath, int, default=None, check=_non_negative)
        name = reader.get(item, "name", rpath, str, check=_non_empty)
        category = reader.get(
            item, "category", rpath, str, default="unplanned", check=_one_of("unplanned", "planned")
        )
        if code is not None:
            if code in codes:
                reader.problem(f"{rpath}.code", f"code {code} is listed twice")
            codes.add(code)
        if name:
            if name in names:
                reader.problem(f"{rpath}.name", f"reason {name!r} is listed twice")
            names.add(name)
            reasons.append(Reason(name, code, ReasonCategory(category or "unplanned")))
    return tuple(reasons)


def _read_machines(
    reader: _Reader,
    doc: Mapping[str, Any],
    plcs: Mapping[str, PlcConfig],
    map_dirs: tuple[Path, ...],
) -> tuple[MachineConfig, ...]:
    raw_machines = reader.array_of_tables(doc, "machines", "")
    if not raw_machines and "machines" not in doc:
        reader.problem("machines", "missing: a line needs at least one [[machines]] entry")
    machines: list[MachineConfig] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_machines):
        path = f"machines[{index}]"
        reader.known_keys(raw, path, _MACHINE_KEYS)
        machine_id = reader.get(raw, "id", path, str, check=_identifier)
        if machine_id is not None:
            if machine_id in seen:
                reader.problem(
                    f"{path}.id",
                    f"duplicate machine id {machine_id!r} (also machines[{seen[machine_id]}])",
                )
            seen.setdefault(machine_id, index)
        ideal = reader.get(raw, "ideal_cycle_s", path, float, check=_positive)
        micro = reader.get(raw, "micro_stop_s", path, float, default=120.0, check=_non_negative)
        stop_after = reader.get(raw, "stop_after_s", path, float, default=None, check=_positive)
        bucket = reader.get(
            raw,
            "micro_stop_bucket",
            path,
            str,
            default="performance",
            check=_one_of("performance", "availability"),
        )
        explicit_bits = reader.get(
            raw, "counter_bits", path, int, default=None, check=_one_of(16, 32, 64)
        )
        source = reader.get(
            raw,
            "state_source",
            path,
            str,
            default=None,
            check=_one_of("running", "state", "counts"),
        )
        reasons = _read_reasons(reader, raw, path)
        plc = reader.get(raw, "plc", path, str, default=None)
        plc_map = reader.get(raw, "plc_map", path, str, default=None, check=_non_empty)
        unit_id = reader.get(raw, "unit_id", path, int, default=1, check=_between(0, 255))
        offset = reader.get(raw, "address_offset", path, int, default=0, check=_between(0, 65535))
        if plc is not None and plc not in plcs:
            known = ", ".join(sorted(plcs)) or "none defined"
            reader.problem(f"{path}.plc", f"unknown plc {plc!r} (known: {known})")
        if plc is not None and plc_map is None:
            reader.problem(f"{path}.plc_map", "missing: a machine read from a plc needs a plc_map")
        map_bits = None
        if plc_map is not None:
            map_bits = _check_plc_map(reader, f"{path}.plc_map", plc_map, map_dirs, plcs.get(plc))
        if explicit_bits is not None and map_bits is not None and explicit_bits != map_bits:
            reader.problem(
                f"{path}.counter_bits",
                f"is {explicit_bits} but plc_map {plc_map!r} maps {map_bits}-bit counters",
            )
        bits = explicit_bits or map_bits or 32
        if machine_id is None or ideal is None:
            continue
        params = MachineParams(
            machine_id=machine_id,
            ideal_cycle_s=ideal,
            micro_stop_s=micro if micro is not None else 120.0,
            stop_after_s=stop_after,
            micro_stop_bucket=LossBucket(bucket or "performance"),
            counter_bits=bits,
            reasons=reasons,
            state_source=StateSource(source) if source else None,
        )
        machines.append(
            MachineConfig(
                id=machine_id,
                name=reader.get(raw, "name", path, str, default=machine_id) or machine_id,
                params=params,
                plc=plc,
                plc_map=plc_map,
                unit_id=unit_id if unit_id is not None else 1,
                address_offset=offset or 0,
            )
        )
    return tuple(machines)


def _check_plc_map(
    reader: _Reader,
    path: str,
    name: str,
    map_dirs: tuple[Path, ...],
    plc: PlcConfig | None,
) -> int | None:
    """Load and validate a machine's plc_map; returns its counter width."""
    from edge.plc.maps import find_plc_map, load_plc_map  # noqa: PLC0415 - avoids a cycle

    if find_plc_map(name, map_dirs) is None:
        dirs = ", ".join(str(d) for d in map_dirs)
        reader.problem(path, f"unknown plc_map {name!r} (searched {dirs})")
        return None
    try:
        plc_map = load_plc_map(name, map_dirs)
    except ConfigError as exc:
        for problem in exc.problems:
            where = f"{path} ({exc.source})" + (f" {problem.path}" if problem.path else "")
            reader.problem(where, problem.message)
        return None
    if plc is not None and plc_map.protocol.value != plc.protocol:
        reader.problem(
            path,
            f"plc_map {name!r} is for {plc_map.protocol.value} but plc {plc.id!r} "
            f"speaks {plc.protocol}",
        )
    return plc_map.counter_bits


_BACKOFF_KEYS = {"backoff_initial_s", "backoff_max_s"}


def _read_plcs(reader: _Reader, doc: Mapping[str, Any]) -> tuple[PlcConfig, ...]:
    plcs: list[PlcConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(reader.array_of_tables(doc, "plcs", "")):
        path = f"plcs[{index}]"
        plc_id = reader.get(raw, "id", path, str, check=_identifier)
        if plc_id is not None:
            if plc_id in seen:
                reader.problem(f"{path}.id", f"duplicate plc id {plc_id!r}")
            seen.add(plc_id)
        protocol = reader.get(raw, "protocol", path, str, check=_one_of("modbus", "opcua"))
        backoff_initial = reader.get(
            raw, "backoff_initial_s", path, float, default=1.0, check=_positive
        )
        backoff_max = reader.get(raw, "backoff_max_s", path, float, default=30.0, check=_positive)
        if protocol == "modbus":
            reader.known_keys(
                raw,
                path,
                {
                    "id",
                    "protocol",
                    "host",
                    "port",
                    "poll_interval_s",
                    "timeout_s",
                    "retries",
                    "max_gap",
                }
                | _BACKOFF_KEYS,
            )
            host = reader.get(raw, "host", path, str, check=_non_empty)
            port = reader.get(raw, "port", path, int, default=502, check=_port)
            interval = reader.get(raw, "poll_interval_s", path, float, default=1.0, check=_positive)
            timeout = reader.get(raw, "timeout_s", path, float, default=1.0, check=_positive)
            retries = reader.get(raw, "retries", path, int, default=1, check=_between(0, 10))
            max_gap = reader.get(raw, "max_gap", path, int, default=8, check=_between(0, 124))
            if None not in (plc_id, host, port, interval, timeout, retries, max_gap):
                plcs.append(
                    ModbusPlcConfig(
                        plc_id,
                        host,
                        port,
                        interval,
                        timeout,
                        retries,
                        max_gap,
                        backoff_initial or 1.0,
                        backoff_max or 30.0,
                    )
                )
        elif protocol == "opcua":
            reader.known_keys(
                raw,
                path,
                {
                    "id",
                    "protocol",
                    "endpoint",
                    "sampling_interval_s",
                    "publishing_interval_s",
                    "timeout_s",
                    "username",
                    "password",
                }
                | _BACKOFF_KEYS,
            )
            endpoint = reader.get(raw, "endpoint", path, str, check=_opc_endpoint)
            sampling = reader.get(
                raw, "sampling_interval_s", path, float, default=0.5, check=_positive
            )
            publishing = reader.get(
                raw, "publishing_interval_s", path, float, default=0.5, check=_positive
            )
            timeout = reader.get(raw, "timeout_s", path, float, default=5.0, check=_positive)
            username = reader.get(raw, "username", path, str, default=None)
            password = reader.secret(raw, "password", path)
            if None not in (plc_id, endpoint, sampling, publishing, timeout):
                plcs.append(
                    OpcUaPlcConfig(
                        plc_id,
                        endpoint,
                        sampling,
                        publishing,
                        timeout,
                        username,
                        password,
                        backoff_initial or 1.0,
                        backoff_max or 30.0,
                    )
                )
        if backoff_initial and backoff_max and backoff_max < backoff_initial:
            reader.problem(f"{path}.backoff_max_s", "must be >= backoff_initial_s")
    return tuple(plcs)


def _opc_endpoint(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        return f'must be an OPC UA endpoint "opc.tcp://host:port/path", got {value!r}'
    try:
        _ = parts.port
    except ValueError:
        return f"has an invalid port: {value!r}"
    return None


def _read_simulator(reader: _Reader, doc: Mapping[str, Any]) -> SimulatorConfig:
    table = reader.table(doc, "simulator", "")
    path = "simulator"
    defaults = SimulatorConfig()
    reader.known_keys(table, path, set(SimulatorConfig.__dataclass_fields__))
    return SimulatorConfig(
        enabled=reader.get(table, "enabled", path, bool, default=False),
        host=reader.get(table, "host", path, str, default=defaults.host, check=_non_empty)
        or defaults.host,
        port=_or(
            reader.get(table, "port", path, int, default=defaults.port, check=_port), defaults.port
        ),
        seed=_or(reader.get(table, "seed", path, int, default=defaults.seed), defaults.seed),
        time_scale=_or(
            reader.get(table, "time_scale", path, float, default=1.0, check=_positive), 1.0
        ),
        micro_stops_per_hour=_or(
            reader.get(
                table,
                "micro_stops_per_hour",
                path,
                float,
                default=defaults.micro_stops_per_hour,
                check=_non_negative,
            ),
            defaults.micro_stops_per_hour,
        ),
        faults_per_hour=_or(
            reader.get(
                table,
                "faults_per_hour",
                path,
                float,
                default=defaults.faults_per_hour,
                check=_non_negative,
            ),
            defaults.faults_per_hour,
        ),
        reject_ratio=_or(
            reader.get(
                table,
                "reject_ratio",
                path,
                float,
                default=defaults.reject_ratio,
                check=_between(0, 1),
            ),
            defaults.reject_ratio,
        ),
        counter_start=_or(
            reader.get(table, "counter_start", path, int, default=0, check=_non_negative), 0
        ),
        jitter=_or(
            reader.get(table, "jitter", path, float, default=defaults.jitter, check=_between(0, 1)),
            defaults.jitter,
        ),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


_OPCUA_KEYS = {
    "enabled",
    "endpoint",
    "namespace_uri",
    "security_none",
    "security_policies",
    "security_modes",
    "anonymous",
    "pki_dir",
    "status_interval_s",
    "users",
    "method_roles",
}


def _read_opcua(reader: _Reader, doc: Mapping[str, Any]) -> OpcUaServerConfig:
    table = reader.table(doc, "opcua", "")
    path = "opcua"
    reader.known_keys(table, path, _OPCUA_KEYS)
    defaults = OpcUaServerConfig()
    enabled = _or(reader.get(table, "enabled", path, bool, default=True), True)
    security_none = _or(reader.get(table, "security_none", path, bool, default=True), True)
    policies = _string_choices(
        reader, table, "security_policies", path, OPCUA_SECURITY_POLICIES, allow_empty=True
    )
    modes = _string_choices(reader, table, "security_modes", path, OPCUA_SECURITY_MODES)
    if enabled and not security_none and policies == ():
        reader.problem(
            f"{path}.security_policies",
            "no endpoint left: list a policy or set security_none = true",
        )
    anonymous = _or(reader.get(table, "anonymous", path, bool, default=True), True)
    raw_pki = reader.get(table, "pki_dir", path, str, default=None, check=_non_empty)
    pki_dir: Path | None = None
    if raw_pki is not None:
        pki_dir = Path(raw_pki).expanduser()
        if not pki_dir.is_absolute():
            pki_dir = reader.base_dir / pki_dir
    users = _read_opcua_users(reader, table, path)
    if enabled and not anonymous and not users:
        reader.problem(
            f"{path}.anonymous",
            "nobody could log in: add [[opcua.users]] or set anonymous = true",
        )
    return OpcUaServerConfig(
        enabled=enabled,
        endpoint=_or(
            reader.get(
                table, "endpoint", path, str, default=defaults.endpoint, check=_opc_endpoint
            ),
            defaults.endpoint,
        ),
        namespace_uri=_or(reader.get(table, "namespace_uri", path, str, default=""), ""),
        security_none=security_none,
        security_policies=policies if policies is not None else defaults.security_policies,
        security_modes=modes or defaults.security_modes,
        anonymous=anonymous,
        pki_dir=pki_dir,
        status_interval_s=_or(
            reader.get(
                table, "status_interval_s", path, float, default=1.0, check=_between(0.05, 60)
            ),
            1.0,
        ),
        users=users,
        method_roles=_read_method_roles(reader, table, path),
    )


def _string_choices(
    reader: _Reader,
    table: Mapping[str, Any],
    key: str,
    path: str,
    choices: tuple[str, ...],
    *,
    allow_empty: bool = False,
) -> tuple[str, ...] | None:
    """An array of distinct strings out of ``choices``; None when absent or invalid."""
    raw = reader.get(table, key, path, list, default=None)
    if raw is None:
        return None
    where = _join(path, key)
    picked: list[str] = []
    for index, item in enumerate(raw):
        if item not in choices:
            listed = ", ".join(repr(c) for c in choices)
            reader.problem(f"{where}[{index}]", f"must be one of {listed}, got {item!r}")
        elif item in picked:
            reader.problem(f"{where}[{index}]", f"listed twice: {item!r}")
        else:
            picked.append(item)
    if not raw and not allow_empty:
        reader.problem(where, "must list at least one of " + ", ".join(choices))
    return tuple(picked) if len(picked) == len(raw) else None


def _roles(reader: _Reader, raw: object, where: str) -> frozenset[str] | None:
    if not isinstance(raw, list):
        reader.problem(where, f"must be an array of roles, got {_kind(raw)}")
        return None
    roles: set[str] = set()
    for index, role in enumerate(raw):
        if role not in OPCUA_ROLES:
            hint = difflib.get_close_matches(str(role), OPCUA_ROLES, n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            reader.problem(
                f"{where}[{index}]",
                f"unknown role {role!r}{suffix}; roles are: {', '.join(OPCUA_ROLES)}",
            )
        else:
            roles.add(role)
    return frozenset(roles) if len(roles) == len(set(map(str, raw))) else None


def _read_opcua_users(
    reader: _Reader, table: Mapping[str, Any], path: str
) -> tuple[OpcUaUser, ...]:
    users: list[OpcUaUser] = []
    seen: set[str] = set()
    for index, raw in enumerate(reader.array_of_tables(table, "users", path)):
        where = f"{path}.users[{index}]"
        reader.known_keys(raw, where, {"name", "password", "roles"})
        name = reader.get(raw, "name", where, str, check=_non_empty)
        if name is not None:
            if name in seen:
                reader.problem(f"{where}.name", f"duplicate user {name!r}")
            seen.add(name)
        if "password" not in raw:
            reader.problem(f"{where}.password", "missing required key (a secret)")
        password = reader.secret(raw, "password", where)
        if password is not None and not password.reveal():
            reader.problem(f"{where}.password", "must not be empty")
            password = None
        roles = None
        if "roles" not in raw:
            reader.problem(f"{where}.roles", "missing required key (an array of roles)")
        else:
            roles = _roles(reader, raw["roles"], f"{where}.roles")
            if roles is not None and not roles:
                reader.problem(f"{where}.roles", "must name at least one role")
                roles = None
        if name is not None and password is not None and roles:
            users.append(OpcUaUser(name, password, roles))
    return tuple(users)


def _read_method_roles(
    reader: _Reader, table: Mapping[str, Any], path: str
) -> tuple[tuple[str, frozenset[str]], ...]:
    where = _join(path, "method_roles")
    raw = reader.table(table, "method_roles", path)
    reader.known_keys(raw, where, set(OPCUA_DEFAULT_METHOD_ROLES))
    merged = dict(OPCUA_DEFAULT_METHOD_ROLES)
    for method, value in raw.items():
        if method in merged:
            roles = _roles(reader, value, f"{where}.{method}")
            if roles is not None:
                merged[method] = roles
    return tuple(merged.items())


def _read_mqtt(reader: _Reader, doc: Mapping[str, Any]) -> MqttConfig:
    table = reader.table(doc, "mqtt", "")
    path = "mqtt"
    reader.known_keys(table, path, set(MqttConfig.__dataclass_fields__))
    d = MqttConfig()

    def num(key: str, kind: type, default: Any, check: Callable[[Any], str | None]) -> Any:
        return _or(reader.get(table, key, path, kind, default=default, check=check), default)

    prefix = reader.get(table, "prefix", path, str, default=d.prefix, check=_topic_segment)
    client_id = _or(reader.get(table, "client_id", path, str, default="", check=_client_id), "")
    backoff_initial = num("backoff_initial_s", float, d.backoff_initial_s, _positive)
    backoff_max = num("backoff_max_s", float, d.backoff_max_s, _positive)
    if backoff_max < backoff_initial:
        reader.problem(f"{path}.backoff_max_s", "must be >= backoff_initial_s")
    tls = _or(reader.get(table, "tls", path, bool, default=False), False)
    tls_files = {
        key: _file_path(reader, table, key, path)
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file")
    }
    if (tls_files["tls_cert_file"] is None) != (tls_files["tls_key_file"] is None):
        reader.problem(f"{path}.tls_key_file", "tls_cert_file and tls_key_file go together")
    if not tls and any(tls_files.values()):
        reader.problem(f"{path}.tls", "must be true when TLS files are given")
    users = _string_list(reader, table, "command_users", path, check=_non_empty)
    allowed = _string_list(
        reader, table, "allowed_commands", path, check=_one_of(*MQTT_COMMANDS), default=None
    )
    return MqttConfig(
        enabled=_or(reader.get(table, "enabled", path, bool, default=False), False),
        host=_or(reader.get(table, "host", path, str, default=d.host, check=_non_empty), d.host),
        port=_or(reader.get(table, "port", path, int, default=d.port, check=_port), d.port),
        prefix=_or(prefix, d.prefix),
        client_id=client_id,
        username=reader.get(table, "username", path, str, default=None),
        password=reader.secret(table, "password", path),
        tls=tls,
        tls_ca_file=tls_files["tls_ca_file"],
        tls_cert_file=tls_files["tls_cert_file"],
        tls_key_file=tls_files["tls_key_file"],
        protocol=num("protocol", str, d.protocol, _one_of("auto", "5", "3.1.1")),
        keepalive_s=num("keepalive_s", int, d.keepalive_s, _between(5, 3600)),
        backoff_initial_s=backoff_initial,
        backoff_max_s=backoff_max,
        publish_timeout_s=num("publish_timeout_s", float, d.publish_timeout_s, _positive),
        batch_max_events=num("batch_max_events", int, d.batch_max_events, _between(1, 100_000)),
        batch_max_delay_s=num("batch_max_delay_s", float, d.batch_max_delay_s, _positive),
        batch_max_bytes=num(
            "batch_max_bytes", int, d.batch_max_bytes, _between(1024, 256 * 1024 * 1024)
        ),
        inflight_batches=num("inflight_batches", int, d.inflight_batches, _between(1, 64)),
        require_subscriber=_or(
            reader.get(table, "require_subscriber", path, bool, default=False), False
        ),
        kpi_interval_s=num("kpi_interval_s", float, d.kpi_interval_s, _non_negative),
        commands_enabled=_or(reader.get(table, "commands_enabled", path, bool, default=True), True),
        command_max_bytes=num(
            "command_max_bytes", int, d.command_max_bytes, _between(256, 16 * 1024 * 1024)
        ),
        command_users=tuple(users or ()),
        command_token=reader.secret(table, "command_token", path),
        allowed_commands=MQTT_COMMANDS if allowed is None else tuple(allowed),
    )


def _client_id(value: str) -> str | None:
    # MQTT 3.1.1 brokers must accept 1-23 characters of [0-9a-zA-Z]; most take more,
    # but a '/' or a wildcard would also break the edge_id in topics and logs.
    if value and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", value):
        return f"must be letters, digits, '_', '.' or '-' (at most 128), got {value!r}"
    return None


def _file_path(reader: _Reader, table: Mapping[str, Any], key: str, path: str) -> Path | None:
    raw = reader.get(table, key, path, str, default=None, check=_non_empty)
    if raw is None:
        return None
    file = Path(raw).expanduser()
    if not file.is_absolute():
        file = reader.base_dir / file
    if not file.is_file():
        reader.problem(_join(path, key), f"no such file: {file}")
    return file


def _string_list(
    reader: _Reader,
    table: Mapping[str, Any],
    key: str,
    path: str,
    *,
    check: Callable[[Any], str | None] | None = None,
    default: list[str] | None = None,
) -> list[str] | None:
    if key not in table:
        return default
    raw = reader.get(table, key, path, list)
    if raw is None:
        return default
    good: list[str] = []
    for index, item in enumerate(raw):
        where = f"{_join(path, key)}[{index}]"
        if not isinstance(item, str):
            reader.problem(where, f"must be a string, got {_kind(item)} {item!r}")
            continue
        message = check(item) if check is not None else None
        if message:
            reader.problem(where, message)
            continue
        good.append(item)
    return good


def _topic_segment(value: str) -> str | None:
    if (
        not value
        or any(c in value for c in "+#\x00")
        or value.startswith("/")
        or value.endswith("/")
    ):
        return f"must be a topic prefix without wildcards or leading/trailing '/', got {value!r}"
    return None


def _read_metrics(reader: _Reader, doc: Mapping[str, Any]) -> MetricsConfig:
    table = reader.table(doc, "metrics", "")
    reader.known_keys(table, "metrics", {"enabled", "host", "port"})
    d = MetricsConfig()
    return MetricsConfig(
        enabled=_or(reader.get(table, "enabled", "metrics", bool, default=True), True),
        host=_or(
            reader.get(table, "host", "metrics", str, default=d.host, check=_non_empty), d.host
        ),
        port=_or(reader.get(table, "port", "metrics", int, default=d.port, check=_port), d.port),
    )


_QMIB_PATHS = {
    "templates_path": ("template_id",),
    "equipment_path": ("equipment_id",),
    "batch_records_path": (),
    "event_ack_path": ("event_id",),
    "alarm_ack_path": ("alarm_id",),
}


def _read_qmib(reader: _Reader, doc: Mapping[str, Any]) -> QmibConfig:
    table = reader.table(doc, "qmib", "")
    path = "qmib"
    reader.known_keys(table, path, set(QmibConfig.__dataclass_fields__))
    d = QmibConfig()

    def num(key: str, kind: type, default: Any, check: Callable[[Any], str | None]) -> Any:
        return _or(reader.get(table, key, path, kind, default=default, check=check), default)

    enabled = _or(reader.get(table, "enabled", path, bool, default=False), False)
    base_url = _or(
        reader.get(table, "base_url", path, str, default="", check=_http_url_or_empty), ""
    )
    if enabled and not base_url:
        reader.problem("qmib.base_url", "missing: required when qmib.enabled = true")
    token = reader.secret(table, "token", path)
    username = reader.get(table, "username", path, str, default=None, check=_non_empty)
    password = reader.secret(table, "password", path)
    if token is not None and (username is not None or password is not None):
        reader.problem(
            "qmib.token", "give either token (bearer) or username + password (basic), not both"
        )
    if (username is None) != (password is None):
        reader.problem("qmib.password", "username and password go together (basic auth)")
    backoff_initial = num("backoff_initial_s", float, d.backoff_initial_s, _positive)
    backoff_max = num("backoff_max_s", float, d.backoff_max_s, _positive)
    if backoff_max < backoff_initial:
        reader.problem("qmib.backoff_max_s", "must be >= backoff_initial_s")
    paths = {
        key: num(key, str, getattr(d, key), _url_path(placeholders))
        for key, placeholders in _QMIB_PATHS.items()
    }
    deliver = _string_list(reader, table, "deliver_events", path, check=_event_type_name)
    return QmibConfig(
        enabled=enabled,
        base_url=base_url,
        token=token,
        username=username,
        password=password,
        timeout_s=num("timeout_s", float, d.timeout_s, _positive),
        retries=num("retries", int, d.retries, _between(0, 20)),
        backoff_initial_s=backoff_initial,
        backoff_max_s=backoff_max,
        verify_tls=_or(reader.get(table, "verify_tls", path, bool, default=True), True),
        ca_file=_file_path(reader, table, "ca_file", path),
        templates_path=paths["templates_path"],
        equipment_path=paths["equipment_path"],
        batch_records_path=paths["batch_records_path"],
        event_ack_path=paths["event_ack_path"],
        alarm_ack_path=paths["alarm_ack_path"],
        deliver_events=d.deliver_events if deliver is None else tuple(deliver),
    )


def _url_path(placeholders: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not value.startswith("/"):
            return f"must be a URL path starting with '/', got {value!r}"
        found = re.findall(r"\{([^{}]*)\}", value)
        expected = sorted(placeholders)
        if sorted(found) != expected:
            want = ", ".join("{" + p + "}" for p in expected) or "no placeholder"
            return f"must contain exactly {want}, got {value!r}"
        return None

    return check


def _event_type_name(value: str) -> str | None:
    if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        return None
    return f"must be an event type name like 'BatchRecordCompleted', got {value!r}"


def _http_url_or_empty(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f'must be an http(s) URL like "https://qmib.example/api", got {value!r}'
    return None


def _read_storage(reader: _Reader, doc: Mapping[str, Any], line_id: str) -> StorageConfig:
    table = reader.table(doc, "storage", "")
    reader.known_keys(table, "storage", {"state_dir", "sqlite_synchronous"})
    raw_dir = reader.get(table, "state_dir", "storage", str, default=None, check=_non_empty)
    if raw_dir is not None:
        state_dir = Path(raw_dir).expanduser()
        if not state_dir.is_absolute():
            state_dir = reader.base_dir / state_dir
    elif os.environ.get("STATE_DIRECTORY"):
        # Set by systemd's StateDirectory=; may list several paths separated by ':'.
        state_dir = Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    else:
        state_dir = Path.cwd() / "var" / (line_id or "line")
    sync = reader.get(
        table, "sqlite_synchronous", "storage", str, default="FULL", check=_one_of("FULL", "NORMAL")
    )
    return StorageConfig(state_dir, sync or "FULL")


def _read_outbox(reader: _Reader, doc: Mapping[str, Any], storage: StorageConfig) -> OutboxConfig:
    table = reader.table(doc, "outbox", "")
    path = "outbox"
    reader.known_keys(table, path, set(OutboxConfig.__dataclass_fields__))
    d = OutboxConfig(storage.state_dir / "outbox.db")

    def num(key: str, kind: type, default: Any, check: Callable[[Any], str | None]) -> Any:
        return _or(reader.get(table, key, path, kind, default=default, check=check), default)

    raw_path = reader.get(table, "path", path, str, default=None, check=_non_empty)
    db_path = d.path
    if raw_path is not None:
        db_path = Path(raw_path).expanduser()
        if not db_path.is_absolute():
            db_path = reader.base_dir / db_path
    return OutboxConfig(
        path=db_path,
        synchronous=num("synchronous", str, d.synchronous, _one_of("FULL", "NORMAL")),
        # Below a few KiB a single batch of events would not fit.
        max_bytes=num("max_bytes", int, d.max_bytes, _between(4096, 2**50)),
        policy=num("policy", str, d.policy, _one_of("drop-oldest", "reject-new")),
        max_pending_events=num(
            "max_pending_events", int, d.max_pending_events, _between(1000, 10_000_000)
        ),
        report_interval_s=num("report_interval_s", float, d.report_interval_s, _positive),
    )


def _read_logging(reader: _Reader, doc: Mapping[str, Any]) -> LoggingConfig:
    table = reader.table(doc, "logging", "")
    reader.known_keys(table, "logging", {"level"})
    level = reader.get(table, "level", "logging", str, default="info", check=_one_of(*_LOG_LEVELS))
    return LoggingConfig(level or "info")


_STATION_KEYS = {
    "id",
    "name",
    "machine",
    "feeds_machine_rejects",
    "plc",
    "plc_map",
    "unit_id",
    "address_offset",
    "pass_signal",
    "fail_signal",
    "counter_bits",
    "plc_disposition",
    "reason_codes",
    "characteristics",
}
_CHARACTERISTIC_KEYS = {
    "name",
    "signal",
    "unit",
    "lsl",
    "usl",
    "subgroup_size",
    "baseline_mean",
    "baseline_range",
    "warmup",
    "rules",
}
_UNSIGNED_BITS = {"uint16": 16, "uint32": 32, "uint64": 64}


def _machine_counts_rejects(machine: MachineConfig, map_dirs: tuple[Path, ...]) -> tuple[bool, str]:
    """Whether the machine's PLC counts rejects (good_count or reject_count mapped)."""
    from edge.plc.maps import find_plc_map, load_plc_map  # noqa: PLC0415 - avoids a cycle

    if machine.plc_map is None or find_plc_map(machine.plc_map, map_dirs) is None:
        return False, ""
    try:
        roles = load_plc_map(machine.plc_map, map_dirs).roles
    except ConfigError:
        return False, ""  # reported under the machine already
    mapped = sorted(roles & {"good_count", "reject_count"})
    return bool(mapped), " and ".join(mapped)


def _read_characteristics(
    reader: _Reader, raw: Mapping[str, Any], path: str
) -> tuple[CharacteristicParams, ...]:
    result: list[CharacteristicParams] = []
    names: set[str] = set()
    for index, item in enumerate(reader.array_of_tables(raw, "characteristics", path)):
        cpath = f"{path}.characteristics[{index}]"
        reader.known_keys(item, cpath, _CHARACTERISTIC_KEYS)
        name = reader.get(item, "name", cpath, str, check=_identifier)
        if name is not None:
            if name in names:
                reader.problem(f"{cpath}.name", f"characteristic {name!r} is listed twice")
            names.add(name)
        signal = reader.get(item, "signal", cpath, str, default=None, check=_non_empty)
        unit = reader.get(item, "unit", cpath, str, default="") or ""
        lsl = reader.get(item, "lsl", cpath, float, default=None)
        usl = reader.get(item, "usl", cpath, float, default=None)
        if lsl is not None and usl is not None and not lsl < usl:
            reader.problem(f"{cpath}.usl", f"must be > lsl ({lsl:g}), got {usl:g}")
        size = reader.get(
            item, "subgroup_size", cpath, int, default=1, check=_between(1, MAX_SUBGROUP_SIZE)
        )
        mean = reader.get(item, "baseline_mean", cpath, float, default=None)
        spread = reader.get(item, "baseline_range", cpath, float, default=None, check=_positive)
        if ("baseline_mean" in item) != ("baseline_range" in item):
            missing = "baseline_range" if "baseline_mean" in item else "baseline_mean"
            reader.problem(
                f"{cpath}.{missing}",
                "missing: a baseline needs both baseline_mean and baseline_range "
                "(the average moving range for subgroup_size 1, else the average range)",
            )
        warmup = reader.get(item, "warmup", cpath, int, default=25, check=_between(2, 10_000))
        rules_raw = reader.get(item, "rules", cpath, list, default=list(DEFAULT_RULES))
        rules: list[int] = []
        for r_index, rule in enumerate(rules_raw or []):
            if isinstance(rule, bool) or not isinstance(rule, int) or rule not in ALL_RULES:
                reader.problem(
                    f"{cpath}.rules[{r_index}]", f"must be a run rule number 1..8, got {rule!r}"
                )
            else:
                rules.append(rule)
        if rules_raw is not None and not rules_raw:
            reader.problem(f"{cpath}.rules", "must list at least one run rule (1..8)")
        if name is None or size is None or warmup is None:
            continue
        result.append(
            CharacteristicParams(
                name=name,
                signal=signal,
                unit=unit,
                lsl=lsl,
                usl=usl,
                subgroup_size=size,
                baseline_mean=mean,
                baseline_range=spread,
                warmup=warmup,
                rules=tuple(sorted(set(rules))) or DEFAULT_RULES,
            )
        )
    return tuple(result)


def _read_quality_stations(
    reader: _Reader,
    doc: Mapping[str, Any],
    machines: tuple[MachineConfig, ...],
    plcs: Mapping[str, PlcConfig],
    map_dirs: tuple[Path, ...],
) -> tuple[QualityStationConfig, ...]:
    """``[[quality_stations]]``, with the double-counting rule (docs/orders-and-quality.md).

    ``feeds_machine_rejects`` defaults to true only for a machine whose PLC
    counts no rejects (neither ``good_count`` nor ``reject_count`` mapped);
    true for a machine that does is refused: every failure would count twice.
    """
    from edge.plc.maps import find_plc_map, load_plc_map  # noqa: PLC0415 - avoids a cycle

    by_id = {m.id: m for m in machines}
    stations: list[QualityStationConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(reader.array_of_tables(doc, "quality_stations", "")):
        path = f"quality_stations[{index}]"
        reader.known_keys(raw, path, _STATION_KEYS)
        station_id = reader.get(raw, "id", path, str, check=_identifier)
        if station_id is not None:
            if station_id in seen:
                reader.problem(f"{path}.id", f"duplicate quality station id {station_id!r}")
            if station_id in by_id:
                reader.problem(
                    f"{path}.id", f"{station_id!r} is a machine id; a station needs its own id"
                )
            seen.add(station_id)
        machine_id = reader.get(raw, "machine", path, str)
        machine = by_id.get(machine_id) if machine_id is not None else None
        if machine_id is not None and machine is None:
            known = ", ".join(sorted(by_id)) or "none defined"
            reader.problem(f"{path}.machine", f"unknown machine {machine_id!r} (known: {known})")
        feeds = reader.get(raw, "feeds_machine_rejects", path, bool, default=None)
        counts_rejects, mapped = (
            _machine_counts_rejects(machine, map_dirs) if machine else (False, "")
        )
        if feeds is True and counts_rejects and machine is not None:
            reader.problem(
                f"{path}.feeds_machine_rejects",
                f"machine {machine.id!r} counts rejects itself (its plc_map "
                f"{machine.plc_map!r} maps {mapped}): adding the station's failures "
                "would count them twice; set it false (the default for this machine)",
            )
        plc_id = reader.get(raw, "plc", path, str, default=None)
        plc = plcs.get(plc_id) if plc_id is not None else None
        if plc_id is not None and plc is None:
            known = ", ".join(sorted(plcs)) or "none defined"
            reader.problem(f"{path}.plc", f"unknown plc {plc_id!r} (known: {known})")
        plc_map_name = reader.get(raw, "plc_map", path, str, default=None, check=_non_empty)
        if plc_id is not None and plc_map_name is None:
            reader.problem(f"{path}.plc_map", "missing: a station read from a plc needs a plc_map")
        if plc_map_name is not None and plc_id is None:
            reader.problem(f"{path}.plc", "missing: a plc_map is read from a plc")
        unit_id = reader.get(raw, "unit_id", path, int, default=1, check=_between(0, 255))
        offset = reader.get(raw, "address_offset", path, int, default=0, check=_between(0, 65535))
        pass_signal = reader.get(raw, "pass_signal", path, str, default=None, check=_non_empty)
        fail_signal = reader.get(raw, "fail_signal", path, str, default=None, check=_non_empty)
        characteristics = _read_characteristics(reader, raw, path)
        plc_map = None
        if plc_map_name is not None and find_plc_map(plc_map_name, map_dirs) is None:
            dirs = ", ".join(str(d) for d in map_dirs)
            reader.problem(f"{path}.plc_map", f"unknown plc_map {plc_map_name!r} (searched {dirs})")
        elif plc_map_name is not None:
            try:
                plc_map = load_plc_map(plc_map_name, map_dirs)
            except ConfigError as exc:
                for problem in exc.problems:
                    where = f"{path}.plc_map ({exc.source})" + (
                        f" {problem.path}" if problem.path else ""
                    )
                    reader.problem(where, problem.message)
            if plc_map is not None and plc is not None and plc_map.protocol.value != plc.protocol:
                reader.problem(
                    f"{path}.plc_map",
                    f"plc_map {plc_map_name!r} is for {plc_map.protocol.value} but plc "
                    f"{plc.id!r} speaks {plc.protocol}",
                )
        # Without a plc of its own, the station reads its signals from its machine's
        # samples (the machine's plc_map, through the service's sample bus).
        source_map, source_name = plc_map, plc_map_name
        if plc_map_name is None and machine is not None and machine.plc_map is not None:
            source_name = machine.plc_map
            if find_plc_map(machine.plc_map, map_dirs) is not None:
                try:
                    source_map = load_plc_map(machine.plc_map, map_dirs)
                except ConfigError:
                    source_map = None  # reported under the machine
        signal_bits: int | None = None
        wanted = [("pass_signal", pass_signal), ("fail_signal", fail_signal)] + [
            (f"characteristics[{i}].signal", c.signal)
            for i, c in enumerate(characteristics)
            if c.signal is not None
        ]
        for key, signal in wanted:
            if signal is None:
                continue
            if source_name is None:
                reader.problem(
                    f"{path}.{key}",
                    "a PLC signal needs a plc_map: the station's own (plc, plc_map) or its "
                    "machine's",
                )
                continue
            if source_map is None:
                continue
            counter = key in ("pass_signal", "fail_signal")
            definition = source_map.get(signal)
            # A counter may be one of the machine's counter roles (an inspection result
            # the machine PLC counts); a measurement is a process value.
            if definition is None or not (
                definition.role is None or (counter and definition.is_counter)
            ):
                names = ", ".join(s.name for s in source_map.process_values) or "none"
                reader.problem(
                    f"{path}.{key}",
                    f"plc_map {source_name!r} has no process value {signal!r} "
                    f"(process values: {names})",
                )
                continue
            if counter:
                bits = _UNSIGNED_BITS.get(definition.data_type.value)
                if bits is None or definition.is_scaled:
                    reader.problem(
                        f"{path}.{key}",
                        f"{signal!r} must be an unscaled uint16/uint32/uint64 piece counter, "
                        f"got {definition.data_type.value}",
                    )
                elif signal_bits is not None and bits != signal_bits:
                    reader.problem(f"{path}.{key}", "pass and fail counters differ in width")
                else:
                    signal_bits = bits
        explicit_bits = reader.get(
            raw, "counter_bits", path, int, default=None, check=_one_of(16, 32, 64)
        )
        if explicit_bits is not None and signal_bits is not None and explicit_bits != signal_bits:
            reader.problem(
                f"{path}.counter_bits",
                f"is {explicit_bits} but the plc_map's pass/fail counters are {signal_bits}-bit",
            )
        disposition = reader.get(
            raw,
            "plc_disposition",
            path,
            str,
            default="pending",
            check=_one_of(*(d.value for d in Disposition)),
        )
        codes: list[str] = []
        for c_index, code in enumerate(
            reader.get(raw, "reason_codes", path, list, default=[]) or []
        ):
            if not isinstance(code, str) or not code.strip():
                reader.problem(
                    f"{path}.reason_codes[{c_index}]", f"must be a non-empty string, got {code!r}"
                )
            elif code in codes:
                reader.problem(f"{path}.reason_codes[{c_index}]", f"{code!r} is listed twice")
            else:
                codes.append(code)
        if station_id is None or machine is None:
            continue
        params = StationParams(
            station_id=station_id,
            machine_id=machine.id,
            feeds_machine_rejects=feeds if feeds is not None else not counts_rejects,
            name=reader.get(raw, "name", path, str, default=station_id) or station_id,
            pass_signal=pass_signal,
            fail_signal=fail_signal,
            counter_bits=explicit_bits or signal_bits or 32,
            plc_disposition=Disposition(disposition or "pending"),
            reason_codes=tuple(codes),
            characteristics=characteristics,
        )
        stations.append(
            QualityStationConfig(
                id=station_id,
                name=params.name,
                params=params,
                plc=plc_id,
                plc_map=plc_map_name,
                unit_id=unit_id if unit_id is not None else 1,
                address_offset=offset or 0,
            )
        )
    return tuple(stations)


def _read_orders(reader: _Reader, doc: Mapping[str, Any]) -> OrdersConfig:
    table = reader.table(doc, "orders", "")
    path = "orders"
    reader.known_keys(table, path, set(OrdersConfig.__dataclass_fields__))
    d = OrdersConfig()
    rule = reader.get(
        table,
        "quantity_rule",
        path,
        str,
        default=d.quantity_rule,
        check=_one_of("series", "parallel"),
    )
    return OrdersConfig(
        quantity_rule="parallel" if rule == "parallel" else "series",
        retain_finished=_or(
            reader.get(
                table,
                "retain_finished",
                path,
                int,
                default=d.retain_finished,
                check=_between(0, 100_000),
            ),
            d.retain_finished,
        ),
        max_finished_scans=_or(
            reader.get(
                table,
                "max_finished_scans",
                path,
                int,
                default=d.max_finished_scans,
                check=_between(0, 10_000_000),
            ),
            d.max_finished_scans,
        ),
    )


_TOP_LEVEL = {
    "line",
    "calendar",
    "machines",
    "plcs",
    "simulator",
    "opcua",
    "mqtt",
    "metrics",
    "qmib",
    "storage",
    "outbox",
    "logging",
    "plc_map_dirs",
    "quality_stations",
    "orders",
}


def parse_config(doc: Mapping[str, Any], source: str, base_dir: Path) -> LineConfig:
    """Validate an already-parsed TOML document; raises ConfigError with every problem."""
    reader = _Reader(base_dir)
    reader.known_keys(doc, "", _TOP_LEVEL)
    line = _read_line(reader, doc)
    calendar = _read_calendar(reader, doc)
    extra_dirs = reader.get(doc, "plc_map_dirs", "", list, default=[]) or []
    map_dirs: list[Path] = []
    for index, item in enumerate(extra_dirs):
        if isinstance(item, str) and item:
            directory = Path(item) if Path(item).is_absolute() else base_dir / item
            map_dirs.append(directory)
        else:
            reader.problem(f"plc_map_dirs[{index}]", f"must be a directory path, got {item!r}")
    map_dirs.append(base_dir / "plc_maps")
    map_dirs.append(BUILTIN_PLC_MAPS)
    plcs = _read_plcs(reader, doc)
    machines = _read_machines(reader, doc, {p.id: p for p in plcs}, tuple(map_dirs))
    storage = _read_storage(reader, doc, line.id)
    config = LineConfig(
        source_path=Path(source),
        line=line,
        calendar=calendar,
        machines=machines,
        plcs=plcs,
        simulator=_read_simulator(reader, doc),
        opcua=_read_opcua(reader, doc),
        mqtt=_read_mqtt(reader, doc),
        metrics=_read_metrics(reader, doc),
        qmib=_read_qmib(reader, doc),
        storage=storage,
        outbox=_read_outbox(reader, doc, storage),
        logging=_read_logging(reader, doc),
        plc_map_dirs=tuple(dict.fromkeys(map_dirs)),
        quality_stations=_read_quality_stations(
            reader, doc, machines, {p.id: p for p in plcs}, tuple(map_dirs)
        ),
        orders=_read_orders(reader, doc),
    )
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return config


def load_config(path: str | Path) -> LineConfig:
    """Read and validate a line config file; raises ConfigError naming every problem."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ConfigError(str(file), [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), [Problem("", f"not UTF-8 text: {exc.reason}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), [Problem("", f"invalid TOML: {exc}")]) from exc
    return parse_config(doc, str(file), file.resolve().parent)
