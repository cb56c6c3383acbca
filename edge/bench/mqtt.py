"""MQTT benchmarks against a local mosquitto started for the run (docs/performance.md).

- **drain**: a 1,000,000-event backlog in the outbox (as after a long broker
  outage) sent by the forwarder until the outbox is empty: rows read from
  ``state.db``, cut into batches of 500, batch plans recorded, published with
  QoS 1 and ``INFLIGHT`` batches in flight, rows deleted once PUBACKed, all at
  ``synchronous = FULL``. Each run drains a fresh copy of the same backlog file.

  Baseline: a raw aiomqtt publish of the same batches: the very payloads the
  forwarder sends (built beforehand from the same rows, the same encoding and
  sizes; the run checks both sides sent the same number of batches and bytes),
  to the same topic on the same broker, QoS 1, the same window of ``INFLIGHT``
  publishes kept in flight (a new one starts as soon as one is acknowledged).
  It includes the client's work and the broker's; it leaves out everything the
  outbox adds: reading the rows, building the batches, the plans and the
  deletes and their commits. Raw and drain runs alternate (A B, B A, A B) and
  the ratio is the median of the per-pair ratios, with its spread.
- **latency**: a PLC value change (the simulator's counter register moves) to
  the decoded event at an MQTT subscriber, through the whole line: Modbus poll,
  machine actor, bus, outbox commit, forwarder batch, broker. Bar: p99 <= 1 s.
  Baseline: a bare publish -> receive round trip through the same broker.

Needs the ``mosquitto`` binary (``make test-servers`` installs it as root);
without it the figures say so instead of failing.
"""

from __future__ import annotations

import asyncio
import collections
import getpass
import shutil
import socket
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from actors import loop as actor_loop
from actors.oee.events import PiecesCounted
from edge.bench import Figure
from edge.bench.interleave import Pairs, interleave_async
from edge.state.outbox import EVENTS_STREAM, Outbox

BACKLOG = 1_000_000
BATCH = 500
INFLIGHT = 4
DRAIN_ROUNDS = 3  # raw/drain pairs
DRAIN_RATIO_BAR = 1.5
DRAIN_TOPIC = "bench/events"
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


async def _batches_of(path: Path) -> list[bytes]:
    """The batches the forwarder sends for this backlog, encoded as it encodes them."""
    from edge.wire import BatchHeader, batch_id_for, encode_batch  # noqa: PLC0415

    async with Outbox(path) as outbox:
        rows = await outbox.read(EVENTS_STREAM, 0, BACKLOG + 1)
        epoch = outbox.epoch
    payloads = []
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        first, last = chunk[0].seq, chunk[-1].seq
        header = BatchHeader(
            "bench", epoch, batch_id_for(epoch, first, last), first, last, len(chunk), True, 0.0
        )
        payloads.append(encode_batch(header, [r.payload for r in chunk]))
    return payloads


@dataclass(frozen=True, slots=True)
class _Run:
    seconds: float
    batches: int
    payload_bytes: int
    purge_s: float = 0.0  # the drain: after the last PUBACK, until the delivered rows are deleted


def _client(port: int) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5, timeout=30)


async def _raw_publish(port: int, payloads: Sequence[bytes]) -> _Run:
    """The baseline: aiomqtt publishes of the payloads, QoS 1, INFLIGHT kept in flight."""
    async with _client(port) as client:
        window: collections.deque[asyncio.Future[None]] = collections.deque()
        start = time.perf_counter()
        for payload in payloads:
            if len(window) >= INFLIGHT:
                await window.popleft()
            window.append(asyncio.ensure_future(client.publish(DRAIN_TOPIC, payload, qos=1)))
        for published in window:
            await published
        seconds = time.perf_counter() - start
    return _Run(seconds, len(payloads), sum(len(p) for p in payloads))


