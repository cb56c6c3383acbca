"""Store-and-forward against a real mosquitto: order, continuity across an outage, the cap.

The consumer is ``edge tail``'s :class:`~edge.tail.TailConsumer` with a
persistent session, as the MES would run it: batches published while it was
away are queued for it by the broker.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import pytest

import edge.forward.mqtt
import edge.state.outbox
from edge.forward.streams import OutboxComponent
from edge.runtime.service import LineService
from edge.serve.metrics import component_values
from edge.state.outbox import EVENTS_STREAM, OutboxPolicyApplied
from edge.wire import decode_kpi_snapshot, decode_status
from tests.integration.conftest import _free_port
from tests.integration.mqtt.broker import Broker, needs_mosquitto
from tests.integration.mqtt.helpers import (
    Received,
    Recorder,
    consumer,
    line_toml,
    make_config,
    plain,
    wait_for,
)

pytestmark = needs_mosquitto

COMPONENTS = [Recorder, edge.forward.streams.component, edge.forward.mqtt.component]


def _parts(
    service: LineService,
) -> tuple[Recorder, OutboxComponent, edge.forward.mqtt.MqttComponent]:
    recorder, outbox, mqtt = service.components
    assert isinstance(recorder, Recorder)
    assert isinstance(outbox, OutboxComponent)
    assert isinstance(mqtt, edge.forward.mqtt.MqttComponent)
    return recorder, outbox, mqtt


async def test_events_arrive_decoded_in_order_with_birth_death_and_kpis(
    tmp_path: Path, broker: Broker
) -> None:
    config = make_config(
        tmp_path, line_toml(broker.port, sim_port=_free_port(), mqtt_extra="kpi_interval_s = 0.3\n")
    )
    received = Received()
    async with consumer(broker.port, "edge/T/L1/events", "edge/T/L1/status") as tail:
        await asyncio.wait_for(tail.connected.wait(), 5)
        async with LineService(config, components=COMPONENTS) as service:
            recorder, outbox, mqtt = _parts(service)
            await received.until(tail, lambda r: r.last_seq >= 40, 15, "40 events")
            statistics = mqtt.statistics()
            metrics = component_values(service.components)
        # Stopped cleanly: everything the outbox stored was sent before the disconnect
        # or waits in the outbox for the next start; none is lost either way.
        last_stored = outbox.outbox.last_seq(EVENTS_STREAM)
        waiting = outbox.outbox.depth(EVENTS_STREAM)
        await received.until(
            tail, lambda r: r.last_seq >= last_stored - waiting, 10, "the events sent before stop"
        )
        await received.until(
            tail, lambda r: any(s["status"] == "offline" for s in r.statuses), 5, "offline"
        )

    # A clean stop loses nothing: the machines drained their mailboxes while the
    # outbox still listened, so every event the line published was stored.
    assert outbox.outbox.last_seq(EVENTS_STREAM) == len(recorder.events)
    assert statistics.connected and statistics.protocol == "5"
    # What /metrics shows (edge.serve.metrics reads the components' metric_values()).
    assert metrics["mqtt_connected"] == 1.0
    assert metrics["mqtt_published_events"] == statistics.forwarder.events_sent > 0
    assert metrics["outbox_appended"] >= metrics["mqtt_published_events"]
    assert metrics["outbox_size_bytes"] > 0 and metrics["mqtt_reconnects"] == 0
    assert received.harmful() == [] and received.errors == []
    seqs = [e.seq for e in received.events]
    assert seqs == list(range(1, len(seqs) + 1)), "sequence numbers 1, 2, 3, ... in order"
    # Exactly the events the line published, in the order it published them.
    wire = [(e.type, e.data) for e in received.events]
    assert wire == plain(recorder.bodies())[: len(wire)]
    assert {"PiecesCounted", "StateChanged"} <= {t for t, _ in wire}
    online = next(s for s in received.statuses if s["status"] == "online")
    assert online["edge_id"] == "edge-T-L1"
    assert online["epoch"] == outbox.outbox.epoch
    assert [m["id"] for m in online["machines"]] == ["M1", "M2"]
    offline = [s for s in received.statuses if s["status"] == "offline"]
    assert offline[-1]["reason"] == "stopped"
    # Live batches (the consumer was there before the line started) are not historical.
    assert not received.batches[0].batch.historical  # type: ignore[union-attr]

    # The retained KPI snapshots are there for a consumer that comes later.
    snapshots = {}
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe("edge/T/L1/machines/+/oee", qos=1)
        await client.subscribe("edge/T/L1/status", qos=1)
        retained_status = None
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.retain
                assert isinstance(message.payload, bytes)
                if message.topic.value.endswith("/status"):
                    retained_status = decode_status(message.payload)
                else:
                    doc = decode_kpi_snapshot(message.payload)
                    snapshots[doc["machine_id"]] = doc
                if len(snapshots) == 2 and retained_status is not None:
                    break
    assert retained_status is not None and retained_status["status"] == "offline"
    for machine in ("M1", "M2"):
        shift = snapshots[machine]["current_shift"]
        assert snapshots[machine]["edge_id"] == "edge-T-L1"
        assert shift["name"] == "All" and shift["total_count"] >= 0
        assert set(shift) >= {"availability", "performance", "quality", "oee", "good_count"}


async def test_broker_down_for_10_s_while_the_line_produces_loses_nothing(
    tmp_path: Path, broker: Broker
) -> None:
    config = make_config(tmp_path, line_toml(broker.port, sim_port=_free_port()))
    received = Received()
    tail = consumer(broker.port, session=True, client_id="mes-outage")
    async with tail:
        await asyncio.wait_for(tail.connected.wait(), 5)
        async with LineService(config, components=COMPONENTS) as service:
            recorder, outbox, mqtt = _parts(service)
            await received.until(tail, lambda r: r.last_seq >= 10, 15, "first events")
            before_outage = outbox.outbox.last_seq(EVENTS_STREAM)
            broker.stop()
            outage_started = time.monotonic()
            await wait_for(lambda: not mqtt.statistics().connected, 5, "the edge to notice")
            # The line keeps producing; the events wait in the outbox.
            await asyncio.sleep(10 - (time.monotonic() - outage_started))
            backlog = outbox.outbox.depth(EVENTS_STREAM)
            assert outbox.outbox.last_seq(EVENTS_STREAM) > before_outage + 20
            assert backlog > 20
            broker.start()
            await wait_for(lambda: mqtt.statistics().connected, 10, "the edge to reconnect")
            await received.until(
                tail,
                lambda r: r.last_seq >= outbox.outbox.last_seq(EVENTS_STREAM) - 5,
                20,
                "the backlog",
            )
            statistics = mqtt.statistics()
        last = outbox.outbox.last_seq(EVENTS_STREAM) - outbox.outbox.depth(EVENTS_STREAM)
        await received.until(tail, lambda r: r.last_seq >= last, 10, "the last events")

    assert received.harmful() == [], "no gap, no duplicate under a new batch id"
    seqs = [e.seq for e in received.events]
    assert seqs == list(range(1, len(seqs) + 1))
    wire = [(e.type, e.data) for e in received.events]
    assert wire == plain(recorder.bodies())[: len(wire)]
    # The backlog came back flagged as historical, after the reconnect.
    historical = [m.batch for m in received.batches if m.batch and m.batch.historical]
    assert historical, "replayed batches carry the historical flag"
    assert min(b.seq_first for b in historical) <= before_outage + 1 + backlog
    assert statistics.connects >= 2 and statistics.connection_failures >= 1


async def test_disk_cap_reached_while_the_broker_is_down_drops_oldest_and_reports_it(
    tmp_path: Path, broker: Broker
) -> None:
    # No PLC: the test publishes the events itself, so it knows exactly what was sent.
    config = make_config(
        tmp_path,
        line_toml(
            broker.port,
            extra="""
            [outbox]
            max_bytes = 8192
            policy = "drop-oldest"
            report_interval_s = 0.2
            """,
        ),
    )
    from actors.oee.events import PiecesCounted  # noqa: PLC0415

    def pieces(start: int, count: int) -> list[PiecesCounted]:
        return [
            PiecesCounted("M1", 1.7e9 + i, "total_count", i, None)
            for i in range(start, start + count)
        ]

    received = Received()
    tail = consumer(broker.port, session=True, client_id="mes-cap")
    async with tail:
        await asyncio.wait_for(tail.connected.wait(), 5)
        async with LineService(config, components=COMPONENTS) as service:
            _recorder, outbox, mqtt = _parts(service)
            await wait_for(lambda: mqtt.statistics().connected, 5, "connected")
            service.bus.publish(pieces(0, 10))
            await received.until(tail, lambda r: r.last_seq >= 10, 10, "the first 10")
            broker.stop()
            await wait_for(lambda: not mqtt.statistics().connected, 5, "the edge to notice")
            # ~90 bytes an event: 400 events are ~4 times the 8 KiB cap.
            for chunk in range(8):
                service.bus.publish(pieces(10 + 50 * chunk, 50))
                await asyncio.sleep(0.05)
            await outbox.writer.flush()
            await asyncio.sleep(0.3)  # past the report interval
            await outbox.writer.flush()
            stats = outbox.statistics()
            assert stats.dropped > 0 and stats.reports >= 1
            assert component_values(service.components)["outbox_dropped"] == stats.dropped
            assert stats.bytes <= 8192
            broker.start()
            await received.until(
                tail,
                lambda r: r.last_seq >= outbox.outbox.last_seq(EVENTS_STREAM),
                15,
                "everything kept",
            )

            # The reports are events too: appending them while the backlog is still
            # over the cap may drop a few more, announced by a later report.
            def reported(r: Received) -> int:
                return sum(e.data["count"] for e in r.events if e.type == "OutboxPolicyApplied")

            await received.until(
                tail,
                lambda r: reported(r) == outbox.statistics().dropped,
                15,
                "reports for every dropped event",
            )
            final = outbox.statistics()

    reports = [e for e in received.events if e.type == "OutboxPolicyApplied"]
    assert reports, "the policy report reached the MES"
    dropped = sum(r.data["count"] for r in reports)
    assert dropped == final.dropped >= stats.dropped
    assert {r.data["policy"] for r in reports} == {"drop-oldest"}
    # The consumer saw exactly the gaps the reports announced, nothing else missing.
    announced = {seq for r in reports for seq in range(r.data["seq_first"], r.data["seq_last"] + 1)}
    seqs = [e.seq for e in received.events]
    missing = set(range(1, seqs[-1] + 1)) - set(seqs)
    # (earlier reports inside a dropped range are kept: they are not missing)
    assert missing == announced - set(seqs)
    assert missing
    kept = [e.data["count"] for e in received.events if e.type == "PiecesCounted"]
    assert kept[:10] == list(range(10)), "what was delivered before the outage is intact"
    assert kept[-1] == 409, "drop-oldest keeps the newest"
    assert kept == sorted(kept)
    gap_findings = [f for m in received.batches for f in m.findings if f.kind == "gap"]
    assert sum(int(f.detail.split(": ")[1].split()[0]) for f in gap_findings) == len(missing)


@pytest.mark.parametrize("policy", ["reject-new"])
async def test_reject_new_keeps_the_oldest_and_reports_the_refusal(
    tmp_path: Path, broker: Broker, policy: str
) -> None:
    config = make_config(
        tmp_path,
        line_toml(
            broker.port,
            extra=f"""
            [outbox]
            max_bytes = 8192
            policy = "{policy}"
            report_interval_s = 0.2
            """,
        ),
    )
    from actors.oee.events import PiecesCounted  # noqa: PLC0415

    received = Received()
    async with consumer(broker.port, session=True, client_id="mes-reject") as tail:
        await asyncio.wait_for(tail.connected.wait(), 5)
        async with LineService(config, components=COMPONENTS) as service:
            recorder, outbox, mqtt = _parts(service)
            await wait_for(lambda: mqtt.statistics().connected, 5, "connected")
            broker.stop()
            await wait_for(lambda: not mqtt.statistics().connected, 5, "the edge to notice")
            for i in range(400):
                service.bus.publish([PiecesCounted("M1", 1.7e9 + i, "total_count", i, None)])
            await outbox.writer.flush()
            await asyncio.sleep(0.3)
            await outbox.writer.flush()
            stats = outbox.statistics()
            broker.start()
            await received.until(
                tail,
                lambda r: r.last_seq >= outbox.outbox.last_seq(EVENTS_STREAM),
                15,
                "everything kept",
            )
    assert stats.rejected > 0 and stats.dropped == 0
    assert received.harmful() == [], "refused events were never numbered: no gap"
    kept = [e.data["count"] for e in received.events if e.type == "PiecesCounted"]
    assert kept == list(range(len(kept))), "reject-new keeps the oldest"
    assert len(kept) + stats.rejected == 400
    reports = [e for e in received.events if e.type == "OutboxPolicyApplied"]
    assert sum(r.data["count"] for r in reports) == stats.rejected
    assert all(r.data["policy"] == "reject-new" for r in reports)
    assert any(isinstance(e, OutboxPolicyApplied) for e in recorder.events), "on the bus too"
