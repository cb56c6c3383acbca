"""``[mqtt] require_subscriber``: a batch nobody subscribed to stays in the outbox.

mosquitto answers a publish no subscription matches with PUBACK reason code 0x10
"No matching subscribers" and drops the message. With ``require_subscriber``
the edge keeps such batches and sends them again (same batch ids) until a
subscriber takes them: after a broker restart that forgot the central store's
shared subscription, nothing is lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import edge.forward.mqtt
import edge.state.outbox
from edge.forward.streams import OutboxComponent
from edge.runtime.service import LineService
from edge.state.outbox import EVENTS_STREAM
from tests.integration.conftest import _free_port
from tests.integration.mqtt.broker import Broker, needs_mosquitto
from tests.integration.mqtt.helpers import Received, consumer, line_toml, make_config, wait_for

pytestmark = needs_mosquitto


async def test_batches_wait_for_a_subscriber_and_none_is_lost(
    tmp_path: Path, broker: Broker
) -> None:
    config = make_config(
        tmp_path,
        line_toml(broker.port, sim_port=_free_port(), mqtt_extra="require_subscriber = true\n"),
    )
    received = Received()
    async with LineService(
        config, components=[edge.forward.streams.component, edge.forward.mqtt.component]
    ) as svc:
        outbox = next(c for c in svc.components if isinstance(c, OutboxComponent)).outbox
        await wait_for(lambda: outbox.last_seq(EVENTS_STREAM) >= 20, 20, "20 events, no subscriber")
        await asyncio.sleep(0.5)  # forwarding attempts meanwhile: all answered "no subscribers"
        assert outbox.depth(EVENTS_STREAM) > 0, "kept: nobody took them"
        async with consumer(broker.port, session=True, client_id="late-mes") as tail:
            await asyncio.wait_for(tail.connected.wait(), 5)
            last = outbox.last_seq(EVENTS_STREAM)
            await received.until(tail, lambda r: r.last_seq >= last, 30, "the kept batches")
    assert received.harmful() == []
    seqs = [e.seq for e in received.events]
    assert seqs[:last] == list(range(1, last + 1)), "every event, from seq 1, once"
