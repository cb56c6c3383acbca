"""MQTT benchmarks against a local mosquitto started for the run (docs/performance.md).

- **drain**: a 1,000,000-event backlog in the outbox (as after a long broker
  outage) sent by the forwarder, in batches with PUBACK-gated deletes, until the
  outbox is empty. Bar: <= 30 s. Baseline: raw mosquitto publish of the same
  batches (aiomqtt, QoS 1, the same in-flight window), no outbox.
- **latency**: a PLC value change (the simulator's counter register moves) to
  the decoded event at an MQTT subscriber, through the whole line: Modbus poll,
  machine actor, bus, outbox commit, forwarder batch, broker. Bar: p99 <= 1 s.
  Baseline: a bare publish -> receive round trip through the same broker.

Needs the ``mosquitto`` binary (``make test-servers`` installs it as root);
without it the figures say so instead of failing.
"""

from __future__ import annotations

import asyncio
import getpass
import shutil
import socket
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiomqtt

from actors import loop as actor_loop
from actors.oee.events import PiecesCounted
from edge.bench import Figure
from edge.state.outbox import EVENTS_STREAM, Outbox

BACKLOG = 1_000_000
BATCH = 500
INFLIGHT = 4
LATENCY_SAMPLES = 60

DRAIN_NAME = "mqtt: drain a 1,000,000-event outbox backlog to a local broker"
LATENCY_NAME = "mqtt: PLC value change -> MQTT subscriber, p99"


def _mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _broker(binary: str, directory: Path) -> Iterator[int]:
    port = _free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
        "max_queued_messages 0\nlog_type error\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------------- drain


async def _fill(path: Path, events: int) -> None:
    from edge.wire import pack_event  # noqa: PLC0415

    async with Outbox(path, synchronous="NORMAL") as outbox:
        chunk = 20_000
        for start in range(0, events, chunk):
            entries = [
                (
                    EVENTS_STREAM,
                    *pack_event(PiecesCounted(f"M{i % 50:02d}", 1.7e9 + i, "total_count", 1, None)),
                    False,
                )
                for i in range(start, min(events, start + chunk))
            ]
            await outbox.append_entries(entries)


async def _drain_s(path: Path, port: int) -> float:
    from edge.forward.mqtt.forwarder import Forwarder  # noqa: PLC0415

    async with (
        Outbox(path, synchronous="FULL") as outbox,
        aiomqtt.Client(
            "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=30
        ) as client,
    ):
        forwarder = Forwarder(
            outbox,
            edge_id="bench",
            topic="bench/events",
            batch_max_events=BATCH,
            inflight_batches=INFLIGHT,
        )

        async def publish(topic: str, payload: bytes) -> None:
            await client.publish(topic, payload, qos=1)

        start = time.perf_counter()
        task = asyncio.ensure_future(forwarder.run(publish))
        try:
            while outbox.depth(EVENTS_STREAM) > 0:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            return time.perf_counter() - start
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _raw_publish_s(port: int, payload: bytes, messages: int) -> float:
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=30
    ) as client:
        start = time.perf_counter()
        for _ in range(0, messages, INFLIGHT):
            await asyncio.gather(
                *(client.publish("bench/raw", payload, qos=1) for _ in range(INFLIGHT))
            )
        return time.perf_counter() - start


def _sample_batch_payload() -> bytes:
    from edge.wire import BatchHeader, encode_batch, envelope, pack_event  # noqa: PLC0415

    envelopes = [
        envelope(i, *pack_event(PiecesCounted("M01", 1.7e9 + i, "total_count", 1, None)))
        for i in range(1, BATCH + 1)
    ]
    header = BatchHeader("bench", "e", "e-1-500", 1, BATCH, BATCH, False, 0.0)
    return encode_batch(header, envelopes)


