"""The ingest worker's MQTT client: a persistent session, QoS 1, acknowledged by hand.

A message is acknowledged (PUBACK) only after its batch is committed, so a
worker that dies in between gets it again on its next connection (the broker
keeps the session: ``clean_start = False`` with a session expiry interval).

**Manual acknowledgement.** paho-mqtt 2.x can hold back the PUBACK
(``Client.manual_ack_set(True)``, then ``Client.ack(mid, qos)``); aiomqtt 2.x,
which wraps it, has no API for it yet (aiomqtt issue #345, pull request #346).
The least intrusive correct way is to switch it on on the paho client aiomqtt
owns (``aiomqtt.Client._client``, the one private attribute used here, and
only here) **before** connecting — a broker with queued messages sends them
right after CONNACK, and paho would acknowledge those by itself otherwise —
and to ack from the event loop thread, where aiomqtt runs paho's I/O. The
acknowledgements go out in the order the messages came in, as MQTT requires
(MQTT 5 section 4.6). :func:`check_manual_ack_support` refuses to start when
an upgrade of either library took these away, instead of silently acking early.

**Flow control.** The CONNECT's Receive Maximum bounds how many unacknowledged
messages the broker sends at once: the worker's pipeline depth.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.errors import EdgeError
from edge.forward.mqtt.connection import ClientSettings

__all__ = ["acknowledge", "check_manual_ack_support", "ingest_client", "share_filter"]


def share_filter(group: str, prefix: str) -> str:
    """The shared subscription to every line's events under ``prefix``."""
    return f"$share/{group}/{prefix}/+/+/events"


def check_manual_ack_support() -> None:
    """EdgeError when the installed paho-mqtt/aiomqtt cannot hold back PUBACKs."""
    missing = [name for name in ("manual_ack_set", "ack") if not hasattr(PahoClient, name)]
    if missing:
        raise EdgeError(
            f"paho-mqtt lacks {', '.join(missing)} (manual acknowledgements, paho-mqtt >= 2.0): "
            "edge ingest cannot acknowledge only after the commit"
        )


def _paho(client: aiomqtt.Client) -> Any:
    paho = getattr(client, "_client", None)
    if not isinstance(paho, PahoClient):
        raise EdgeError(
            "aiomqtt.Client no longer exposes its paho client: edge ingest needs it to "
            "acknowledge messages after the commit"
        )
    return paho


def ingest_client(
    settings: ClientSettings,
    *,
    client_id: str,
    session_expiry_s: int,
    receive_maximum: int,
) -> aiomqtt.Client:
    """An MQTT 5 client for one connection: persistent session, manual acknowledgements."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = session_expiry_s
    properties.ReceiveMaximum = receive_maximum
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        keepalive=settings.keepalive_s,
        timeout=settings.timeout_s,
        tls_context=settings.tls,
        properties=properties,
    )
    _paho(client).manual_ack_set(True)  # before CONNECT: see the module docstring
    return client


def acknowledge(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Send the PUBACK of a QoS 1 message received on ``client``'s current connection."""
    if message.qos > 0:
        _paho(client).ack(message.mid, message.qos)
