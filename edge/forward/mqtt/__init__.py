"""MQTT: store-and-forward of the line's events to the MES, and the MES's commands.

The wiring, as the line service uses it::

    LineService(config, components=[streams.component, mqtt.component, ...])  # edge.forward

- :mod:`edge.forward.mqtt.component` — one reconnecting broker connection: birth/will on
  ``<base>/status``, the :mod:`~edge.forward.mqtt.forwarder` (outbox → batches on
  ``<base>/events``), commands on ``<base>/cmd/#``, KPI snapshots;
- :mod:`edge.forward.mqtt.commands` — decoding, validating and running MES commands;
- :mod:`edge.forward.mqtt.topics` — the topic layout;
- :mod:`edge.wire` — the payloads (the versioned schema).

Errors: :class:`BrokerError` (an :class:`~edge.errors.ConnectorError`) when the
broker is unreachable or the connection broke; :class:`CommandRejected` (a
:class:`~edge.errors.CommandError`) for a command that is not executed.
The protocol and payloads are documented in ``docs/mqtt-and-qmib.md``.
"""

from edge.forward.mqtt.commands import (
    CommandHandler,
    CommandPolicy,
    CommandRejected,
    decode_command,
)
from edge.forward.mqtt.component import MqttComponent, MqttState, MqttStatistics, component
from edge.forward.mqtt.connection import BrokerError
from edge.forward.mqtt.forwarder import Forwarder, ForwarderStatistics
from edge.forward.mqtt.topics import Topics, edge_id_of

__all__ = [
    "BrokerError",
    "CommandHandler",
    "CommandPolicy",
    "CommandRejected",
    "Forwarder",
    "ForwarderStatistics",
    "MqttComponent",
    "MqttState",
    "MqttStatistics",
    "Topics",
    "component",
    "decode_command",
    "edge_id_of",
]