async def _drain(binary: str, directory: Path) -> tuple[float, float]:
    path = directory / "drain.db"
    await _fill(path, BACKLOG)
    with _broker(binary, directory) as port:
        raw = await _raw_publish_s(port, _sample_batch_payload(), BACKLOG // BATCH)
        drained = await _drain_s(path, port)
    return drained, raw


# --------------------------------------------------------------------------- latency


def _line_config(directory: Path, sim_port: int, mqtt_port: int) -> Path:
    path = directory / "line.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [line]
            site = "B"
            area = "a"
            id = "L1"
            [calendar]
            timezone = "UTC"
            [[calendar.shifts]]
            name = "All"
            start = "00:00"
            end = "00:00"
            [[plcs]]
            id = "sim"
            protocol = "modbus"
            host = "127.0.0.1"
            port = {sim_port}
            poll_interval_s = 0.1
            [[machines]]
            id = "M1"
            ideal_cycle_s = 1.0
            plc = "sim"
            plc_map = "generic-modbus"
            [simulator]
            enabled = true
            port = {sim_port}
            micro_stops_per_hour = 0
            faults_per_hour = 0
            reject_ratio = 0
            jitter = 0
            [opcua]
            enabled = false
            [metrics]
            enabled = false
            [storage]
            state_dir = "state"
            [mqtt]
            enabled = true
            port = {mqtt_port}
            kpi_interval_s = 0
            backoff_initial_s = 0.1
            backoff_max_s = 0.5
            """
        ),
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def _subscriber(port: int, topic: str) -> AsyncIterator[asyncio.Queue[tuple[float, Any]]]:
    from edge.wire import decode_batch  # noqa: PLC0415

    queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                now = time.perf_counter()
                if isinstance(message.payload, bytes):
                    queue.put_nowait((now, decode_batch(message.payload)))

        task = asyncio.ensure_future(pump())
        try:
            yield queue
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _latencies(directory: Path, mqtt_port: int) -> list[float]:
    import edge.forward.mqtt  # noqa: PLC0415
    import edge.state.outbox  # noqa: PLC0415
    from edge.config import load_config  # noqa: PLC0415
    from edge.context import ComponentFactory  # noqa: PLC0415
    from edge.runtime.service import LineService  # noqa: PLC0415

    config = load_config(_line_config(directory, _free_port(), mqtt_port))
    latencies: list[float] = []
    async with _subscriber(mqtt_port, "edge/B/L1/events") as received:
        components: list[ComponentFactory] = [
            edge.forward.streams.component,
            edge.forward.mqtt.component,
        ]
        async with LineService(config, components=components) as service:
            simulator = service.simulator
            simulator.pause()
            await asyncio.sleep(1.0)  # the baseline reading is taken; connected
            while not received.empty():
                received.get_nowait()
            for _ in range(LATENCY_SAMPLES):
                before = simulator.ground_truth("M1").total
                while simulator.ground_truth("M1").total == before:
                    simulator.advance(0.25)  # the register moves now
                changed_at = time.perf_counter()
                while True:
                    arrived, batch = await asyncio.wait_for(received.get(), 10)
                    if any(
                        e.type == "PiecesCounted" and e.data.get("role") == "total_count"
                        for e in batch.events
                    ):
                        latencies.append(arrived - changed_at)
                        break
                # Spread the changes over the poll cycle, as real changes are.
                await asyncio.sleep(0.05 + (len(latencies) % 7) * 0.021)
    return latencies


async def _round_trips(port: int, count: int) -> list[float]:
    trips: list[float] = []
    async with (
        aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as sub,
        aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as pub,
    ):
        await sub.subscribe("bench/rtt", qos=1)
        messages = aiter(sub.messages)
        for _ in range(count):
            start = time.perf_counter()
            await pub.publish("bench/rtt", b"x" * 200, qos=1)
            await asyncio.wait_for(anext(messages), 10)
            trips.append(time.perf_counter() - start)
    return trips


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _latency(binary: str, directory: Path) -> tuple[list[float], list[float]]:
    with _broker(binary, directory) as port:
        trips = await _round_trips(port, 200)
        latencies = await _latencies(directory, port)
    return latencies, trips


# --------------------------------------------------------------------------- figures


async def _measure(binary: str) -> tuple[float, float, list[float], list[float], str]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-mqtt-") as tmp:
        directory = Path(tmp)
        drained, raw = await _drain(binary, directory)
        latencies, trips = await _latency(binary, directory)
    return drained, raw, latencies, trips, actor_loop.loop_kind(asyncio.get_running_loop())


def run() -> list[Figure]:
    binary = _mosquitto()
    if binary is None:
        note = "mosquitto not installed (make test-servers installs it as root)"
        return [
            Figure(name=DRAIN_NAME, value=float("nan"), unit="s", bar="<= 30 s", note=note),
            Figure(name=LATENCY_NAME, value=float("nan"), unit="s", bar="<= 1 s", note=note),
        ]
    drained, raw, latencies, trips, loop_kind = actor_loop.run(_measure(binary))
    p99 = _p99(latencies)
    trip_p99 = _p99(trips)
    return [
        Figure(
            name=DRAIN_NAME,
            value=drained,
            unit="s",
            bar="<= 30 s",
            meets_bar=drained <= 30.0,
            baseline_name="raw mosquitto publish of the same batches",
            baseline_value=raw,
            ratio=drained / raw,
            note=(
                f"{BACKLOG / drained:,.0f} events/s vs raw {BACKLOG / raw:,.0f} events/s; "
                f"{BATCH} events a batch, {INFLIGHT} in flight, QoS 1, FULL; {loop_kind}"
            ),
        ),
        Figure(
            name=LATENCY_NAME,
            value=p99,
            unit="s",
            bar="<= 1 s",
            meets_bar=p99 <= 1.0,
            baseline_name="bare publish->receive round trip p99",
            baseline_value=trip_p99,
            ratio=p99 / trip_p99 if trip_p99 > 0 else None,
            note=(
                f"median {statistics.median(latencies):.3f} s over {len(latencies)} changes; "
                "poll 100 ms, batch delay 200 ms"
            ),
        ),
    ]
