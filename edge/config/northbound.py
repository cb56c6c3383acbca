"""Northbound, toward SCADA, MES and QMIB: ``[opcua]`` (the line's OPC UA server, its
security, users and roles), ``[web]`` (the line display), ``[metrics]`` (Prometheus),
``[outbox]`` (the durable event queue), ``[mqtt]`` (batches to the broker, the MES's
commands) and ``[qmib]`` (the AspenTech QMIB REST gateway)."""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from edge.config import schema as rule
from edge.config.equipment import OpcEndpoint, Seconds
from edge.config.schema import Reader, schema_of
from edge.secrets import Secret

Role = Literal["operator", "supervisor", "quality", "maintenance", "admin"]
Policy = Literal["Basic256Sha256", "Aes256Sha256RsaPss"]
Mode = Literal["Sign", "SignAndEncrypt"]
OPCUA_ROLES: tuple[Role, ...] = typing.get_args(Role)
OPCUA_SECURITY_POLICIES: tuple[Policy, ...] = typing.get_args(Policy)
OPCUA_SECURITY_MODES: tuple[Mode, ...] = typing.get_args(Mode)
# FULL survives power loss; NORMAL survives a process crash only.
Synchronous = Literal["FULL", "NORMAL"]
_TLS = rule.With("tls_cert_file", "tls_cert_file and tls_key_file go together")


