"""Issue 5's end-to-end path, every part real: the MES starts an order with an MQTT
command (mosquitto), the order runs on the simulated line (pymodbus), completes at
its target by itself, and its batch record reaches an MQTT subscriber and the QMIB
test server (a real HTTP server), through the durable outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import edge.forward.mqtt
import edge.forward.qmib
import edge.state.outbox
from edge.orders import component as orders_component
from edge.runtime.service import LineService
from tests.integration.mqtt.broker import Broker, needs_mosquitto
from tests.integration.mqtt.helpers import Received, consumer, line_toml, make_config
from tests.integration.mqtt.test_commands import js, mes
from tests.integration.qmib.server import FakeQmib

pytestmark = needs_mosquitto

TARGET = 25


async def test_mqtt_order_runs_completes_at_target_and_its_batch_record_reaches_mes_and_qmib(
    tmp_path: Path, broker: Broker, free_port_factory: Callable[[], int]
) -> None:
    qmib = FakeQmib(free_port_factory())
    qmib.answer("POST", "/api/batch-records", 201, {"id": "BR-1"})
    qmib_section = f"""
        [qmib]
        enabled = true
        base_url = "{qmib.base_url}"
        token = "t0ken"
        timeout_s = 1.0
        backoff_initial_s = 0.05
        backoff_max_s = 0.2
        """
    config = make_config(
        tmp_path,
        line_toml(
            broker.port,
            sim_port=free_port_factory(),
            mqtt_extra="kpi_interval_s = 0\n",
            extra=qmib_section,
        ),
    )
    components = [
        edge.forward.streams.component,
        orders_component,
        edge.forward.mqtt.component,
        edge.forward.qmib.component,
    ]
    received = Received()
    async with (
        qmib,
        consumer(broker.port, "edge/T/L1/events") as tail,
        LineService(config, components=components) as service,
    ):
        await service.components[2].wait_connected(5)
        async with mes(broker.port) as side:
            order = {
                "order_id": "WO-42",
                "product": "BOTTLE-1L",
                "target_quantity": TARGET,
                "machine_ids": ["M1"],
                "ideal_cycle_s": 1.0,
                "auto_complete": True,
                "user": "mes-planner",
            }
            for name, args in [
                ("download_order", order),
                ("release_order", {"order_id": "WO-42"}),
                ("start_order", {"order_id": "WO-42"}),
            ]:
                doc, _ = await side.send(name, js(args))
                assert doc["status"] == "accepted", (name, doc)

        def completed(r: Received) -> bool:
            return any(e.type == "BatchRecordCompleted" for e in r.events)

        # 20x simulated time: 25 pieces of ~1 s take ~2 s of wall time plus stops.
        await received.until(tail, completed, 60, "the batch record over MQTT")
        deadline = time.monotonic() + 15
        while not qmib.seen("POST", "/api/batch-records"):
            assert time.monotonic() < deadline, "the batch record never reached QMIB"
            await asyncio.sleep(0.05)

    # Exactly once: every batch decoded, no gap or duplicate between or inside batches.
    assert not received.errors and not received.harmful(), (received.errors, received.harmful())
    seqs = [e.seq for e in received.events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "events lost or repeated"
    statuses = [e.data["status"] for e in received.events if e.type == "OrderStatusChanged"]
    assert statuses == ["created", "released", "running", "completed"], statuses
    (event,) = [e.data for e in received.events if e.type == "BatchRecordCompleted"]
    record = event["record"]
    assert record["order_id"] == "WO-42" and record["product"] == "BOTTLE-1L"
    assert record["status"] == "completed" and record["target_quantity"] == TARGET
    # Auto-complete fires on the poll whose pieces reach the target: one poll may
    # reveal several pieces (more when the machine is loaded), so the order can end
    # above the target, but never a poll later. The order's counts, poll by poll,
    # as the engine published them:
    per_poll: dict[float, dict[str, int]] = {}
    for e in received.events:
        if e.type == "PiecesCounted" and e.data["order_id"] == "WO-42":
            roles = per_poll.setdefault(e.data["ts"], {})
            roles[e.data["role"]] = roles.get(e.data["role"], 0) + e.data["count"]
    good_by_poll = [
        roles["good_count"]
        if "good_count" in roles
        else roles.get("total_count", 0) - roles.get("reject_count", 0)
        for _, roles in sorted(per_poll.items())
    ]
    assert sum(good_by_poll) == record["good_quantity"] >= TARGET, good_by_poll
    assert sum(good_by_poll[:-1]) < TARGET, good_by_poll
    (post,) = qmib.seen("POST", "/api/batch-records")
    delivered = post.json()["record"]["record"]
    assert delivered["order_id"] == "WO-42"
    assert delivered["good_quantity"] == record["good_quantity"]
