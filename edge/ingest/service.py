"""``edge ingest``: every line's event batches from MQTT into PostgreSQL, exactly once.

::

    broker ─$share/<group>/<prefix>/+/+/events─► IngestService ─► decode ─► StoreWriter ─► DB
       (persistent session, QoS 1)     pipeline of --inflight messages        │ commit
              ◄──────── PUBACK, in arrival order, only after the commit ──────┘

- **Scaling out.** Every worker joins the same shared subscription; the broker
  hands each message to one of them. Nothing of ours coordinates workers: the
  database serialises what must be serialised (per edge and epoch).
- **Exactly once.** A batch is committed in one transaction, deduplicated by
  its id and its sequence numbers (:mod:`edge.ingest.writer`), and only then
  acknowledged. A worker killed between commit and PUBACK gets the message
  again (its session is kept) and the second write is a no-op; killed before
  the commit, the transaction never happened.
- **Bad input.** A message that is not a valid batch, or whose data the
  database refuses, is stored in ``plant.dead_letters`` with the reason and
  acknowledged; the worker goes on.
- **Outages.** Broker or database away: the worker retries with a capped
  backoff, logging the outage once and the recovery once. A batch whose
  database write failed is retried, never acknowledged unwritten.

Lifecycle: ``async with IngestService(settings) as service: await service.wait()``;
:meth:`IngestService.stop` (SIGTERM) finishes and acknowledges the batches in
flight, then disconnects, keeping the session for the next start.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
import socket
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiomqtt
import asyncpg
from aiohttp import web

from edge.forward.mqtt.connection import ClientSettings, describe
from edge.ingest.decode import decode_message, peek
from edge.ingest.errors import MalformedBatch, StoreError, StoreUnavailableError
from edge.ingest.metrics import IngestMetrics
from edge.ingest.mqtt import acknowledge, check_manual_ack_support, ingest_client, share_filter
from edge.ingest.schema import apply_migrations
from edge.ingest.writer import RefusedBatch, StoreWriter
from edge.logs import OutageLog
from edge.serve.web.server import ServerLimits, WebServer, new_app

__all__ = ["IngestService", "IngestSettings", "IngestState", "default_client_id"]

log = logging.getLogger("edge.ingest")

_GAPS_QUERY = """
SELECT explanation IS NOT NULL AS explained, count(*) AS gaps,
       coalesce(sum(missing), 0)::bigint AS events
