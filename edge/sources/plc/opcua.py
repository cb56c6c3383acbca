"""OPC UA client source: one subscription per PLC connection, changed samples to a sink.

Every machine bound to the connection is followed through one asyncua
subscription (monitored items for every node of its plc_map, ``{machine}``
replaced by the machine id) with the configured sampling and publishing
intervals. The map's types, scale/offset and min..max apply as for Modbus.

What reaches the sink (:data:`~edge.sources.plc.delivery.SampleSink`):

- after every (re)connect: ``LinkChanged(up=True)`` for each machine, then
  every current value, read once in one request with its source timestamp;
- otherwise only values that changed since the last delivery, one batch per
  burst of notifications;
- once per outage: ``LinkChanged(up=False, ts=when the loss was noticed)``;
- a Bad status code, a value of the wrong type, NaN or a value outside the
  map's min..max: ``Sample(value=None, quality=BAD)``, logged once until it is
  good again; an Uncertain status code keeps the value with quality UNCERTAIN.

A sample's ``ts`` is the server's SourceTimestamp, else its ServerTimestamp,
else the time the value arrived. A value older than the one already delivered
for the same signal is dropped (counted as ``stale``).

Why it is built this way:

- asyncua calls the subscription handler from its publish loop; the handler
  only puts the notification into a bounded queue, and one task of ours
  decodes, filters and awaits the sink. When that queue overflows (the sink
  is too slow) the backlog is dropped and every value is read once again, so
  the latest values still arrive and counters lose nothing (the core does the
  delta from the last good reading, OEE.md §5).
- asyncua's own reconnect can hang, so it is off: on a lost link the client is
  closed (bounded by ``timeout_s``) and a new one is created after a jittered,
  capped backoff (:class:`~edge.sources.plc.link.Backoff`).
- a TCP connection can die silently; a watchdog reads the server's
  ``ServerStatus/CurrentTime`` every ``timeout_s / 2`` (at least one publishing
  interval; each read bounded by ``timeout_s``) and checks that the subscription
  published data or a keep-alive within one keep-alive period plus ``timeout_s``.

Library errors (``ua.UaError``, ``OSError``, timeouts) are translated here into
:class:`~edge.errors.PlcConnectionError` (the link) and
:class:`~edge.errors.PlcDataError` (a value); neither reaches the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError

from actors.messages import LinkChanged, Quality, Sample, Value
from edge.backoff import Backoff
from edge.config import OpcUaPlcConfig
from edge.config.plc_maps import DataType, NodeLocation, Protocol, SignalDef
from edge.errors import ConfigError, PlcConnectionError, PlcDataError, Problem
from edge.sources.plc.binding import MachineBinding, SourceLifecycle, checked_bindings
from edge.sources.plc.codec import Raw, to_engineering
from edge.sources.plc.delivery import ChangeFilter, Handover, SampleSink, SourceEvent
from edge.sources.plc.link import LinkTracker

__all__ = ["OpcUaSource", "OpcUaStatistics"]

_log = logging.getLogger("edge.plc.opcua")
_T = TypeVar("_T")

# Notifications waiting for the consumer before the backlog is dropped and re-read.
DEFAULT_QUEUE_SIZE: Final = 10_000
# Values of one item the server may queue between two publishes (sampling faster
# than publishing must not lose a short stop); more than this is not useful.
MAX_ITEM_QUEUE: Final = 100
_CURRENT_TIME = ua.NodeId(ua.Int32(ObjectIds.Server_ServerStatus_CurrentTime))
# Earlier timestamps mean "none" (OPC UA's null DateTime is 1601-01-01).
_NO_TIMESTAMP_BEFORE = 86_400.0
_UNKNOWN_NODE = frozenset({StatusCodes.BadNodeIdUnknown, StatusCodes.BadNodeIdInvalid})
_LIBRARY_ERRORS = (UaError, OSError, asyncio.TimeoutError, ConnectionError)


@dataclass(frozen=True, slots=True)
class OpcUaStatistics:
    plc_id: str
    connects: int  # connection attempts, failed ones included
    errors: int  # failed attempts and lost connections
    notifications: int  # data change notifications received
    batches: int  # batches the sink accepted
    data_errors: int  # values delivered as BAD (status, type, range)
    stale: int  # values older than the one already delivered, dropped
    overflows: int  # times the notification queue overflowed and values were re-read
    monitored_items: int  # items the server accepted on the current connection
    unknown_nodes: int  # nodes the server reported as unknown on the last connect
    link_up: bool
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class _Point:
    machine_id: str
    signal: SignalDef
    node: str  # the node id as text, with the machine substituted

    @property
    def key(self) -> tuple[str, str]:
        return self.machine_id, self.signal.name


@dataclass(frozen=True, slots=True)
class _Notification:
    node_id: ua.NodeId
    value: ua.DataValue
    received: float


@dataclass(frozen=True, slots=True)
class _Wakeup:
    """Tells the consumer to look at the lost/overflow flags."""


_WAKEUP: Final = _Wakeup()
_Item = _Notification | _Wakeup


def _plan(
    plc: OpcUaPlcConfig, bindings: Sequence[MachineBinding]
) -> tuple[list[ua.NodeId], dict[ua.NodeId, list[_Point]]]:
    problems: list[Problem] = []
    order: list[ua.NodeId] = []
    points: dict[ua.NodeId, list[_Point]] = {}
    for where, binding in checked_bindings(bindings, Protocol.OPCUA, "an OPC UA", problems):
        plc_map = binding.plc_map
        if binding.address_offset != 0:
            problems.append(
                Problem(
                    f"{where}.address_offset",
                    "only for Modbus; OPC UA nodes are told apart by {machine} in the node id",
                )
            )
        for signal in plc_map.signals:
            loc = signal.location
            if not isinstance(loc, NodeLocation):
                continue
            text = loc.node_id(binding.machine_id)
            try:
                node_id = ua.NodeId.from_string(text)
            except UaError:
                problems.append(
                    Problem(
                        f"{where}.plc_map.{signal.name}",
                        f"{text!r} is not an OPC UA node id "
                        "(like 'ns=2;s=Line1.Count' or 'i=2258')",
                    )
                )
                continue
            if node_id not in points:
                order.append(node_id)
                points[node_id] = []
            points[node_id].append(_Point(binding.machine_id, signal, text))
    if problems:
        raise ConfigError(f"plc {plc.id}", problems)
    return order, points


def _epoch(stamp: datetime | None) -> float | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    ts = stamp.timestamp()
    return ts if ts >= _NO_TIMESTAMP_BEFORE else None


def _timestamp(value: ua.DataValue, received: float) -> float:
    source = _epoch(value.SourceTimestamp)
    if source is not None:
        return source
    server = _epoch(value.ServerTimestamp)
    return server if server is not None else received


def _raw(signal: SignalDef, value: object) -> Raw:
    """The OPC UA value as the raw number the map's type promises."""
    data_type = signal.data_type
    if data_type is DataType.BOOL:
        if isinstance(value, bool):
            return value
    elif data_type.is_integer:
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = data_type.int_range
            if not low <= value <= high:
                raise PlcDataError(
                    f"{signal.name}: {value} is out of range for {data_type.value} ({low}..{high})"
                )
            return value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise PlcDataError(f"{signal.name}: expected {data_type.value}, got {value!r}")


