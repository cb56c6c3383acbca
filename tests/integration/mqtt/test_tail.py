"""``edge tail`` as a command: prints the events, reports a gap, exits 3 on a discontinuity."""

from __future__ import annotations

import asyncio
import sys

import aiomqtt

from actors.oee.events import PiecesCounted
from edge.wire import BatchHeader, batch_id_for, encode_batch, envelope, pack_event
from tests.integration.mqtt.broker import Broker, needs_mosquitto

pytestmark = needs_mosquitto


def batch(first: int, last: int) -> bytes:
    envelopes = [
        envelope(seq, *pack_event(PiecesCounted("M1", 1.7e9 + seq, "total_count", seq, None)))
        for seq in range(first, last + 1)
    ]
    header = BatchHeader(
        "edge-T-L1", "e1", batch_id_for("e1", first, last), first, last, len(envelopes), False, 1.0
    )
    return encode_batch(header, envelopes)


async def test_tail_prints_events_and_reports_a_gap(broker: Broker) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge.tail",
        "--port",
        str(broker.port),
        "--count",
        "5",
        "--timeout",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        seen = b""
        async with asyncio.timeout(15):
            while b"# connected" not in seen:
                seen += await proc.stderr.readline()
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for payload in (batch(1, 2), batch(1, 2), batch(5, 7)):  # a resend, then a gap
                await client.publish("edge/T/L1/events", payload, qos=1)
        raw_out, raw_err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out, err = raw_out.decode(), raw_err.decode()
    assert proc.returncode == 3, err
    lines = out.splitlines()
    assert "# batch e1-1-2 seq 1..2 (2 events)" in lines
    events = [line for line in lines if not line.startswith("#")]
    assert [line.split()[0] for line in events] == ["1", "2", "5", "6", "7"]
    assert "M1 PiecesCounted role=total_count count=5 order_id=-" in events[2]
    assert "# RESEND edge-T-L1 batch e1-1-2" in err
    assert "# GAP edge-T-L1 batch e1-5-7: expected seq 3, got 5: 2 events missing" in err
