"""MES commands over a real mosquitto: replies on the response topic with the correlation
data, good commands change the order state (seen in the events), bad ones are rejected
with a reason and disturb nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import msgpack
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import edge.mqtt
import edge.outbox
from edge.commands import CommandAudit
from edge.orders import component as orders_component
from edge.service import LineService
from tests.integration.mqtt.broker import Broker, needs_mosquitto
from tests.integration.mqtt.helpers import Received, Recorder, consumer, line_toml, make_config
from tests.unit.mqtt.fakes import FakeCommands

pytestmark = needs_mosquitto

_ids = itertools.count(1)


class Mes:
    """The MES side: publishes commands, waits for the reply to each."""

    def __init__(self, client: aiomqtt.Client, v5: bool) -> None:
        self.client = client
        self.v5 = v5
        self.replies: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()

    async def send(
        self, name: str, payload: bytes, *, retain: bool = False, correlation: bytes | None = None
    ) -> tuple[dict[str, Any], aiomqtt.Message]:
        topic = f"mes/replies/{next(_ids)}"
        await self.client.subscribe(topic, qos=1)
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = topic
            properties.CorrelationData = correlation or topic.encode()
        else:
            doc = json.loads(payload) if payload.startswith(b"{") else None
            if doc is not None:
                payload = json.dumps({**doc, "response_topic": topic}).encode()
        await self.client.publish(
            f"edge/T/L1/cmd/{name}", payload, qos=1, retain=retain, properties=properties
        )
        message = await asyncio.wait_for(self.replies.get(), 10)
        if retain:  # clear the retained command again
            await self.client.publish(f"edge/T/L1/cmd/{name}", b"", qos=1, retain=True)
        assert isinstance(message.payload, bytes)
        raw = message.payload
        doc = json.loads(raw) if raw.startswith(b"{") else msgpack.unpackb(raw)
        return doc, message


@asynccontextmanager
async def mes(port: int, *, v5: bool = True) -> AsyncIterator[Mes]:
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", port, protocol=protocol) as client:
        side = Mes(client, v5)

        async def pump() -> None:
            async for message in client.messages:
                side.replies.put_nowait(message)

        task = asyncio.ensure_future(pump())
        try:
            yield side
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def js(doc: object) -> bytes:
    return json.dumps(doc).encode()


class WithFakeCommands:
    """A component standing in for the order runtime: sets service.commands."""

    def __init__(self, service: LineService) -> None:
        self.fake = FakeCommands()
        service.commands = self.fake

    async def __aenter__(self) -> WithFakeCommands:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


async def test_good_and_bad_commands_each_get_one_reply(tmp_path: Path, broker: Broker) -> None:
    config = make_config(
        tmp_path,
        line_toml(broker.port, mqtt_extra="command_max_bytes = 1024\nkpi_interval_s = 0\n"),
    )
    components = [WithFakeCommands, edge.outbox.component, edge.mqtt.component]
    async with LineService(config, components=components) as service:
        fake = service.components[0].fake
        mqtt = service.components[2]
        await mqtt.wait_connected(5)
        async with mes(broker.port) as side:
            download = {
                "order_id": "WO-1",
                "product": "P-7",
                "target_quantity": 10,
                "machine_ids": ["M1"],
                "user": "planner",
                "request_id": "r-1",
            }
            doc, message = await side.send("download_order", js(download), correlation=b"c-1")
            assert doc["status"] == "accepted" and doc["request_id"] == "r-1"
            assert doc["result"]["status"] == "created"
            assert message.properties is not None
            assert message.properties.CorrelationData == b"c-1"

            doc, _ = await side.send("start_order", msgpack.packb({"order_id": "WO-1"}))
            assert doc["status"] == "accepted" and doc["result"]["status"] == "running"

            bad = [
                ("start_order", b"\x00\xff not a document", "malformed"),
                ("start_order", js({"order_id": 7}), "invalid_argument"),
                ("set_stop_reason", js({"machine_id": "M9", "reason": "jam"}), "unknown_machine"),
                ("complete_order", js({"order_id": "WO-404"}), "refused"),
                ("hold_order", js({"order_id": "WO-1", "reason": "x" * 2000}), "too_large"),
                ("format_disk", js({}), "unknown_command"),
            ]
            for name, payload, code in bad:
                doc, _ = await side.send(name, payload)
                assert (doc["status"], doc["code"]) == ("rejected", code), (name, doc)
                assert doc["reason"]

            # Nothing was disturbed: the line still takes good commands.
            doc, _ = await side.send("hold_order", js({"order_id": "WO-1", "reason": "lunch"}))
            assert doc["status"] == "accepted" and doc["result"]["status"] == "held"
        stats = mqtt.statistics()
    assert [c[0] for c in fake.calls] == [
        "download_order",
        "start_order",
        "complete_order",
        "hold_order",
    ]
    assert fake.calls[0][2:] == ("mqtt", "planner")
    assert fake.orders["WO-1"].status == "held"
    assert (stats.commands_accepted, stats.commands_rejected) == (3, 6)


async def test_a_retained_command_is_not_run_when_the_edge_connects(
    tmp_path: Path, broker: Broker
) -> None:
    # Left retained on the broker, it would run again at every reconnect of the edge.
    config = make_config(tmp_path, line_toml(broker.port, mqtt_extra="kpi_interval_s = 0\n"))
    async with mes(broker.port) as side:
        await side.client.subscribe("mes/replies/retained", qos=1)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = "mes/replies/retained"
        properties.CorrelationData = b"r"
        await side.client.publish(
            "edge/T/L1/cmd/acknowledge_alarm",
            js({"alarm_id": "A-1"}),
            qos=1,
            retain=True,
            properties=properties,
        )
        components = [WithFakeCommands, edge.outbox.component, edge.mqtt.component]
        async with LineService(config, components=components) as service:
            fake = service.components[0].fake
            message = await asyncio.wait_for(side.replies.get(), 10)
        await side.client.publish("edge/T/L1/cmd/acknowledge_alarm", b"", qos=1, retain=True)
    assert isinstance(message.payload, bytes)
    doc = json.loads(message.payload)
    assert (doc["status"], doc["code"]) == ("rejected", "retained")
    assert fake.alarms == []


async def test_mqtt_311_clients_name_the_response_topic_in_the_payload(
    tmp_path: Path, broker: Broker
) -> None:
    config = make_config(tmp_path, line_toml(broker.port, mqtt_extra='protocol = "3.1.1"\n'))
    components = [WithFakeCommands, edge.outbox.component, edge.mqtt.component]
    async with LineService(config, components=components) as service:
        mqtt = service.components[2]
        await mqtt.wait_connected(5)
        assert mqtt.statistics().protocol == "3.1.1"
        async with mes(broker.port, v5=False) as side:
            doc, message = await side.send(
                "set_stop_reason", js({"machine_id": "M1", "reason": "jam", "request_id": 5})
            )
    assert doc["status"] == "accepted" and doc["request_id"] == 5
    assert message.topic.value.startswith("mes/replies/")


async def test_unauthorised_commands_are_rejected(tmp_path: Path, broker: Broker) -> None:
    config = make_config(
        tmp_path,
        line_toml(broker.port, mqtt_extra='command_token = "s3cret"\ncommand_users = ["mes"]\n'),
    )
    components = [WithFakeCommands, edge.outbox.component, edge.mqtt.component]
    async with LineService(config, components=components) as service:
        fake = service.components[0].fake
        await service.components[2].wait_connected(5)
        async with mes(broker.port) as side:
            doc, _ = await side.send("acknowledge_alarm", js({"alarm_id": "A", "user": "mes"}))
            assert (doc["code"], doc["reason"]) == ("unauthorized", "missing or wrong token")
            doc, _ = await side.send(
                "acknowledge_alarm", js({"alarm_id": "A", "user": "eve", "token": "s3cret"})
            )
            assert doc["code"] == "unauthorized"
            doc, _ = await side.send(
                "acknowledge_alarm", js({"alarm_id": "A", "user": "mes", "token": "s3cret"})
            )
            assert doc["status"] == "accepted"
    assert fake.alarms == ["A"]


async def test_commands_drive_the_real_order_runtime_and_show_in_the_events(
    tmp_path: Path, broker: Broker
) -> None:
    config = make_config(tmp_path, line_toml(broker.port, mqtt_extra="kpi_interval_s = 0\n"))
    components = [edge.outbox.component, orders_component, edge.mqtt.component]
    received = Received()
    async with consumer(broker.port, "edge/T/L1/events", "edge/T/L1/status") as tail:
        await asyncio.wait_for(tail.connected.wait(), 5)
        async with LineService(config, components=components) as service:
            mqtt = service.components[2]
            await mqtt.wait_connected(5)
            async with mes(broker.port) as side:
                steps = [
                    (
                        "download_order",
                        {
                            "order_id": "WO-7",
                            "product": "P-7",
                            "target_quantity": 100,
                            "machine_ids": ["M1"],
                        },
                        "created",
                    ),
                    ("release_order", {"order_id": "WO-7"}, "released"),
                    ("start_order", {"order_id": "WO-7"}, "running"),
                    ("hold_order", {"order_id": "WO-7", "reason": "no material"}, "held"),
                    ("complete_order", {"order_id": "WO-7"}, "completed"),
                ]
                for name, args, status in steps:
                    doc, _ = await side.send(name, js({**args, "user": "mes-planner"}))
                    assert doc["status"] == "accepted", (name, doc)
                    assert doc["result"]["status"] == status
                # The line refuses what its order state does not allow.
                doc, _ = await side.send("start_order", js({"order_id": "WO-7"}))
                assert doc["code"] == "refused" and "WO-7" in doc["reason"]
                doc, _ = await side.send("start_order", js({"order_id": "WO-nope"}))
                assert doc["code"] == "refused"
                # A rebirth republishes the birth certificate.
                births = len([s for s in received.statuses if s["status"] == "online"])
                doc, _ = await side.send("rebirth", b"")
                assert doc["status"] == "accepted"

            def finished(r: Received) -> bool:
                return any(e.type == "BatchRecordCompleted" for e in r.events) and (
                    len([s for s in r.statuses if s["status"] == "online"]) > births
                )

            await received.until(tail, finished, 10, "the batch record and the rebirth")

    changes = [e.data for e in received.events if e.type == "OrderStatusChanged"]
    assert [c["status"] for c in changes] == ["created", "released", "running", "held", "completed"]
    assert {(c["source"], c["user"]) for c in changes} == {("mqtt", "mes-planner")}
    (record,) = [e.data for e in received.events if e.type == "BatchRecordCompleted"]
    assert record["order_id"] == "WO-7" and record["record"]["status"] == "completed"
    assert [s["status"] for s in received.statuses][-1] == "online"


async def test_a_retained_command_reaching_the_live_subscription_is_recognised(
    tmp_path: Path, broker: Broker
) -> None:
    # The edge is subscribed already: the broker delivers live, and only MQTT 5's
    # Retain As Published keeps the flag that says the command was retained.
    config = make_config(tmp_path, line_toml(broker.port, mqtt_extra="kpi_interval_s = 0\n"))
    components = [WithFakeCommands, edge.outbox.component, edge.mqtt.component]
    async with LineService(config, components=components) as service:
        fake = service.components[0].fake
        await service.components[2].wait_connected(5)
        async with mes(broker.port) as side:
            payload = js({"alarm_id": "A-1", "request_id": "r-live"})
            doc, _ = await side.send("acknowledge_alarm", payload, retain=True)
            assert (doc["status"], doc["code"], doc["request_id"]) == (
                "rejected",
                "retained",
                "r-live",
            )
            # The same command, not retained, runs.
            doc, _ = await side.send("acknowledge_alarm", payload)
            assert doc["status"] == "accepted"
    assert fake.alarms == ["A-1"]


async def test_a_flood_of_bad_commands_is_answered_audited_and_logged_twice(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, line_toml(broker.port, mqtt_extra="kpi_interval_s = 0\n"))
    components = [Recorder, edge.outbox.component, edge.mqtt.component]
    caplog.set_level(logging.WARNING, logger="edge.mqtt.commands")
    flood = 1000
    async with LineService(config, components=components) as service:
        recorder, _, mqtt = service.components
        assert isinstance(recorder, Recorder) and isinstance(mqtt, edge.mqtt.MqttComponent)
        await mqtt.wait_connected(5)
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("edge/T/L1/reply/#", qos=1)
            for _ in range(flood):
                await client.publish("edge/T/L1/cmd/start_order", b"\xc1 junk", qos=1)
            replies = 0
            async with asyncio.timeout(60):
                async for _message in client.messages:
                    replies += 1
                    if replies == flood:
                        break
        assert mqtt.statistics().commands_rejected == flood
    # Closing the component reports the count the rate limit held back.
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.mqtt.commands"]
    assert lines == [
        "mqtt command rejected",
        f"{flood - 1} more mqtt commands rejected in the last 60 s (malformed {flood - 1})",
    ]
    audits = [e for e in recorder.events if isinstance(e, CommandAudit)]
    assert len(audits) == flood and not any(a.accepted for a in audits)