def _status_problem(status: ua.StatusCode, point: _Point) -> str:
    name = status.name
    if status.value in _UNKNOWN_NODE:
        return f"{point.signal.name}: node {point.node!r} is unknown to the server ({name})"
    return f"{point.signal.name}: node {point.node!r} has status {name}"


class _Connection:
    """One client connection: asyncua's subscription handler and the loss flags.

    The handler methods run in asyncua's tasks; they only queue the
    notification (or raise a flag) and never wait. Being per connection, a late
    callback of an old client cannot touch the current one.
    """

    def __init__(
        self, queue_size: int, on_overflow: Callable[[], None], clock: Callable[[], float]
    ) -> None:
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self.lost: str | None = None
        self.overflowed = False
        self._on_overflow = on_overflow
        self._clock = clock

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        value = data.monitored_item.Value
        if value is None:
            return
        try:
            self.queue.put_nowait(_Notification(node.nodeid, value, self._clock()))
        except asyncio.QueueFull:
            if not self.overflowed:
                self.overflowed = True
                self._on_overflow()

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = status.Status
        if code is not None and not code.is_good():
            self.lose(f"subscription status {code.name}")

    async def connection_lost(self, exc: Exception) -> None:
        self.lose(f"connection lost: {str(exc) or type(exc).__name__}")

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        self.wake()

    def wake(self) -> None:
        # On a full queue the consumer is busy anyway and checks the flags next.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_WAKEUP)


