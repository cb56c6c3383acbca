"""The line config: one TOML file per line, read once at start into frozen objects.

:func:`load_config` raises one ConfigError listing *every* problem with its key path
(``machines[2].ideal_cycle_s: must be > 0, got -1``), unknown keys too ("did you mean").
Each section's frozen dataclass is its schema (:mod:`edge.config.schema`): the plant floor
in :mod:`edge.config.plant`; here the line, what it serves and where its events go.
``config/example-line.toml`` explains every key."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from actors.oee.params import BreakDef, CalendarDef, ShiftDef
from edge.config import plant
from edge.config import schema as rule
from edge.config.plant import MachineConfig, ModbusPlcConfig, OpcUaPlcConfig, QualityStationConfig
from edge.config.schema import Reader, schema_of
from edge.errors import ConfigError, Problem
from edge.secrets import Secret, SecretReader

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


def _shift(shift: ShiftEntry) -> ShiftDef:
    hhmm = time.fromisoformat
    days = frozenset(_WEEKDAYS[day.lower()] for day in shift.days)
    breaks = tuple(BreakDef(*(hhmm(t.strip()) for t in b.split("-"))) for b in shift.breaks)
    return ShiftDef(shift.name, hhmm(shift.start), hhmm(shift.end), days, breaks)


def read_calendar(reader: Reader, doc: rule.Doc) -> CalendarDef:
    from actors.oee.calendar import validate_calendar  # noqa: PLC0415 - keeps import cheap

    entry = reader.build(CalendarEntry, doc.get("calendar", {}), "calendar")
    calendar = CalendarDef(entry.timezone, tuple(map(_shift, entry.shifts))) if entry else None
    reader.problems.extend(validate_calendar(calendar, "calendar") if calendar else ())
    return calendar or CalendarDef("UTC", ())


# FULL survives power loss; NORMAL survives a process crash only.
Synchronous = Literal["FULL", "NORMAL"]


@dataclass(frozen=True, slots=True)
class StorageConfig:
    state_dir: Path
    # Derived data a start may rebuild (the OPC UA standard node cache); None: the
    # state directory's cache/ (a config read from a file always has it set).
    cache_dir: Path | None = None

    @property
    def cache(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.state_dir / "cache"

    sqlite_synchronous: Synchronous = "FULL"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The built-in simulated line: a Modbus TCP server playing the PLCs."""

    enabled: bool = False
    host: Annotated[str, rule.NonEmpty] = "127.0.0.1"
    port: Annotated[int, rule.Port] = 5020
    seed: int = 1
    time_scale: Annotated[float, rule.Positive] = 1.0
    micro_stops_per_hour: Annotated[float, rule.NonNegative] = 20.0
    faults_per_hour: Annotated[float, rule.NonNegative] = 2.0
    reject_ratio: Annotated[float, rule.between(0, 1)] = 0.02
    counter_start: Annotated[int, rule.NonNegative] = 0
    jitter: Annotated[float, rule.between(0, 1)] = 0.1


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


Policy = Literal["Basic256Sha256", "Aes256Sha256RsaPss"]
Mode = Literal["Sign", "SignAndEncrypt"]
OPCUA_ROLES = ("operator", "supervisor", "quality", "maintenance", "admin")
CertFile = Annotated[Path, rule.IsFile]
_PAIR = rule.With("tls_cert_file", "tls_cert_file and tls_key_file go together")
KeyFile = Annotated[Path, rule.IsFile, _PAIR]


def _role(role: str) -> str | None:
    suffix, listed = rule.did_you_mean(role, OPCUA_ROLES), ", ".join(OPCUA_ROLES)
    return None if role in OPCUA_ROLES else f"unknown role {role!r}{suffix}; roles are: {listed}"


def _pin(pin: Secret) -> str | None:
    valid = not pin.is_read or re.fullmatch(r"[0-9]{4,12}", pin.reveal())
    return None if valid else "must be 4 to 12 digits"


def _some_endpoint(opcua: OpcUaServerConfig, policies: tuple[str, ...]) -> str | None:
    lost = opcua.enabled and not opcua.security_none and not policies
    return "no endpoint left: list a policy or set security_none = true" if lost else None


def _someone(opcua: OpcUaServerConfig, anonymous: bool) -> str | None:
    nobody = opcua.enabled and not anonymous and not opcua.users
    return "nobody could log in: add [[opcua.users]] or set anonymous = true" if nobody else None


