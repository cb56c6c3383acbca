"""``[mqtt]``: the broker the events are forwarded to, batching, and the MES's commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from edge.config.plcs import check_backoff
from edge.config.schema import (
    Check,
    NonEmpty,
    NonNegative,
    Port,
    Positive,
    Reader,
    between,
    matches,
    one_of,
)
from edge.secrets import Secret

# What the MES may send on <prefix>/<site>/<line>/cmd/<name> (edge.forward.mqtt.commands).
MQTT_COMMANDS = tuple(
    [
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
)


def _topic_prefix(value: str) -> str | None:
    if not value or any(c in value for c in "+#\x00") or value[0] == "/" or value[-1] == "/":
        return f"must be a topic prefix without wildcards or leading/trailing '/', got {value!r}"
    return None


# MQTT 3.1.1 brokers must accept 1-23 characters of [0-9a-zA-Z]; most take more,
# but a '/' or a wildcard would also break the edge_id in topics and logs.
_CLIENT_ID = r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ClientId = Annotated[str, matches(_CLIENT_ID, "letters, digits, '_', '.' or '-' (at most 128)")]
Seconds = Annotated[float, Positive]


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = False
    host: Annotated[str, NonEmpty] = "127.0.0.1"
    port: Annotated[int, Port] = 1883
    prefix: Annotated[str, Check(_topic_prefix)] = "edge"
    client_id: ClientId = ""  # empty: edge-<site>-<line>; also the edge_id in every batch
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    tls_ca_file: Path | None = None  # None: the system's trust store
    tls_cert_file: Path | None = None  # client certificate (mutual TLS)
    tls_key_file: Path | None = None
    protocol: Literal["auto", "5", "3.1.1"] = "auto"  # auto: MQTT 5, else 3.1.1
    keepalive_s: Annotated[int, between(5, 3600)] = 30
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 30.0
    publish_timeout_s: Seconds = 10.0
    batch_max_events: Annotated[int, between(1, 100_000)] = 500
    batch_max_delay_s: Seconds = 0.2
    batch_max_bytes: Annotated[int, between(1024, 256 * 1024 * 1024)] = 1_048_576
    inflight_batches: Annotated[int, between(1, 64)] = 4
    # True: a batch the broker acknowledges with "no matching subscribers" (MQTT 5) is
    # published again until a subscriber takes it, instead of being dropped there
    # (mosquitto 2.0 forgets shared subscriptions when it restarts).
    require_subscriber: bool = False
    kpi_interval_s: Annotated[float, NonNegative] = 10.0  # 0: no retained KPI snapshots
    commands_enabled: bool = True
    command_max_bytes: Annotated[int, between(256, 16 * 1024 * 1024)] = 65_536
    command_users: tuple[Annotated[str, NonEmpty], ...] = ()  # empty: any user
    command_token: Secret | None = None  # set: every command must carry it
    allowed_commands: tuple[Annotated[str, one_of(*MQTT_COMMANDS)], ...] = MQTT_COMMANDS


def check_files(reader: Reader, section: Any, path: str, *keys: str) -> None:
    for key in keys:
        file = getattr(section, key)
        if file is not None and not file.is_file():
            reader.problem(f"{path}.{key}", f"no such file: {file}")


def read_mqtt(reader: Reader, doc: dict[str, Any]) -> MqttConfig:
    table = reader.table(doc, "mqtt")
    mqtt = reader.section(MqttConfig, table, "mqtt", read_secrets=table.get("enabled") is True)
    mqtt = mqtt or MqttConfig()
    check_backoff(reader, mqtt, "mqtt")
    check_files(reader, mqtt, "mqtt", "tls_ca_file", "tls_cert_file", "tls_key_file")
    if (mqtt.tls_cert_file is None) != (mqtt.tls_key_file is None):
        reader.problem("mqtt.tls_key_file", "tls_cert_file and tls_key_file go together")
    if not mqtt.tls and (mqtt.tls_ca_file or mqtt.tls_cert_file or mqtt.tls_key_file):
        reader.problem("mqtt.tls", "must be true when TLS files are given")
    return mqtt