class OpcUaSource(SourceLifecycle):
    """Follows one OPC UA server (a PLC) for every machine bound to it.

    Lifecycle: ``async with OpcUaSource(...)`` starts connecting in the
    background; leaving the block stops it and closes the connection. A source
    runs once. Raises ConfigError at construction when a binding cannot be
    followed (not an OPC UA map, a node id that does not parse, an
    ``address_offset``). ``unit_id`` of a binding is not used.
    """

    def __init__(
        self,
        plc: OpcUaPlcConfig,
        bindings: Sequence[MachineBinding],
        sink: SampleSink,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._plc = plc
        self._node_ids, self._points = _plan(plc, bindings)
        self._machine_ids = tuple(b.machine_id for b in bindings)
        self._rng = rng or random.Random()
        self._clock = clock
        self._queue_size = queue_size
        self._name = f"plc {plc.id} ({plc.endpoint})"
        self._client: Client | None = None
        self._connected = False  # the client's connect() completed (it has tasks to stop)
        self._link = LinkTracker(self._name, _log)
        self._backoff = Backoff(plc.backoff_initial_s, plc.backoff_max_s, rng=self._rng)
        self._filter = ChangeFilter()
        self._last_ts: dict[tuple[str, str], float] = {}  # newest delivered non-BAD value
        self._bad: set[tuple[str, str]] = set()
        self._unmonitored: set[ua.NodeId] = set()  # refused by the server on this connection
        self._handover = Handover(sink, self._name, _log, "retrying with a fresh read")
        self._resync = False  # every value must be read again (sink failed, queue overflowed)
        self._current: _Connection | None = None
        self._overflowing = False
        self._connects = 0
        self._errors = 0
        self._notifications = 0
        self._batches = 0
        self._data_errors = 0
        self._stale = 0
        self._overflows = 0
        self._monitored = 0
        self._unknown = 0
        # The watchdog: read CurrentTime this often; how long the subscription may be silent.
        self._probe_interval = max(plc.timeout_s / 2, plc.publishing_interval_s)
        self._keepalive_count = max(1, math.ceil(self._probe_interval / plc.publishing_interval_s))

    @property
    def plc_id(self) -> str:
        return self._plc.id

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Every node followed, as text, in subscription order."""
        return tuple(self._points[n][0].node for n in self._node_ids)

    def resend_all(self) -> None:
        """Deliver every value again, e.g. to a machine actor restarted from a snapshot."""
        self._filter.forget()
        self._resync = True
        if self._current is not None:
            self._current.wake()

    def statistics(self) -> OpcUaStatistics:
        return OpcUaStatistics(
            plc_id=self._plc.id,
            connects=self._connects,
            errors=self._errors,
            notifications=self._notifications,
            batches=self._batches,
            data_errors=self._data_errors,
            stale=self._stale,
            overflows=self._overflows,
            monitored_items=self._monitored,
            unknown_nodes=self._unknown,
            link_up=self._link.is_up,
            consecutive_failures=self._link.consecutive_failures,
        )

    async def _shutdown(self) -> None:
        await self._close_client()

    # ------------------------------------------------------------------ connection loop

    async def _run(self) -> None:
        while True:
            try:
                await self._connect_and_follow()
                reason = "the subscription ended"
            except PlcConnectionError as exc:
                reason = str(exc)
            ts = self._clock()
            self._errors += 1
            self._monitored = 0
            await self._close_client()
            if self._link.failed(ts, reason):
                await self._deliver(
                    [LinkChanged(m, up=False, ts=ts, detail=reason) for m in self._machine_ids]
                )
            await asyncio.sleep(self._backoff.next_delay())

    async def _connect_and_follow(self) -> None:
        self._connects += 1
        self._resync = False
        self._unmonitored = set()
        connection = _Connection(self._queue_size, self._on_overflow, self._clock)
        self._current = connection
        client = self._new_client()
        client.connection_lost_callback = connection.connection_lost
        self._client = client
        await self._call("connect", client.connect())
        self._connected = True
        # Not client.create_subscription(): that one hides the intervals the
        # server revised (the watchdog needs them) and lets asyncua re-create
        # the subscription behind this source's back.
        subscription = Subscription(
            client.uaclient.session, self._subscription_params(), connection
        )
        created = await self._call("create subscription", subscription.init())
        # Silent longer than one keep-alive period (as the server revised it) plus timeout_s: lost.
        keepalive_s = max(
            created.RevisedPublishingInterval / 1000.0, self._plc.publishing_interval_s
        ) * max(1, created.RevisedMaxKeepAliveCount)
        silence_limit = keepalive_s + self._plc.timeout_s
        nodes = [client.get_node(node_id) for node_id in self._node_ids]
        # Read before subscribing: the subscription's first notifications are
        # then never older than what the read delivers.
        values = await self._call("read current values", client.read_attributes(nodes))
        results = await self._call(
            "subscribe",
            subscription.subscribe_data_change(
                nodes,
                sampling_interval=ua.Double(self._plc.sampling_interval_s * 1000.0),
                queuesize=self._item_queue_size(),
            ),
        )
        if len(values) != len(nodes) or len(results) != len(nodes):
            raise PlcConnectionError(
                f"the server answered {len(values)} reads and {len(results)} monitored items "
                f"for {len(nodes)} nodes"
            )
        ts = self._clock()
        batch: list[SourceEvent] = []
        if self._link.succeeded(ts):
            self._filter.forget()
            self._last_ts.clear()
            batch.extend(LinkChanged(m, up=True, ts=ts) for m in self._machine_ids)
        self._backoff.reset()
        self._collect_read(values, ts, batch)
        self._collect_subscribed(results, ts, batch)
        await self._deliver(batch)
        watchdog = asyncio.create_task(
            self._watch(client, subscription, connection, silence_limit),
            name=f"opcua-watchdog-{self._plc.id}",
        )
        try:
            await self._follow(client, connection)
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    def _new_client(self) -> Client:
        plc = self._plc
        # auto_reconnect stays off: its reconnect can hang; this source recreates
        # the client instead. asyncua's supervisor still reports a closed socket
        # at once; its own probe is slowed down, since _watch probes already.
        client = Client(plc.endpoint, timeout=plc.timeout_s, watchdog_intervall=10 * plc.timeout_s)
        client.name = client.description = f"edge line controller, plc {plc.id}"
        # A session we could not close should not linger on the PLC for an hour.
        client.session_timeout = int(max(60.0, 10 * plc.timeout_s) * 1000)
        if plc.username is not None:
            client.set_user(plc.username)
        if plc.password is not None:
            client.set_password(plc.password.reveal())
        return client

    def _subscription_params(self) -> ua.CreateSubscriptionParameters:
        interval_ms = self._plc.publishing_interval_s * 1000.0
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = interval_ms
        params.RequestedMaxKeepAliveCount = self._keepalive_count
        # The server drops the subscription after this many silent intervals
        # (at least 3 keep-alives by the spec); a minute survives a slow client.
        params.RequestedLifetimeCount = max(
            3 * self._keepalive_count, math.ceil(60.0 / self._plc.publishing_interval_s)
        )
        params.MaxNotificationsPerPublish = 0  # no limit
        params.PublishingEnabled = True
        params.Priority = 0
        return params

    def _item_queue_size(self) -> int:
        ratio = self._plc.publishing_interval_s / self._plc.sampling_interval_s
        return min(MAX_ITEM_QUEUE, max(1, math.ceil(ratio)) + 1)

    async def _call(self, what: str, awaitable: Awaitable[_T]) -> _T:
        """One request to the server, bounded by timeout_s, library errors translated."""
        try:
            return await asyncio.wait_for(awaitable, self._plc.timeout_s)
        except _LIBRARY_ERRORS as exc:
            detail = str(exc) or type(exc).__name__
            raise PlcConnectionError(f"{what}: {detail}") from exc

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.connection_lost_callback = None
        connected, self._connected = self._connected, False
        if not connected:
            # A failed connect() leaves at most a socket behind, no tasks.
            client.disconnect_socket()
            return
        try:
            await asyncio.wait_for(client.disconnect(), self._plc.timeout_s)
        except asyncio.CancelledError:
            client.disconnect_socket()
            raise
        except Exception as exc:
            # A dead server does not answer CloseSession; drop the socket instead.
            _log.debug("%s: closing the client: %r", self._name, exc)
            client.disconnect_socket()

    # ------------------------------------------------------------------ watchdog

    def _on_overflow(self) -> None:
        self._overflows += 1
        if not self._overflowing:
            self._overflowing = True
            _log.warning(
                "%s: more than %d notifications waiting (the sample sink is slow): "
                "dropping them and reading every value again",
                self._name,
                self._queue_size,
            )

    async def _watch(
        self,
        client: Client,
        subscription: Subscription,
        connection: _Connection,
        silence_limit: float,
    ) -> None:
        current_time = client.get_node(_CURRENT_TIME)
        since = time.monotonic()
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self._call("reading the server's CurrentTime", current_time.read_value())
            except PlcConnectionError as exc:
                connection.lose(str(exc))
                return
            # asyncua stamps every publish response, keep-alives included.
            last = subscription.last_publish_at
            silent = time.monotonic() - (since if last is None else max(since, last))
            if silent > silence_limit:
                connection.lose(f"no data and no keep-alive for {silent:.1f} s")
                return

    # ------------------------------------------------------------------ notifications

    async def _follow(self, client: Client, connection: _Connection) -> None:
        """Deliver notifications until the link is lost (raises PlcConnectionError)."""
        queue = connection.queue
        while True:
            if self._resync:
                # Retry a failed sink even when nothing changes.
                try:
                    first = await asyncio.wait_for(queue.get(), self._probe_interval)
                except TimeoutError:
                    first = _WAKEUP
            else:
                first = await queue.get()
            items = [first]
            while not queue.empty():
                items.append(queue.get_nowait())
            ts = self._clock()
            batch: list[SourceEvent] = []
            if connection.overflowed:
                # The backlog has gaps: drop it and read everything instead.
                connection.overflowed = False
                self._resync = True
            else:
                for item in items:
                    if isinstance(item, _Notification):
                        self._notifications += 1
                        for point in self._points.get(item.node_id, ()):
                            self._collect(point, item.value, item.received, batch)
                if self._overflowing and queue.empty():
                    self._overflowing = False
                    _log.info("%s: keeping up with the notifications again", self._name)
            if connection.lost is not None:
                await self._deliver(batch)
                raise PlcConnectionError(connection.lost)
            if self._resync:
                self._resync = False
                nodes = [client.get_node(node_id) for node_id in self._node_ids]
                values = await self._call(
                    "reading every value again", client.read_attributes(nodes)
                )
                self._collect_read(values, ts, batch)
            await self._deliver(batch)

    def _collect_read(
        self, values: Sequence[ua.DataValue], ts: float, batch: list[SourceEvent]
    ) -> None:
        for node_id, value in zip(self._node_ids, values, strict=True):
            if node_id in self._unmonitored:
                continue  # stays BAD: a value read now would never be updated
            for point in self._points[node_id]:
                self._collect(point, value, ts, batch)

    def _collect_subscribed(
        self, results: Sequence[int | ua.StatusCode], ts: float, batch: list[SourceEvent]
    ) -> None:
        self._monitored = self._unknown = 0
        for node_id, result in zip(self._node_ids, results, strict=True):
            if not isinstance(result, ua.StatusCode):
                self._monitored += 1
                continue
            self._unmonitored.add(node_id)
            if result.value in _UNKNOWN_NODE:
                self._unknown += 1
            # Usually an unknown node, already BAD from the read; if the read was
            # fine, the value cannot be followed, which is just as bad.
            for point in self._points[node_id]:
                self._bad_value(point, _status_problem(result, point), ts, batch)

    def _collect(
        self, point: _Point, data: ua.DataValue, received: float, batch: list[SourceEvent]
    ) -> None:
        ts = _timestamp(data, received)
        status = data.StatusCode
        if status is not None and status.is_bad():
            self._bad_value(point, _status_problem(status, point), ts, batch)
            return
        variant = data.Value
        try:
            value = to_engineering(
                point.signal, _raw(point.signal, None if variant is None else variant.Value)
            )
        except PlcDataError as exc:
            self._bad_value(point, str(exc), ts, batch)
            return
        key = point.key
        last = self._last_ts.get(key)
        if last is not None and ts < last:
            self._stale += 1
            return
        self._last_ts[key] = ts
        if key in self._bad:
            self._bad.discard(key)
            _log.info("%s: machine %s: %s good again", self._name, key[0], key[1])
        quality = (
            Quality.UNCERTAIN if status is not None and status.is_uncertain() else Quality.GOOD
        )
        self._emit(point, value, quality, ts, batch)

    def _bad_value(self, point: _Point, problem: str, ts: float, batch: list[SourceEvent]) -> None:
        self._data_errors += 1
        key = point.key
        if key not in self._bad:
            self._bad.add(key)
            _log.warning("%s: machine %s: %s", self._name, key[0], problem)
        self._emit(point, None, Quality.BAD, ts, batch)

    def _emit(
        self, point: _Point, value: Value, quality: Quality, ts: float, batch: list[SourceEvent]
    ) -> None:
        if self._filter.changed(
            point.machine_id, point.signal.name, value, quality, point.signal.deadband
        ):
            batch.append(Sample(point.machine_id, point.signal.name, value, ts, quality))

    async def _deliver(self, batch: list[SourceEvent]) -> None:
        if not batch and not self._handover.has_pending:
            return
        if await self._handover.deliver(batch):
            self._batches += 1
            return
        # The values go again in full with the next read (there is no next poll
        # to repeat them otherwise).
        self._filter.forget()
        self._resync = True