def _role(role: str) -> str | None:
    hint = difflib.get_close_matches(role, OPCUA_ROLES, n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    listed = ", ".join(OPCUA_ROLES)
    return None if role in OPCUA_ROLES else f"unknown role {role!r}{suffix}; roles are: {listed}"


def _pin(pin: Secret) -> str | None:
    valid = not pin.is_read or re.fullmatch(r"[0-9]{4,12}", pin.reveal())
    return None if valid else "must be 4 to 12 digits"


Roles = Annotated[
    frozenset[Annotated[str, _role]], rule.at_least_one("must name at least one role")
]
_TWICE = rule.Unique("listed twice: {0!r}")
_ONE_MODE = rule.at_least_one(f"must list at least one of {', '.join(OPCUA_SECURITY_MODES)}")
_EVERYONE = frozenset({"operator", "supervisor", "admin"})


@dataclass(frozen=True, slots=True)
class MethodRoles:
    """``[opcua.method_roles]``: the roles that may call each OPC UA method (and give its
    command on the line display); only supervisor and above complete an order."""

    StartOrder: Roles = _EVERYONE
    HoldOrder: Roles = _EVERYONE
    ResumeOrder: Roles = _EVERYONE
    CompleteOrder: Roles = frozenset({"supervisor", "admin"})
    SetStopReason: Roles = _EVERYONE | {"maintenance"}
    AcknowledgeAlarm: Roles = frozenset(OPCUA_ROLES)


def _roles_by_method(roles: MethodRoles) -> dict[str, frozenset[str]]:
    return {method: getattr(roles, method) for method in schema_of(MethodRoles)}


OPCUA_DEFAULT_METHOD_ROLES = _roles_by_method(MethodRoles())


@dataclass(frozen=True, slots=True)
class OpcUaUser:
    """A user of the line: of its OPC UA server and of the line display (edge.web).

    ``roles`` decide which commands it may give (``[opcua.method_roles]``, the same
    rule for both, edge.access); ``pin`` is a short secret for the line display only.
    """

    name: Annotated[str, rule.NonEmpty]
    password: Annotated[Secret, rule.NonEmpty]
    roles: Roles
    pin: Annotated[Secret, _pin] | None = None


@dataclass(frozen=True, slots=True)
class OpcUaServerConfig:
    enabled: bool = True
    endpoint: OpcEndpoint = "opc.tcp://0.0.0.0:4840/edge/"
    namespace_uri: str = ""  # empty: urn:<site>:<area>:<line>
    security_none: bool = True  # offer the unsecured endpoint (SecurityPolicy None)
    security_policies: Annotated[tuple[Policy, ...], _TWICE] = OPCUA_SECURITY_POLICIES
    security_modes: Annotated[tuple[Mode, ...], _TWICE, _ONE_MODE] = OPCUA_SECURITY_MODES
    anonymous: bool = True  # anonymous sessions (read-only: never a method)
    pki_dir: Path | None = None  # None: <state_dir>/opcua-pki
    status_interval_s: Annotated[float, rule.between(0.05, 60)] = 1.0  # KPI refresh
    users: Annotated[tuple[OpcUaUser, ...], rule.Unique("duplicate user {0!r}", "name")] = ()
    method_roles: tuple[tuple[str, frozenset[str]], ...] = tuple(OPCUA_DEFAULT_METHOD_ROLES.items())

    def roles_for(self, method: str) -> frozenset[str]:
        """The roles allowed to call ``method`` (none for an unknown method)."""
        return dict(self.method_roles).get(method, frozenset())


def read_opcua(reader: Reader, doc: dict[str, Any]) -> OpcUaServerConfig:
    table = reader.table(doc, "opcua")
    own = {"opcua": {key: value for key, value in table.items() if key != "method_roles"}}
    # The users log in on the line display too: their secrets are read when either is on.
    web = doc.get("web", {})
    display = not isinstance(web, dict) or web.get("enabled", True) is True
    config = reader.section(OpcUaServerConfig, own, "opcua", secrets=display)
    if config.enabled and not config.security_none and config.security_policies == ():
        no_endpoint = "no endpoint left: list a policy or set security_none = true"
        reader.problem("opcua.security_policies", no_endpoint)
    if config.enabled and not config.anonymous and not config.users:
        nobody = "nobody could log in: add [[opcua.users]] or set anonymous = true"
        reader.problem("opcua.anonymous", nobody)
    roles = reader.build(MethodRoles, table.get("method_roles", {}), "opcua.method_roles")
    method_roles = _roles_by_method(roles or MethodRoles()).items()
    return dataclasses.replace(config, method_roles=tuple(method_roles))


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The line display (pages, JSON API, live feed); the limits apply to [metrics] too."""

    enabled: bool = True
    host: Annotated[str, rule.NonEmpty] = "127.0.0.1"
    port: Annotated[int, rule.Port] = 9713
    tls_cert_file: Path | None = None  # both set: HTTPS
    tls_key_file: Annotated[Path, _TLS] | None = None
    # Per listener, WebSockets included; one more gets a 503.
    max_connections: Annotated[int, rule.between(1, 10_000)] = 64
    max_body_bytes: Annotated[int, rule.between(1024, 16 << 20)] = 65_536  # larger: 413
    # A connection's first request head must arrive within it (408).
    request_timeout_s: Annotated[float, rule.between(0.1, 600)] = 10.0
    idle_timeout_s: Annotated[float, rule.between(0.1, 3600)] = 60.0  # idle keep-alive: closed
    session_idle_s: Annotated[float, rule.between(10, 86_400)] = 900.0  # a login without a request
    session_max_s: Annotated[float, rule.between(10, 7 * 86_400)] = 43_200.0  # a login in any case


def read_web(reader: Reader, doc: dict[str, Any]) -> WebConfig:
    web = reader.section(WebConfig, doc, "web")
    reader.files(web, "web", "tls_cert_file", "tls_key_file")
    reader.ordered(web, "web", "session_idle_s", "session_max_s")
    return web


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    host: Annotated[str, rule.NonEmpty] = "127.0.0.1"
    # 9712: not taken by the well-known exporters (node 9100, OTel 9464, ...).
    port: Annotated[int, rule.Port] = 9712


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: Path  # default <state_dir>/outbox.db
    synchronous: Synchronous = "FULL"
    # Stored event bytes, then the policy applies; below a few KiB one batch would not fit.
    max_bytes: Annotated[int, rule.between(4096, 2**50)] = 1_073_741_824
    policy: Literal["drop-oldest", "reject-new"] = "drop-oldest"
    # In memory, waiting for the next group commit.
    max_pending_events: Annotated[int, rule.between(1000, 10_000_000)] = 200_000
    report_interval_s: Annotated[float, rule.Positive] = 10.0  # at most one report per interval


# What the MES may send on <prefix>/<site>/<line>/cmd/<name> (edge.mqtt.commands).
MqttCommand = Literal[
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
]
MQTT_COMMANDS: tuple[MqttCommand, ...] = typing.get_args(MqttCommand)
_PREFIX = "a topic prefix without wildcards or leading/trailing '/'"
# MQTT 3.1.1 brokers must accept 1-23 characters of [0-9a-zA-Z]; most take more,
# but a '/' or a wildcard would also break the edge_id in topics and logs.
_CLIENT_ID = r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ClientId = Annotated[
    str, rule.matches(_CLIENT_ID, "letters, digits, '_', '.' or '-' (at most 128)")
]


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = False
    host: Annotated[str, rule.NonEmpty] = "127.0.0.1"
    port: Annotated[int, rule.Port] = 1883
    prefix: Annotated[str, rule.matches(r"^(?!/)[^+#\x00]+(?<!/)$", _PREFIX)] = "edge"
    client_id: ClientId = ""  # empty: edge-<site>-<line>; also the edge_id in every batch
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    tls_ca_file: Path | None = None  # None: the system's trust store
    tls_cert_file: Path | None = None  # client certificate (mutual TLS)
    tls_key_file: Annotated[Path, _TLS] | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5, else 3.1.1
    keepalive_s: Annotated[int, rule.between(5, 3600)] = 30
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 30.0
    publish_timeout_s: Seconds = 10.0
    batch_max_events: Annotated[int, rule.between(1, 100_000)] = 500
    batch_max_delay_s: Seconds = 0.2
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


def read_mqtt(reader: Reader, doc: dict[str, Any]) -> MqttConfig:
    mqtt = reader.section(MqttConfig, doc, "mqtt")
    reader.ordered(mqtt, "mqtt", "backoff_initial_s", "backoff_max_s")
    reader.files(mqtt, "mqtt", "tls_ca_file", "tls_cert_file", "tls_key_file")
    if not mqtt.tls and (mqtt.tls_ca_file or mqtt.tls_cert_file or mqtt.tls_key_file):
        reader.problem("mqtt.tls", "must be true when TLS files are given")
    return mqtt


def _http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if value and (parts.scheme not in ("http", "https") or not parts.hostname):
        return f'must be an http(s) URL like "https://qmib.example/api", got {value!r}'
    return None


def _url_path(*placeholders: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not value.startswith("/"):
            return f"must be a URL path starting with '/', got {value!r}"
        if sorted(re.findall(r"\{([^{}]*)\}", value)) != sorted(placeholders):
            want = ", ".join("{" + p + "}" for p in placeholders) or "no placeholder"
            return f"must contain exactly {want}, got {value!r}"
        return None

    return check


_EVENT_TYPE = rule.matches(
    r"^[A-Za-z_][A-Za-z0-9_]*$", "an event type name like 'BatchRecordCompleted'"
)
_BASIC = rule.With("username", "username and password go together (basic auth)")


@dataclass(frozen=True, slots=True)
class QmibConfig:
    enabled: bool = False
    base_url: Annotated[str, _http_url] = ""
    token: Secret | None = None  # bearer token; or username + password (basic)
    username: Annotated[str, rule.NonEmpty] | None = None
    password: Annotated[Secret, _BASIC] | None = None
    timeout_s: Seconds = 10.0
    retries: Annotated[int, rule.between(0, 20)] = 3  # after a 5xx or connection error; never a 4xx
    backoff_initial_s: Seconds = 0.5
    backoff_max_s: Seconds = 30.0
    verify_tls: bool = True
    ca_file: Path | None = None
    templates_path: Annotated[str, _url_path("template_id")] = "/batch-templates/{template_id}"
    equipment_path: Annotated[str, _url_path("equipment_id")] = "/equipment/{equipment_id}"
    batch_records_path: Annotated[str, _url_path()] = "/batch-records"
    event_ack_path: Annotated[str, _url_path("event_id")] = "/events/{event_id}/ack"
    alarm_ack_path: Annotated[str, _url_path("alarm_id")] = "/alarms/{alarm_id}/ack"
    # Event types delivered to QMIB through the outbox (edge.wire type names).
    deliver_events: tuple[Annotated[str, _EVENT_TYPE], ...] = ("BatchRecordCompleted",)


def read_qmib(reader: Reader, doc: dict[str, Any]) -> QmibConfig:
    qmib = reader.section(QmibConfig, doc, "qmib")
    if qmib.enabled and not qmib.base_url:
        reader.problem("qmib.base_url", "missing: required when qmib.enabled = true")
    if qmib.token is not None and (qmib.username is not None or qmib.password is not None):
        either = "give either token (bearer) or username + password (basic), not both"
        reader.problem("qmib.token", either)
    reader.ordered(qmib, "qmib", "backoff_initial_s", "backoff_max_s")
    reader.files(qmib, "qmib", "ca_file")
    return qmib