FROM plant.seq_gap_report
WHERE detected_at < now() - make_interval(secs => $1)
GROUP BY 1
"""


def default_client_id() -> str:
    return f"edge-ingest-{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class IngestSettings:
    dsn: str
    broker: ClientSettings
    client_id: str
    prefix: str = "edge"
    group: str = "ingest"
    # A worker that never comes back holds its queued messages this long (then the
    # broker drops them): long enough to cover a repair, see docs/central-store.md.
    session_expiry_s: int = 7 * 24 * 3600
    inflight: int = 16  # MQTT Receive Maximum: batches in the pipeline
    pool_size: int = 4
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9713  # None: no HTTP endpoint; 0: a free port
    backoff_initial_s: float = 0.2
    # Reconnect quickly: after a broker restart the workers must resubscribe before the
    # edges publish again (mosquitto 2.0 does not restore shared subscriptions).
    backoff_max_s: float = 1.0
    gap_grace_s: float = 30.0  # a hole younger than this is most likely a batch in flight
    gauge_refresh_s: float = 5.0

    @property
    def topic_filter(self) -> str:
        return share_filter(self.group, self.prefix)


class IngestState(enum.Enum):
    UNOPENED = "unopened"
    STARTING = "starting"  # waiting for the database / the broker
    RUNNING = "running"
    STOPPING = "stopping"
    CLOSED = "closed"


@dataclass(slots=True)
class _InFlight:
    message: aiomqtt.Message
    task: asyncio.Task[None]


class _Backoff:
    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.next_s = initial_s

    def reset(self) -> None:
        self.next_s = self.initial_s

    def take(self) -> float:
        delay = self.next_s * (0.5 + random.random() / 2)
        self.next_s = min(self.next_s * 2, self.max_s)
        return delay


class IngestService:
    """One ingest worker."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.metrics = IngestMetrics()
        self.state = IngestState.UNOPENED
        self.migrations_applied = 0
        self.subscribed = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._writer: StoreWriter | None = None
        self._http: WebServer | None = None
        self._main: asyncio.Task[None] | None = None
        self._gauges: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._db_outage = OutageLog(log, "database", worker=settings.client_id)
        self._mqtt_outage = OutageLog(log, "MQTT broker", worker=settings.client_id)
        self.stored_batches = 0
        self.stored_events = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not IngestState.UNOPENED:
            raise StoreError(f"an IngestService runs once (state {self.state.value})")
        check_manual_ack_support()
        self.state = IngestState.STARTING
        s = self.settings
        if s.metrics_port is not None:
            app = new_app("ingest-metrics", ServerLimits())
            app.router.add_get("/metrics", self._serve_metrics)
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
            self._http = WebServer(app, s.metrics_host, s.metrics_port, name="ingest-metrics")
            await self._http.__aenter__()
        self._main = asyncio.ensure_future(self._run())
        self._main.set_name("edge-ingest")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return self._http.address if self._http is not None else None

    @property
    def ready(self) -> bool:
        return self.state is IngestState.RUNNING and self.subscribed.is_set()

    async def wait(self) -> None:
        """Until the worker stops; raises what made it fail (a schema it cannot use)."""
        if self._main is not None:
            await asyncio.shield(self._main)

    async def stop(self, timeout_s: float = 20.0) -> None:
        """Finish and acknowledge what is in flight, disconnect (the session stays), close."""
        if self.state is IngestState.CLOSED:
            return
        self.state = IngestState.STOPPING
        self._stopping.set()
        main, self._main = self._main, None
        if main is not None:
            try:
                await asyncio.wait_for(asyncio.shield(main), timeout_s)
            except TimeoutError:
                main.cancel()
            except BaseException:
                pass
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await main
        await self._close_resources()
        self.state = IngestState.CLOSED

    async def _close_resources(self) -> None:
        gauges, self._gauges = self._gauges, None
        if gauges is not None:
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 10)
        http, self._http = self._http, None
        if http is not None:
            await http.__aexit__(None, None, None)

    # ------------------------------------------------------------------ the worker

    async def _run(self) -> None:
        try:
            if not await self._open_database():
                return
            self._gauges = asyncio.ensure_future(self._refresh_gauges())
            self.state = IngestState.RUNNING
            await self._mqtt_loop()
        except StoreError as exc:
            log.error("edge ingest cannot run: %s", exc)
            raise

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; True when asked to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _open_database(self) -> bool:
        """Connect and migrate, retrying while the server is unreachable; False: stopped."""
        s = self.settings
        backoff = _Backoff(s.backoff_initial_s, s.backoff_max_s)
        while True:
            try:
                conn = await asyncpg.connect(s.dsn, timeout=10)
                try:
                    applied = await apply_migrations(conn)
                finally:
                    await conn.close()
                self._pool = await asyncpg.create_pool(
                    s.dsn, min_size=1, max_size=s.pool_size, timeout=10
                )
            except StoreError:
                raise  # the schema itself: retrying will not help
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.metrics.database_up.set(0)
                self._db_outage.failed(describe(exc))
                if await self._sleep_or_stop(backoff.take()):
                    return False
                continue
            self.metrics.database_up.set(1)
            self._db_outage.recovered()
            self.migrations_applied = len(applied)
            self._writer = StoreWriter(self._pool, s.client_id)
            log.info(
                "database ready",
                extra={"migrations_applied": len(applied), "worker": s.client_id},
            )
            return True

    async def _mqtt_loop(self) -> None:
        s = self.settings
        backoff = _Backoff(s.backoff_initial_s, s.backoff_max_s)
        while not self._stopping.is_set():
            client = ingest_client(
                s.broker,
                client_id=s.client_id,
                session_expiry_s=s.session_expiry_s,
                receive_maximum=s.inflight,
            )
            try:
                async with client:
                    await client.subscribe(s.topic_filter, qos=1)
                    self._mqtt_outage.recovered()
                    self.metrics.mqtt_connected.set(1)
                    self.subscribed.set()
                    backoff.reset()
                    log.info(
                        "subscribed",
                        extra={"filter": s.topic_filter, "worker": s.client_id},
                    )
                    await self._consume(client)
            except aiomqtt.MqttError as exc:
                self._mqtt_outage.failed(describe(exc))
            finally:
                self.subscribed.clear()
                self.metrics.mqtt_connected.set(0)
                self.metrics.inflight.set(0)
            if not self._stopping.is_set():
                await self._sleep_or_stop(backoff.take())

    async def _consume(self, client: aiomqtt.Client) -> None:
        """Receive, process up to ``inflight`` messages at once, ack in arrival order.

        Returns when asked to stop (after acknowledging what was in flight);
        raises MqttError when the connection breaks (unacknowledged messages
        are then redelivered by the broker, on this worker's next connection).
        """
        pending: collections.deque[_InFlight] = collections.deque()
        arrived = asyncio.Event()
        messages = aiter(client.messages)
        stop = asyncio.ensure_future(self._stopping.wait())
        acker = asyncio.ensure_future(self._ack_in_order(client, pending, arrived))
        receive: asyncio.Future[aiomqtt.Message] | None = None
        try:
            while True:
                receive = asyncio.ensure_future(anext(messages))
                await asyncio.wait({receive, stop, acker}, return_when=asyncio.FIRST_COMPLETED)
                if acker.done():
                    acker.result()  # the connection broke while acknowledging: raise it
                if not receive.done():
                    break  # stopping
                message = receive.result()
                receive = None
                task = asyncio.ensure_future(self._process(message))
                pending.append(_InFlight(message, task))
                self.metrics.inflight.set(len(pending))
                arrived.set()
            # Stopping: the batches in flight commit, then they are acknowledged.
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker
            while pending:
                head = pending[0]
                await asyncio.wait({head.task})
                if not head.task.cancelled():
                    acknowledge(client, head.message)
                pending.popleft()
        finally:
            stop.cancel()
            if receive is not None and not receive.done():
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await receive
            acker.cancel()
            for item in pending:
                item.task.cancel()
            await asyncio.gather(acker, *(i.task for i in pending), return_exceptions=True)
            self.metrics.inflight.set(0)

    async def _ack_in_order(
        self,
        client: aiomqtt.Client,
        pending: collections.deque[_InFlight],
        arrived: asyncio.Event,
    ) -> None:
        while True:
            if not pending:
                arrived.clear()
                await arrived.wait()
                continue
            head = pending[0]
            # wait(), not await: cancelling the acker must not cancel the batch's write.
            await asyncio.wait({head.task})
            head.task.result()  # a failure here is a bug: never acknowledge what was not kept
            acknowledge(client, head.message)
            pending.popleft()
            self.metrics.inflight.set(len(pending))

    async def _process(self, message: aiomqtt.Message) -> None:
        """Store one message (or its dead letter); retries while the database is away."""
        started = time.perf_counter()
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        payload = bytes(payload)
        writer = self._writer
        assert writer is not None
        backoff = _Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        try:
            decoded = decode_message(topic, payload)
        except MalformedBatch as exc:
            await self._dead_letter(
                writer,
                topic=topic,
                reason=str(exc),
                payload=payload,
                cause="malformed",
                backoff=backoff,
            )
            return
        except Exception as exc:  # bytes from outside must never stop the worker
            reason = f"undecodable ({type(exc).__name__}: {exc})"
            await self._dead_letter(
                writer,
                topic=topic,
                reason=reason,
                payload=payload,
                cause="malformed",
                backoff=backoff,
            )
            return
        while True:
            try:
                outcome = await writer.write(decoded)
            except RefusedBatch as exc:
                await self._dead_letter(
                    writer,
                    topic=topic,
                    reason=str(exc),
                    payload=payload,
                    cause="refused",
                    backoff=backoff,
                )
                return
            except StoreUnavailableError as exc:
                self._store_failed(exc)
                await asyncio.sleep(backoff.take())
                continue
            break
        self._store_recovered()
        m = self.metrics
        if outcome.duplicate:
            m.batches.labels("duplicate").inc()
        else:
            m.batches.labels("stored").inc()
            m.events.inc(outcome.new_events)
            m.duplicate_events.inc(outcome.skipped_events)
            self.stored_batches += 1
            self.stored_events += outcome.new_events
        m.lag.set(max(0.0, time.time() - decoded.batch.sent_at))
        m.batch_seconds.observe(time.perf_counter() - started)

    async def _dead_letter(
        self,
        writer: StoreWriter,
        *,
        topic: str,
        reason: str,
        payload: bytes,
        cause: str,
        backoff: _Backoff,
    ) -> None:
        header = peek(payload)
        while True:
            try:
                await writer.dead_letter(topic, reason, payload, header)
            except StoreUnavailableError as exc:
                self._store_failed(exc)
                await asyncio.sleep(backoff.take())
                continue
            break
        self._store_recovered()
        self.metrics.batches.labels("dead_letter").inc()
        self.metrics.dead_letters.labels(cause).inc()
        log.warning(
            "message stored as a dead letter: %s",
            reason,
            extra={"topic": topic, "bytes": len(payload), **header},
        )

    def _store_failed(self, exc: BaseException) -> None:
        self.metrics.store_errors.inc()
        self.metrics.database_up.set(0)
        self._db_outage.failed(exc)

    def _store_recovered(self) -> None:
        if self._db_outage.recovered():
            self.metrics.database_up.set(1)

    async def _refresh_gauges(self) -> None:
        s = self.settings
        while True:
            pool = self._pool
            if pool is not None:
                try:
                    rows = await pool.fetch(_GAPS_QUERY, s.gap_grace_s)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.debug("gap gauges not refreshed: %s", exc)
                else:
                    found = {bool(r["explained"]): r for r in rows}
                    for explained in (True, False):
                        row = found.get(explained)
                        label = "true" if explained else "false"
                        self.metrics.seq_gaps.labels(label).set(row["gaps"] if row else 0)
                        self.metrics.seq_gap_events.labels(label).set(row["events"] if row else 0)
            await asyncio.sleep(s.gauge_refresh_s)

    # ------------------------------------------------------------------ HTTP

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST  # noqa: PLC0415

        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        alive = self.state in (IngestState.STARTING, IngestState.RUNNING)
        return web.Response(status=200 if alive else 503, text=f"{self.state.value}\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.Response(
            status=200 if self.ready else 503,
            text=f"state {self.state.value}, subscribed {self.subscribed.is_set()}\n",
        )
