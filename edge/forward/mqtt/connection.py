"""Building aiomqtt clients from ``[mqtt]``, and the boundary for their errors.

aiomqtt 2.x has no automatic reconnect and a client is one connection at a
time; the forwarder and ``edge tail`` own their reconnect loops and build a
fresh client per attempt (a publish that raised is then never resent by paho
on a later connection behind our back: resends are ours, with their batch id).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY, CleanStartOption
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import MqttConfig
from edge.errors import ConnectorError

__all__ = [
    "BrokerError",
    "ClientSettings",
    "ProtocolVersion",
    "is_protocol_refusal",
    "new_client",
    "tls_context_of",
    "unrouted_counter",
]

ProtocolVersion = aiomqtt.ProtocolVersion

# CONNACK codes a broker answers when it does not speak the requested protocol
# version: 1 in MQTT 3.1.1, 0x84 "Unsupported Protocol Version" in MQTT 5.
_PROTOCOL_REFUSALS = frozenset({1, 0x84})


class BrokerError(ConnectorError):
    """The MQTT broker is unreachable, refused the connection, or the connection broke."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where and as whom to connect (from ``[mqtt]``, or ``edge tail`` options)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive_s: int = 30
    timeout_s: float = 10.0

    @classmethod
    def of(cls, config: MqttConfig) -> ClientSettings:
        return cls(
            host=config.host,
            port=config.port,
            username=config.username,
            password=config.password.reveal() if config.password is not None else None,
            tls=tls_context_of(config),
            keepalive_s=config.keepalive_s,
            timeout_s=config.publish_timeout_s,
        )


def tls_context_of(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for ``[mqtt]``; raises BrokerError when a file cannot be used."""
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(config.tls_ca_file) if config.tls_ca_file else None
        )
        if config.tls_cert_file is not None:
            context.load_cert_chain(
                str(config.tls_cert_file),
                str(config.tls_key_file) if config.tls_key_file else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"cannot load the MQTT TLS files: {exc}") from exc
    return context


def new_client(
    settings: ClientSettings,
    *,
    identifier: str,
    protocol: ProtocolVersion = ProtocolVersion.V5,
    will: aiomqtt.Will | None = None,
    persistent_session_s: int | None = None,
) -> aiomqtt.Client:
    """A client for one connection attempt (enter it with ``async with``).

    ``persistent_session_s``: keep the session (subscriptions, QoS 1 messages
    queued while away) on the broker this long; None: a clean session.
    """
    properties = None
    # paho refuses a clean-start flag outside MQTT 5; its default is the neutral value.
    clean_start: CleanStartOption = MQTT_CLEAN_START_FIRST_ONLY
    clean_session: bool | None = None
    if protocol is ProtocolVersion.V5:
        clean_start = persistent_session_s is None
        if persistent_session_s is not None:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = persistent_session_s
    else:
        clean_session = persistent_session_s is None
    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        protocol=protocol,
        will=will,
        clean_session=clean_session,
        clean_start=clean_start,
        keepalive=settings.keepalive_s,
        timeout=settings.timeout_s,
        tls_context=settings.tls,
        properties=properties,
    )


# MQTT 5 PUBACK reason code 0x10: the broker took the message but nobody subscribed to it.
NO_MATCHING_SUBSCRIBERS = 0x10


def unrouted_counter(client: aiomqtt.Client) -> Callable[[], int]:
    """A function returning how many PUBACKs on ``client`` said "no matching subscribers".

    aiomqtt hides PUBACK reason codes, so this wraps the ``on_publish`` callback of
    the paho client it owns (set in its constructor) and passes every call on.
    """
    paho = client._client
    original = paho.on_publish
    count = [0]

    def on_publish(*args: Any) -> None:
        reason = args[3] if len(args) > 3 else None
        if getattr(reason, "value", reason) == NO_MATCHING_SUBSCRIBERS:
            count[0] += 1
        if original is not None:
            original(*args)

    paho.on_publish = on_publish
    return lambda: count[0]


def is_protocol_refusal(exc: BaseException) -> bool:
    """The broker refused the protocol version (fall back from MQTT 5 to 3.1.1)."""
    if not isinstance(exc, MqttConnectError):
        return False
    code = exc.rc
    value = getattr(code, "value", code)
    return isinstance(value, int) and value in _PROTOCOL_REFUSALS


def describe(exc: BaseException) -> str:
    """A one-line reason for a log line (aiomqtt messages are terse)."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, aiomqtt.MqttError) and cause is not None and str(cause) not in text:
        text = f"{text} ({cause})"
    return text
