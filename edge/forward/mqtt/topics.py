"""The MQTT topic layout: ``<prefix>/<site>/<line>/...`` (README "Interfaces others depend on").

==========================================  =========================================
``<base>/events``                           msgpack event batches (QoS 1), from the outbox
``<base>/status``                           retained birth ``online`` / last will ``offline`` (JSON)
``<base>/machines/<machine>/oee``           retained KPI snapshot per machine (msgpack)
``<base>/cmd/<command>``                    commands from the MES (JSON or msgpack)
``<base>/reply/<command>``                  replies, unless the command names a response topic
==========================================  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.config import LineConfig

__all__ = ["Topics", "edge_id_of"]


def edge_id_of(config: LineConfig) -> str:
    """The edge's id on the wire: the MQTT client id, ``edge-<site>-<line>`` by default."""
    return config.mqtt.client_id or f"edge-{config.line.site}-{config.line.id}"


@dataclass(frozen=True, slots=True)
class Topics:
    base: str

    @classmethod
    def of(cls, config: LineConfig) -> Topics:
        return cls(f"{config.mqtt.prefix}/{config.line.site}/{config.line.id}")

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def commands(self) -> str:
        """The subscription filter for every command."""
        return f"{self.base}/cmd/#"

    def machine_oee(self, machine_id: str) -> str:
        return f"{self.base}/machines/{machine_id}/oee"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def reply(self, name: str) -> str:
        return f"{self.base}/reply/{name}"

    def command_name(self, topic: str) -> str | None:
        """``download_order`` for ``<base>/cmd/download_order``; None outside ``cmd/``."""
        prefix = f"{self.base}/cmd/"
        return topic[len(prefix) :] if topic.startswith(prefix) else None

    def reply_topic_allowed(self, topic: str) -> bool:
        """A requested response topic may not point at the edge's own data topics."""
        if not topic or len(topic) > 512 or any(c in topic for c in "+#\x00"):
            return False
        return not topic.startswith(f"{self.base}/") or topic.startswith(f"{self.base}/reply/")
