"""The MQTT component of the line service: one broker connection, owned and rebuilt here.

Per connection (a fresh aiomqtt client each time, MQTT 5 unless the broker
only speaks 3.1.1 or the config says so):

1. connect with the last will ``offline`` (retained) on ``<base>/status``;
2. publish the birth ``online`` (retained) on ``<base>/status``;
3. run, until one of them fails: the forwarder (outbox → batches on
   ``<base>/events``), the command loop (``<base>/cmd/#`` → replies) and the
   KPI loop (retained snapshots on ``<base>/machines/<id>/oee``).

Any failure drops the connection and the loop reconnects; the outage is
logged once (with why the first attempt failed) and the recovery once (with
how long and how many attempts). The wait between attempts never lets the
line stay offline long after the broker is back:

- while the broker cannot be reached (connection refused, reset, timed out,
  the session dropped) the next attempt comes at most
  :data:`UNREACHABLE_RETRY_S` after the last one: such an attempt costs a TCP
  handshake, and a longer wait only adds to the time offline;
- when the broker answers but refuses (a negative CONNACK: credentials,
  authorisation, a client id taken) the wait grows exponentially with jitter up
  to ``[mqtt] backoff_max_s``, so a broker that says no is not hammered;
- a successful connect resets the backoff.

On stop the forwarder gets a moment to send what is committed, ``offline`` is
published (retained) and the client disconnects cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge import __version__
from edge.backoff import Backoff
from edge.context import LineContext
from edge.errors import EdgeError, StateStoreError
from edge.forward.mqtt.commands import CommandHandler, CommandPolicy, Reply
from edge.forward.mqtt.connection import (
    BrokerError,
    ClientSettings,
    ProtocolVersion,
    describe,
    is_protocol_refusal,
    new_client,
    unrouted_counter,
)
from edge.forward.mqtt.forwarder import Forwarder, ForwarderStatistics
from edge.forward.mqtt.topics import Topics, edge_id_of
from edge.forward.streams import find_outbox
from edge.logs import OutageLog
from edge.state.outbox import EVENTS_STREAM
from edge.wire import encode_kpi_snapshot, encode_status

__all__ = ["MqttComponent", "MqttState", "MqttStatistics", "component"]

log = logging.getLogger("edge.mqtt")

STOP_DRAIN_S = 2.0  # on stop, how long the forwarder may keep sending what is committed
# While the broker is unreachable, the longest wait between two connection attempts.
UNREACHABLE_RETRY_S = 1.0


class MqttState(enum.Enum):
    NEW = "new"
    DISABLED = "disabled"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class MqttStatistics:
    connected: bool
    protocol: str | None  # "5" | "3.1.1" while connected
    broker: str
    connects: int
    connection_failures: int
    backlog: int  # events in the outbox not yet acknowledged by the broker
    forwarder: ForwarderStatistics
    commands_accepted: int
    commands_rejected: int
    kpi_snapshots: int
    last_error: str | None


class _UntilTaken:
    """``require_subscriber``: a batch nobody took is published again until somebody does.

    The broker answers "no matching subscribers" and drops it. It is published
    again (same batch id) with the reconnect backoff; batches answered so
    while it waits queue behind it in order, and no new batch starts before they
    are taken (it would overtake them).
    """

    def __init__(
        self,
        publish: Callable[[str, bytes], Awaitable[None]],
        unrouted: Callable[[], int],
        component: MqttComponent,
    ) -> None:
        self._publish = publish
        self._unrouted = unrouted
        self._component = component
        self._retries = asyncio.Lock()  # FIFO: retried in the order their PUBACKs came
        self._waiting = 0
        self._clear = asyncio.Event()
        self._clear.set()

    async def __call__(self, topic: str, payload: bytes) -> None:
        await self._clear.wait()
        if await self._taken(topic, payload):
            return
        self._waiting += 1
        self._clear.clear()
        try:
            async with self._retries:
                config = self._component.config
                delay = config.backoff_initial_s
                while True:
                    self._component.unrouted_publishes += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, config.backoff_max_s)
                    if await self._taken(topic, payload):
                        return
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._clear.set()

    async def _taken(self, topic: str, payload: bytes) -> bool:
        # Counted per client: another batch answered "nobody" meanwhile also counts,
        # which at worst publishes this one once more (the MES drops it by batch id).
        before = self._unrouted()
        await self._publish(topic, payload)
        return self._unrouted() == before


class _Stopping(Exception):
    """Ends a connected session on purpose."""


class MqttComponent:
    """Forwarder, commands and KPI snapshots over one reconnecting MQTT connection."""

    def __init__(self, service: LineContext) -> None:
        self._service = service
        config = service.config
        self.config = config.mqtt
        self.topics = Topics.of(config)
        self.edge_id = edge_id_of(config)
        self.state = MqttState.NEW
        self._settings: ClientSettings | None = None
        self._protocol = (
            ProtocolVersion.V311 if self.config.protocol == "3.1.1" else ProtocolVersion.V5
        )
        self.forwarder: Forwarder | None = None
        self.commands = CommandHandler(
            topics=self.topics,
            policy=CommandPolicy.of(config),
            commands=lambda: service.commands,
            rebirth=self._rebirth,
            set_stop_reason=self._set_stop_reason,
            audit=service.bus.publish,
        )
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._connected = asyncio.Event()
        self._outage = OutageLog(
            log, f"MQTT broker {self.config.host}:{self.config.port}", edge_id=self.edge_id
        )
        self.connects = 0
        self.connection_failures = 0
        self.unrouted_publishes = 0  # require_subscriber: batches published again
        self.kpi_snapshots = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self.state is not MqttState.NEW:
            raise EdgeError(f"the MQTT component runs once (state {self.state.value})")
        if not self.config.enabled:
            self.state = MqttState.DISABLED
            return self
        outbox = find_outbox(self._service).outbox
        self._settings = ClientSettings.of(self.config)
        cfg = self.config
        self.forwarder = Forwarder(
            outbox,
            edge_id=self.edge_id,
            topic=self.topics.events,
            batch_max_events=cfg.batch_max_events,
            batch_max_delay_s=cfg.batch_max_delay_s,
            batch_max_bytes=cfg.batch_max_bytes,
            inflight_batches=cfg.inflight_batches,
            stream=EVENTS_STREAM,
        )
        self._task = asyncio.ensure_future(self._connection_loop())
        self._task.set_name("mqtt-connection")
        self.state = MqttState.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.state is not MqttState.RUNNING:
            self.state = MqttState.CLOSED
            return
        self.state = MqttState.CLOSED
        self.commands.close()
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_DRAIN_S + 3.0)
            except TimeoutError:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Until the component is connected (for tests and tools)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    # ------------------------------------------------------------------ the connection loop

    async def _connection_loop(self) -> None:
        cfg = self.config
        backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s)
        while not self._stopping.is_set():
            try:
                await self._session(backoff)
            except _Stopping:
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._connected.clear()
                self._client = None
                failure = _first_leaf(exc)
                if (
                    self._protocol is ProtocolVersion.V5
                    and cfg.protocol == "auto"
                    and (is_protocol_refusal(failure))
                ):
                    log.info("broker does not speak MQTT 5; using MQTT 3.1.1")
                    self._protocol = ProtocolVersion.V311
                    continue
                if isinstance(failure, StateStoreError) and self._stopping.is_set():
                    return
                self.connection_failures += 1
                self.last_error = describe(failure)
                if not isinstance(failure, aiomqtt.MqttError | BrokerError | OSError):
                    log.error(
                        "mqtt session failed unexpectedly; reconnecting",
                        exc_info=failure,
                        extra={"edge_id": self.edge_id},
                    )
                self._outage.failed(self.last_error)
                log.debug("mqtt connection attempt failed: %s", self.last_error)
                delay = backoff.next_delay()
                if not isinstance(failure, MqttConnectError):
                    delay = min(delay, UNREACHABLE_RETRY_S)
            else:
                delay = backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _session(self, backoff: Backoff) -> None:
        assert self._settings is not None and self.forwarder is not None
        will = aiomqtt.Will(
            self.topics.status,
            encode_status("offline", edge_id=self.edge_id, reason="connection lost"),
            qos=1,
            retain=True,
        )
        client = new_client(
            self._settings, identifier=self.edge_id, protocol=self._protocol, will=will
        )
        async with client:
            self._client = client
            self.connects += 1
            backoff.reset()
            if not self._outage.recovered():
                log.info(
                    "connected to the MQTT broker",
                    extra={
                        "broker": f"{self.config.host}:{self.config.port}",
                        "mqtt": self._protocol_name,
                        "edge_id": self.edge_id,
                    },
                )
            await self._publish_birth(client)
            if self.config.commands_enabled:
                await self._subscribe_commands(client)
            stop = asyncio.ensure_future(self._stopping.wait())
            forwarding = asyncio.ensure_future(self.forwarder.run(self._publisher(client)))
            # The message loop also notices a dead connection at once, commands or not.
            tasks = [stop, forwarding, asyncio.ensure_future(self._message_loop(client))]
            if self.config.kpi_interval_s > 0:
                tasks.append(asyncio.ensure_future(self._kpi_loop(client)))
            self._connected.set()
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    await self._drain(forwarding)
                    await self._publish_offline(client)
                else:
                    # The others run until they fail: the connection broke.
                    ended = next(iter(done))
                    raise ended.exception() or BrokerError("the MQTT session ended")
            finally:
                self._connected.clear()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._client = None
        if self._stopping.is_set():
            raise _Stopping

    async def _drain(self, forwarder_task: asyncio.Task[None]) -> None:
        """On stop: let the forwarder send what is committed, briefly."""
        assert self.forwarder is not None
        deadline = time.monotonic() + STOP_DRAIN_S
        while not self.forwarder.caught_up and not forwarder_task.done():
            if time.monotonic() > deadline:
                log.info(
                    "stopping with events still in the outbox; they are sent after the restart",
                    extra={"events": self.forwarder.outbox.depth(EVENTS_STREAM)},
                )
                return
            await asyncio.sleep(0.05)

    @property
    def _protocol_name(self) -> str:
        return "5" if self._protocol is ProtocolVersion.V5 else "3.1.1"

    def _publisher(self, client: aiomqtt.Client) -> Callable[[str, bytes], Awaitable[None]]:
        timeout = self.config.publish_timeout_s

        async def publish(topic: str, payload: bytes) -> None:
            try:
                await client.publish(topic, payload, qos=1, timeout=timeout)
            except aiomqtt.MqttError as exc:
                raise BrokerError(f"publish to {topic} failed: {describe(exc)}") from exc

        if not self.config.require_subscriber:
            return publish
        return _UntilTaken(publish, unrouted_counter(client), self)

    # ------------------------------------------------------------------ birth, death, KPIs

    async def _publish_birth(self, client: aiomqtt.Client) -> None:
        config = self._service.config
        outbox = find_outbox(self._service).outbox
        birth = encode_status(
            "online",
            edge_id=self.edge_id,
            epoch=outbox.epoch,
            version=__version__,
            site=config.line.site,
            area=config.line.area,
            line=config.line.id,
            name=config.line.name,
            machines=[{"id": m.id, "name": m.name} for m in config.machines],
            mqtt=self._protocol_name,
            ts=time.time(),
        )
        await client.publish(
            self.topics.status, birth, qos=1, retain=True, timeout=self.config.publish_timeout_s
        )

    async def _publish_offline(self, client: aiomqtt.Client) -> None:
        death = encode_status("offline", edge_id=self.edge_id, reason="stopped", ts=time.time())
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self.topics.status, death, qos=1, retain=True, timeout=2.0)

    async def _kpi_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._publish_kpis(client)
            await asyncio.sleep(self.config.kpi_interval_s)

    async def _publish_kpis(self, client: aiomqtt.Client) -> None:
        now = time.time()
        for status in await self._service.machine_statuses():
            payload = encode_kpi_snapshot(self.edge_id, now, status)
            await client.publish(
                self.topics.machine_oee(status.machine_id),
                payload,
                qos=1,
                retain=True,
                timeout=self.config.publish_timeout_s,
            )
            self.kpi_snapshots += 1

    async def _rebirth(self) -> None:
        client = self._client
        if client is None:
            raise BrokerError("not connected")
        await self._publish_birth(client)
        await self._publish_kpis(client)

    # ------------------------------------------------------------------ commands

    async def _message_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if self.topics.command_name(message.topic.value) is None:
                continue
            properties = message.properties
            response_topic = getattr(properties, "ResponseTopic", None) if properties else None
            correlation = getattr(properties, "CorrelationData", None) if properties else None
            payload = message.payload if isinstance(message.payload, bytes) else b""
            reply = await self.commands.handle(
                message.topic.value,
                payload,
                retained=bool(message.retain),
                response_topic=response_topic if isinstance(response_topic, str) else None,
                correlation=correlation if isinstance(correlation, bytes) else None,
            )
            await self._send_reply(client, reply)

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        if self._protocol is ProtocolVersion.V5:
            # Retain As Published: a retained command keeps its flag on a live
            # subscription too, so it is recognised and never executed.
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            await client.subscribe(self.topics.commands, options=options)
        else:
            await client.subscribe(self.topics.commands, qos=1)

    async def _send_reply(self, client: aiomqtt.Client, reply: Reply) -> None:
        properties = None
        if reply.correlation is not None and self._protocol is ProtocolVersion.V5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = reply.correlation
        await client.publish(
            reply.topic,
            reply.payload,
            qos=1,
            properties=properties,
            timeout=self.config.publish_timeout_s,
        )

    async def _set_stop_reason(
        self, machine_id: str, reason: str, stop_id: int | None, ts: float | None
    ) -> None:
        """Without the order runtime, a stop reason goes straight to the machine actor."""
        from actors.machine import SetStopReason  # noqa: PLC0415

        await self._service.machine_ref(machine_id).ask(
            SetStopReason(reason, ts=ts, stop_id=stop_id), timeout=5.0
        )

    # ------------------------------------------------------------------ figures

    def statistics(self) -> MqttStatistics:
        forwarder = self.forwarder
        stats = (
            forwarder.statistics()
            if forwarder is not None
            else ForwarderStatistics(0, 0, 0, 0, 0, 0, None)
        )
        connected = self._connected.is_set()
        return MqttStatistics(
            connected=connected,
            protocol=self._protocol_name if connected else None,
            broker=f"{self.config.host}:{self.config.port}",
            connects=self.connects,
            connection_failures=self.connection_failures,
            backlog=forwarder.outbox.depth(EVENTS_STREAM) if forwarder is not None else 0,
            forwarder=stats,
            commands_accepted=self.commands.accepted,
            commands_rejected=self.commands.rejected,
            kpi_snapshots=self.kpi_snapshots,
            last_error=self.last_error,
        )

    def metric_values(self) -> dict[str, float | int | bool | None]:
        """For edge.serve.metrics (its MetricsSource protocol)."""
        if self.state is MqttState.DISABLED:
            return {}
        forwarder = self.forwarder
        return {
            "mqtt_connected": self._connected.is_set(),
            "mqtt_published_batches": forwarder.batches_sent if forwarder else 0,
            "mqtt_published_events": forwarder.events_sent if forwarder else 0,
            "mqtt_reconnects": max(self.connects - 1, 0),
            "mqtt_commands_accepted": self.commands.accepted,
            "mqtt_commands_rejected": self.commands.rejected,
        }

    def banner(self) -> list[str]:
        if self.state is not MqttState.RUNNING:
            return []
        cfg = self.config
        security = "TLS" if cfg.tls else "plain TCP"
        lines = [
            f"MQTT        {cfg.host}:{cfg.port} ({security}) as {self.edge_id}: events on "
            f"{self.topics.events}, status {self.topics.status}",
        ]
        extras = []
        if cfg.commands_enabled:
            extras.append(f"commands on {self.topics.commands}")
        if cfg.kpi_interval_s > 0:
            extras.append(
                f"KPIs every {cfg.kpi_interval_s:g} s on {self.topics.machine_oee('<machine>')}"
            )
        if extras:
            lines.append("            " + "; ".join(extras))
        return lines


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def component(service: LineContext) -> MqttComponent:
    """The LineService component factory (after edge.forward.streams.component)."""
    return MqttComponent(service)