_SOME_ROLE = rule.at_least_one("must name at least one role")
Roles = Annotated[frozenset[Annotated[str, _role]], _SOME_ROLE]
_TWICE, _SOME_ENDPOINT = rule.Unique("listed twice: {0!r}"), rule.After(_some_endpoint)
_ONE_MODE = rule.at_least_one(f"must list at least one of {', '.join(get_args(Mode))}")
_EVERYONE = frozenset({"operator", "supervisor", "admin"})


@dataclass(frozen=True, slots=True)
class MethodRoles:
    """``[opcua.method_roles]``: who may call each method (and give its command on the display)."""

    StartOrder: Roles = _EVERYONE
    HoldOrder: Roles = _EVERYONE
    ResumeOrder: Roles = _EVERYONE
    CompleteOrder: Roles = frozenset({"supervisor", "admin"})
    SetStopReason: Roles = _EVERYONE | {"maintenance"}
    AcknowledgeAlarm: Roles = frozenset(OPCUA_ROLES)


OPCUA_DEFAULT_METHOD_ROLES = {key: getattr(MethodRoles(), key) for key in schema_of(MethodRoles)}


@dataclass(frozen=True, slots=True)
class OpcUaUser:
    """A user of the OPC UA server and the line display (``pin``: for the display only)."""

    name: Annotated[str, rule.NonEmpty]
    password: Annotated[Secret, rule.filled]
    roles: Roles
    pin: Annotated[Secret, _pin] | None = None


@dataclass(frozen=True, slots=True)
class OpcUaServerConfig:
    enabled: bool = True
    endpoint: plant.OpcEndpoint = "opc.tcp://0.0.0.0:4840/edge/"
    namespace_uri: str = ""  # empty: urn:<site>:<area>:<line>
    security_none: bool = True  # offer the unsecured endpoint (SecurityPolicy None)
    security_policies: Annotated[tuple[Policy, ...], _TWICE, _SOME_ENDPOINT] = get_args(Policy)
    security_modes: Annotated[tuple[Mode, ...], _TWICE, _ONE_MODE] = get_args(Mode)
    anonymous: Annotated[bool, rule.After(_someone)] = True  # read-only: never a method
    pki_dir: Path | None = None  # None: <state_dir>/opcua-pki
    status_interval_s: Annotated[float, rule.between(0.05, 60)] = 1.0  # KPI refresh
    users: Annotated[tuple[OpcUaUser, ...], rule.Unique("duplicate user {0!r}", "name")] = ()
    method_roles: tuple[tuple[str, frozenset[str]], ...] = tuple(OPCUA_DEFAULT_METHOD_ROLES.items())

    def roles_for(self, method: str) -> frozenset[str]:
        """The roles allowed to call ``method`` (none for an unknown method)."""
        return dict(self.method_roles).get(method, frozenset())


def read_opcua(reader: Reader, doc: rule.Doc) -> OpcUaServerConfig:
    table = dict(doc["opcua"]) if isinstance(doc.get("opcua"), dict) else doc.get("opcua", {})
    roles = table.pop("method_roles", {}) if isinstance(table, dict) else {}
    # The users log in on the line display too: their secrets are read when either is on.
    web = doc.get("web", {})
    display = not isinstance(web, dict) or web.get("enabled", True) is True
    opcua = reader.section(OpcUaServerConfig, {"opcua": table}, "opcua", secrets=display)
    roles = reader.build(MethodRoles, roles, "opcua.method_roles") or MethodRoles()
    pairs = tuple((method, getattr(roles, method)) for method in OPCUA_DEFAULT_METHOD_ROLES)
    return replace(opcua, method_roles=pairs)