def _fresh_copy(source: Path, path: Path) -> None:
    """``source`` (closed, so its WAL is normally checkpointed away) copied to ``path``."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{path}{suffix}")


async def _drain(backlog: Path, directory: Path, port: int) -> _Run:
    """The subject: the forwarder drains a fresh copy of the backlog until the outbox is empty."""
    from edge.forward.mqtt.forwarder import Forwarder  # noqa: PLC0415

    path = directory / "drain.db"
    _fresh_copy(backlog, path)
    sent = [0, 0]
    async with Outbox(path, synchronous="FULL") as outbox, _client(port) as client:
        forwarder = Forwarder(
            outbox,
            edge_id="bench",
            topic=DRAIN_TOPIC,
            batch_max_events=BATCH,
            inflight_batches=INFLIGHT,
        )

        async def publish(topic: str, payload: bytes) -> None:
            await client.publish(topic, payload, qos=1)
            sent[0] += 1
            sent[1] += len(payload)

        start = time.perf_counter()
        task = asyncio.ensure_future(forwarder.run(publish))
        try:
            while outbox.depth(EVENTS_STREAM) > 0:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            seconds = time.perf_counter() - start
            # The forwarder deletes the delivered rows once it has nothing to send.
            while outbox.delivered_rows(EVENTS_STREAM) > 0:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            purge_s = time.perf_counter() - start - seconds
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return _Run(seconds, sent[0], sent[1], purge_s)


async def _drain_pairs(binary: str, directory: Path) -> Pairs[_Run, _Run]:
    backlog = directory / "backlog.db"
    await _fill(backlog, BACKLOG)
    payloads = await _batches_of(backlog)
    with _broker(binary, directory) as port:
        pairs = await interleave_async(
            baseline=lambda: _raw_publish(port, payloads),
            subject=lambda: _drain(backlog, directory, port),
            rounds=DRAIN_ROUNDS,
        )
    for raw, drained in zip(pairs.baseline, pairs.subject, strict=True):
        # The baseline is only fair if it sent what the drain sent.
        if (raw.batches, raw.payload_bytes) != (drained.batches, drained.payload_bytes):
            raise RuntimeError(
                f"the drain sent {drained.batches} batches, {drained.payload_bytes} bytes; "
                f"the baseline {raw.batches} batches, {raw.payload_bytes} bytes"
            )
    return pairs


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

_MISSING = "mosquitto not installed (make test-servers installs it as root)"
_DRAIN_BAR = f"<= {DRAIN_RATIO_BAR:g} x raw"


async def _measure_drain(binary: str) -> tuple[Pairs[_Run, _Run], str]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-mqtt-") as tmp:
        pairs = await _drain_pairs(binary, Path(tmp))
    return pairs, actor_loop.loop_kind(asyncio.get_running_loop())


async def _measure_latency(binary: str) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-mqtt-") as tmp:
        return await _latency(binary, Path(tmp))


def _drain_figure(pairs: Pairs[_Run, _Run], loop_kind: str) -> Figure:
    ratio = pairs.ratio(lambda r: r.seconds)
    ratios = ", ".join(f"{r:.2f}" for r in ratio.ratios)
    drained = pairs.subject_median(lambda r: r.seconds)
    raw = pairs.baseline_median(lambda r: r.seconds)
    first = pairs.subject[0]
    return Figure(
        name=DRAIN_NAME,
        value=drained,
        unit="s",
        bar=_DRAIN_BAR,
        meets_bar=ratio.median <= DRAIN_RATIO_BAR,
        baseline_name="raw aiomqtt publish of the same batches",
        baseline_value=raw,
        ratio=ratio.median,
        ratio_low=ratio.low,
        ratio_high=ratio.high,
        ratio_spread_percent=ratio.spread_percent,
        note=(
            f"{BACKLOG / drained:,.0f} events/s vs raw {BACKLOG / raw:,.0f} events/s; ratio of "
            f"{len(ratio.ratios)} interleaved pairs ({ratios}); "
            f"{first.batches} batches of {BATCH} events, {first.payload_bytes / 1e6:.1f} MB on "
            f"both sides, {INFLIGHT} in flight, QoS 1, FULL; the delivered rows deleted "
            f"{pairs.subject_median(lambda r: r.purge_s):.2f} s after, with nothing left to send; "
            f"{loop_kind}"
        ),
    )


def _latency_figure(latencies: list[float], trips: list[float]) -> Figure:
    p99 = _p99(latencies)
    trip_p99 = _p99(trips)
    return Figure(
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
    )


def run_drain() -> list[Figure]:
    """``edge bench mqtt-drain``: the backlog drain alone."""
    binary = _mosquitto()
    if binary is None:
        return [
            Figure(name=DRAIN_NAME, value=float("nan"), unit="s", bar=_DRAIN_BAR, note=_MISSING)
        ]
    return [_drain_figure(*actor_loop.run(_measure_drain(binary)))]


def run() -> list[Figure]:
    binary = _mosquitto()
    if binary is None:
        return [
            *run_drain(),
            Figure(name=LATENCY_NAME, value=float("nan"), unit="s", bar="<= 1 s", note=_MISSING),
        ]
    return [*run_drain(), _latency_figure(*actor_loop.run(_measure_latency(binary)))]