_LONGER = rule.at_least("session_idle_s")


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The line display (pages, JSON API, live feed); the limits apply to [metrics] too."""

    enabled: bool = True
    host: Annotated[str, rule.NonEmpty] = "127.0.0.1"
    port: Annotated[int, rule.Port] = 9713
    tls_cert_file: CertFile | None = None  # both set: HTTPS
    tls_key_file: KeyFile | None = None
    # Per listener, WebSockets included; one more gets a 503.
    max_connections: Annotated[int, rule.between(1, 10_000)] = 64
    max_body_bytes: Annotated[int, rule.between(1024, 16 << 20)] = 65_536  # larger: 413
    # A connection's first request head must arrive within it (408).
    request_timeout_s: Annotated[float, rule.between(0.1, 600)] = 10.0
    idle_timeout_s: Annotated[float, rule.between(0.1, 3600)] = 60.0  # idle keep-alive: closed
    session_idle_s: Annotated[float, rule.between(10, 86_400)] = 900.0  # a login without a request
    # a login in any case
    session_max_s: Annotated[float, rule.between(10, 7 * 86_400), _LONGER] = 43_200.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    host: Annotated[str, rule.NonEmpty] = "127.0.0.1"
    # 9712: not taken by the well-known exporters (node 9100, OTel 9464, ...).
    port: Annotated[int, rule.Port] = 9712


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: Path  # the previous release's outbox, migrated into state.db (<state_dir>/outbox.db)
    synchronous: Synchronous = "FULL"
    # Stored event bytes, then the policy applies; below a few KiB one batch would not fit.
    max_bytes: Annotated[int, rule.between(4096, 2**50)] = 1_073_741_824
    policy: Literal["drop-oldest", "reject-new"] = "drop-oldest"
    # In memory, waiting for the next group commit.
    max_pending_events: Annotated[int, rule.between(1000, 10_000_000)] = 200_000
    report_interval_s: Annotated[float, rule.Positive] = 10.0  # at most one report per interval


# What the MES may send on <prefix>/<site>/<line>/cmd/<name> (edge.forward.mqtt.commands).
_OrderCommand = Literal["download_order", "release_order", "start_order", "hold_order"]
_EndCommand = Literal["resume_order", "complete_order", "abort_order"]
MqttCommand = Literal[_OrderCommand, _EndCommand, "set_stop_reason", "acknowledge_alarm", "rebirth"]
MQTT_COMMANDS: tuple[MqttCommand, ...] = get_args(MqttCommand)
_PREFIX = "a topic prefix without wildcards or leading/trailing '/'"
# MQTT 3.1.1 brokers must accept 1-23 characters of [0-9a-zA-Z]; most take more,
# but a '/' or a wildcard would also break the edge_id in topics and logs.
_CLIENT_CHARS = "letters, digits, '_', '.' or '-' (at most 128)"
_CLIENT_ID = rule.matches(r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", _CLIENT_CHARS)


def _tls_on(mqtt: MqttConfig, tls: bool) -> str | None:
    files = mqtt.tls_ca_file or mqtt.tls_cert_file or mqtt.tls_key_file
    return "must be true when TLS files are given" if files and not tls else None


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = False
    host: Annotated[str, rule.NonEmpty] = "127.0.0.1"
    port: Annotated[int, rule.Port] = 1883
    prefix: Annotated[str, rule.matches(r"^(?!/)[^+#\x00]+(?<!/)$", _PREFIX)] = "edge"
    client_id: Annotated[str, _CLIENT_ID] = ""  # empty: edge-<site>-<line>; the batches' edge_id
    username: str | None = None
    password: Secret | None = None
    tls: Annotated[bool, rule.After(_tls_on)] = False
    tls_ca_file: CertFile | None = None  # None: the system's trust store
    tls_cert_file: CertFile | None = None  # client certificate (mutual TLS)
    tls_key_file: KeyFile | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5, else 3.1.1
    keepalive_s: Annotated[int, rule.between(5, 3600)] = 30
    backoff_initial_s: rule.Seconds = 1.0
    backoff_max_s: rule.BackoffMax = 30.0
    publish_timeout_s: rule.Seconds = 10.0
    batch_max_events: Annotated[int, rule.between(1, 100_000)] = 500
    batch_max_delay_s: rule.Seconds = 0.2
    batch_max_bytes: Annotated[int, rule.between(1024, 256 * 1024 * 1024)] = 1_048_576
    inflight_batches: Annotated[int, rule.between(1, 64)] = 4
    # True: a batch the broker acknowledges with "no matching subscribers" (MQTT 5) is
    # published again until a subscriber takes it, instead of being dropped there
    # (mosquitto 2.0 forgets shared subscriptions when it restarts).
    require_subscriber: bool = False
    kpi_interval_s: Annotated[float, rule.NonNegative] = 10.0  # 0: no retained KPI snapshots
    commands_enabled: bool = True
    command_max_bytes: Annotated[int, rule.between(256, 16 * 1024 * 1024)] = 65_536
    command_users: tuple[Annotated[str, rule.NonEmpty], ...] = ()  # empty: any user
    command_token: Secret | None = None  # set: every command must carry it
    allowed_commands: tuple[MqttCommand, ...] = MQTT_COMMANDS


def _url_path(*placeholders: str) -> Callable[[str], str | None]:
    want = ", ".join("{" + p + "}" for p in placeholders) or "no placeholder"

    def check(value: str) -> str | None:
        if not value.startswith("/"):
            return f"must be a URL path starting with '/', got {value!r}"
        found = sorted(re.findall(r"\{([^{}]*)\}", value)) == sorted(placeholders)
        return None if found else f"must contain exactly {want}, got {value!r}"

    return check


def _base_url(qmib: QmibConfig, url: str) -> str | None:
    return "missing: required when qmib.enabled = true" if qmib.enabled and not url else None


def _one_auth(qmib: QmibConfig, token: Secret | None) -> str | None:
    both = token is not None and (qmib.username is not None or qmib.password is not None)
    return "give either token (bearer) or username + password (basic), not both" if both else None


_EVENT_NAME = "an event type name like 'BatchRecordCompleted'"
_URL_LIKE = 'an http(s) URL like "https://qmib.example/api"'
_HTTP_URL = rule.matches(r"^$|^https?://[^\s/?#:@]", _URL_LIKE)
_EVENT_TYPE = rule.matches(r"^[A-Za-z_][A-Za-z0-9_]*$", _EVENT_NAME)
_BASIC = rule.With("username", "username and password go together (basic auth)")


@dataclass(frozen=True, slots=True)
class QmibConfig:
    enabled: bool = False
    base_url: Annotated[str, _HTTP_URL, rule.After(_base_url)] = ""
    token: Annotated[Secret, rule.After(_one_auth)] | None = None  # bearer; or basic auth
    username: Annotated[str, rule.NonEmpty] | None = None
    password: Annotated[Secret, _BASIC] | None = None
    timeout_s: rule.Seconds = 10.0
    retries: Annotated[int, rule.between(0, 20)] = 3  # after a 5xx or connection error; never a 4xx
    backoff_initial_s: rule.Seconds = 0.5
    backoff_max_s: rule.BackoffMax = 30.0
    verify_tls: bool = True
    ca_file: CertFile | None = None
    templates_path: Annotated[str, _url_path("template_id")] = "/batch-templates/{template_id}"
    equipment_path: Annotated[str, _url_path("equipment_id")] = "/equipment/{equipment_id}"
    batch_records_path: Annotated[str, _url_path()] = "/batch-records"
    event_ack_path: Annotated[str, _url_path("event_id")] = "/events/{event_id}/ack"
    alarm_ack_path: Annotated[str, _url_path("alarm_id")] = "/alarms/{alarm_id}/ack"
    # Event types delivered to QMIB through the outbox (edge.wire type names).
    deliver_events: tuple[Annotated[str, _EVENT_TYPE], ...] = ("BatchRecordCompleted",)


@dataclass(frozen=True, slots=True)
class LineConfig:
    source_path: Path
    line: LineIdentity
    calendar: CalendarDef
    machines: tuple[MachineConfig, ...]
    plcs: tuple[plant.PlcConfig, ...] = ()
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

    @property
    def namespace_uri(self) -> str:
        return self.opcua.namespace_uri or f"urn:{self.line.site}:{self.line.area}:{self.line.id}"


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
    extra = reader.value(tuple[Path, ...], doc.get("plc_map_dirs", []), "plc_map_dirs")
    extra = extra if isinstance(extra, tuple) else ()
    map_dirs = (*extra, base_dir / "plc_maps", BUILTIN_PLC_MAPS)
    plcs = plant.read_plcs(reader, doc)
    machines = plant.read_machines(reader, doc, plcs, map_dirs)
    # systemd's StateDirectory= sets $STATE_DIRECTORY (maybe several paths, ':'-separated).
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    state_dir = state_dir or str(Path.cwd() / "var" / (line.id or "line"))
    # ... and CacheDirectory= sets $CACHE_DIRECTORY; without it, in the state directory.
    given = doc.get("storage")
    given_state = given.get("state_dir") if isinstance(given, dict) else None
    cache_dir = os.environ.get("CACHE_DIRECTORY", "").split(":")[0] or str(
        Path(given_state if isinstance(given_state, str) else state_dir) / "cache"
    )
    storage = reader.section(
        StorageConfig, doc, "storage", state_dir=state_dir, cache_dir=cache_dir
    )
    plain = ("simulator", "mqtt", "metrics", "web", "qmib", "logging", "orders")
    plain_sections = {key: reader.section(sections[key][0], doc, key) for key in plain}
    config = LineConfig(
        source_path=Path(source),
        line=replace(line, name=line.name or line.id),
        calendar=read_calendar(reader, doc),
        machines=tuple(machine for machine, _ in machines.values()),
        plcs=tuple(plc for plc in plcs.values() if plc is not None),
        opcua=read_opcua(reader, doc),
        storage=storage,
        outbox=reader.section(OutboxConfig, doc, "outbox", path=f"{storage.state_dir}/outbox.db"),
        plc_map_dirs=tuple(dict.fromkeys(map_dirs)),
        quality_stations=plant.read_stations(reader, doc, machines, plcs, map_dirs),
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
