"""Modbus TCP source: one poll loop per PLC connection, changed samples to a sink.

Every machine bound to the connection (own ``unit_id`` and/or
``address_offset``) is read in the same loop with coalesced block reads
(:mod:`edge.sources.plc.blocks`), because pymodbus allows one outstanding request per
connection. Each connection has its own task and bounded timeouts, so a dead
PLC never delays another one.

What reaches the sink (:data:`~edge.sources.plc.delivery.SampleSink`):

- on the first successful poll and after every recovery:
  ``LinkChanged(up=True)`` for each machine, then every current value;
- otherwise only values that changed since the last delivery;
- once per outage: ``LinkChanged(up=False, ts=start of the failed poll)``;
- a value that cannot be decoded (NaN, outside the map's min..max, an
  exception response for its block): ``Sample(value=None, quality=BAD)``,
  logged once until it is good again.

Counter readings are delivered exactly as read; the core does the delta math
(OEE.md §5), so nothing is invented or dropped on reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, compress
from operator import ne
from typing import TYPE_CHECKING

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from actors.messages import LinkChanged, Quality, Sample, Value
from edge.backoff import Backoff
from edge.config.plc_maps import Area, ModbusLocation, Protocol, SignalDef
from edge.errors import ConfigError, PlcConnectionError, PlcDataError, Problem
from edge.histogram import POLL_LATENCY_BUCKETS, Histogram, HistogramSnapshot
from edge.sources.plc.binding import MachineBinding, SourceLifecycle, SourceState, checked_bindings
from edge.sources.plc.blocks import ReadBlock, ReadPlan, ReadPoint, plan_reads
from edge.sources.plc.codec import BlockDecoder, compile_decoder
from edge.sources.plc.delivery import Handover, SampleSink, SourceEvent
from edge.sources.plc.link import LinkTracker
from edge.sources.plc.responses import BLOCK_RESPONSES
from edge.sources.plc.schedule import PollGrid

if TYPE_CHECKING:
    # Annotations only: edge.config may import edge.config.plc_maps without a cycle.
    from edge.config import ModbusPlcConfig

__all__ = ["MachineBinding", "ModbusSource", "ModbusStatistics", "SourceState"]

_log = logging.getLogger("edge.plc.modbus")

MAX_UNIT_ID = 255
BlockData = list[int] | list[bool]


@dataclass(frozen=True, slots=True)
class ModbusStatistics:
    plc_id: str
    polls: int  # poll attempts, failed ones included
    requests: int  # block read requests sent
    errors: int  # failed polls (connection refused, timeout, broken link)
    data_errors: int  # exception responses and values that could not be decoded
    skipped_polls: int  # poll slots skipped because a poll overran its interval
    blocks_per_poll: int
    poll_latency: HistogramSnapshot  # every successful poll, all its block reads
    poll_lateness: HistogramSnapshot  # how late each poll started after its slot (jitter)
    link_up: bool
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class _Point:
    machine_id: str
    signal: str
    decode: BlockDecoder
    block: int
    index: int
    width: int  # words or bits read
    deadband: float  # engineering units a value must move to be delivered again


def _plan(
    plc: ModbusPlcConfig, bindings: Sequence[MachineBinding]
) -> tuple[ReadPlan, list[_Point]]:
    problems: list[Problem] = []
    read_points: list[ReadPoint] = []
    owners: list[tuple[str, SignalDef, BlockDecoder]] = []
    for where, binding in checked_bindings(bindings, Protocol.MODBUS, "a Modbus", problems):
        if not 0 <= binding.unit_id <= MAX_UNIT_ID:
            problems.append(
                Problem(f"{where}.unit_id", f"must be 0..{MAX_UNIT_ID}, got {binding.unit_id}")
            )
            continue
        for signal in binding.plc_map.signals:
            loc = signal.location
            if not isinstance(loc, ModbusLocation):
                continue
            address = loc.address + binding.address_offset
            if address < 0 or address + signal.width > 65536:
                problems.append(
                    Problem(
                        f"{where}.address_offset",
                        f"{signal.name} at {loc.address} + offset {binding.address_offset} "
                        "is outside 0..65535",
                    )
                )
                continue
            read_points.append(ReadPoint(binding.unit_id, loc.area, address, signal.width))
            owners.append((binding.machine_id, signal, compile_decoder(signal)))
    if problems:
        raise ConfigError(f"plc {plc.id}", problems)
    plan = plan_reads(read_points, plc.max_gap)
    points = [
        _Point(
            machine_id,
            signal.name,
            decode,
            placement.block,
            placement.index,
            signal.width,
            signal.deadband,
        )
        for (machine_id, signal, decode), placement in zip(owners, plan.placements, strict=True)
    ]
    return plan, points


def _block_index(
    plan: ReadPlan, points: Sequence[_Point]
) -> tuple[list[tuple[int, ...]], list[tuple[tuple[int, ...], ...]]]:
    """Per block: its points (in point order), and per word or bit of it the points
    that read it, so a changed word leads to the points to decode again."""
    members: list[list[int]] = [[] for _ in plan.blocks]
    covering: list[list[list[int]]] = [[[] for _ in range(b.count)] for b in plan.blocks]
    for number, point in enumerate(points):
        members[point.block].append(number)
        for index in range(point.index, point.index + point.width):
            covering[point.block][index].append(number)
    return (
        [tuple(m) for m in members],
        [tuple(tuple(c) for c in block) for block in covering],
    )


class ModbusSource(SourceLifecycle):
    """Polls one Modbus TCP PLC for every machine bound to it.

    Lifecycle: ``async with ModbusSource(...)`` starts the poll loop, leaving
    the block stops it and closes the connection. A source runs once.
    Raises ConfigError at construction when a binding cannot be read (wrong
    map protocol, unit id, addresses beyond 65535 after the offset).
    """

    def __init__(
        self,
        plc: ModbusPlcConfig,
        bindings: Sequence[MachineBinding],
        sink: SampleSink,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._plc = plc
        self._plan, self._points = _plan(plc, bindings)
        self._machine_ids = tuple(b.machine_id for b in bindings)
        self._rng = rng or random.Random()
        self._clock = clock
        self._name = f"plc {plc.id} ({plc.host}:{plc.port})"
        self._client: AsyncModbusTcpClient | None = None
        self._link = LinkTracker(self._name, _log)
        self._backoff = Backoff(plc.backoff_initial_s, plc.backoff_max_s, rng=self._rng)
        self._last: list[tuple[Value, Quality] | None] = [None] * len(self._points)
        # Per block: the words of the last poll whose values were all delivered.
        self._last_data: list[BlockData | None] = [None] * len(self._plan.blocks)
        self._block_points, self._covering = _block_index(self._plan, self._points)
        self._bad_in_block = [0] * len(self._plan.blocks)
        self._grid = PollGrid(plc.poll_interval_s, self._rng)
        self._poll_task: asyncio.Task[object] | None = None
        # Set once the first poll ended, read or failed (the service waits for it
        # before it starts the slow components).
        self.first_polled = asyncio.Event()
        self._handover = Handover(sink, self._name, _log, "retrying with the next poll")
        self._bad_points: set[int] = set()  # indices into _points, logged once
        self._bad_blocks: set[int] = set()
        self._polls = 0
        self._requests = 0
        self._errors = 0
        self._data_errors = 0
        self._latency_histogram = Histogram(POLL_LATENCY_BUCKETS)

    @property
    def plc_id(self) -> str:
        return self._plc.id

    @property
    def binding_ids(self) -> tuple[str, ...]:
        """The machines (and stations) whose points this source reads."""
        return self._machine_ids

    @property
    def blocks(self) -> tuple[ReadBlock, ...]:
        """The block reads of one poll, in order."""
        return self._plan.blocks

    def resend_all(self) -> None:
        """Deliver every value with the next poll, e.g. to a machine actor restarted
        from a snapshot (only changes are delivered otherwise)."""
        self._forget_delivered()

    def statistics(self) -> ModbusStatistics:
        return ModbusStatistics(
            plc_id=self._plc.id,
            polls=self._polls,
            requests=self._requests,
            errors=self._errors,
            data_errors=self._data_errors,
            skipped_polls=self._grid.skipped,
            blocks_per_poll=len(self._plan.blocks),
            poll_latency=self._latency_histogram.snapshot(),
            poll_lateness=self._grid.lateness.snapshot(),
            link_up=self._link.is_up,
            consecutive_failures=self._link.consecutive_failures,
        )

    async def _shutdown(self) -> None:
        self._close_client()

    def _raise_if_cancelling(self) -> None:
        # pymodbus turns a CancelledError inside a request into ModbusIOException, and
        # sometimes swallows it and returns the answer; give the cancellation back so
        # a stopping source really stops. (The poll task remembered, not current_task():
        # cheaper on the hot path.)
        task = self._poll_task
        if task is not None and task.cancelling():
            raise asyncio.CancelledError

    # ------------------------------------------------------------------ poll loop

    async def _run(self) -> None:
        self._poll_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        grid = self._grid
        grid.begin(loop.time())
        sleep = asyncio.sleep
        while True:
            self._raise_if_cancelling()
            delay = grid.due - loop.time()
            if delay > 0:
                await sleep(delay)
            grid.started(loop.time())
            ok = await self._poll()
            self.first_polled.set()
            now = loop.time()
            if ok:
                self._backoff.reset()
                grid.advance(now)
            else:
                grid.retry_at(now + self._backoff.next_delay())

    async def _poll(self) -> bool:
        self._polls += 1
        started = self._clock()
        t0 = time.perf_counter()
        try:
            client = self._client
            if client is None or not client.connected:
                client = await self._connected_client()
            results: list[BlockData | PlcDataError] = []
            for block in self._plan.blocks:
                results.append(await self._read(client, block))
        except PlcConnectionError as exc:
            self._errors += 1
            self._close_client()
            if self._link.failed(started, str(exc)):
                await self._deliver(
                    [
                        LinkChanged(m, up=False, ts=started, detail=str(exc))
                        for m in self._machine_ids
                    ]
                )
            return False
        self._latency_histogram.observe(time.perf_counter() - t0)
        ts = self._clock()
        batch: list[SourceEvent] = []
        if self._link.succeeded(ts):
            self._forget_delivered()
            batch.extend(LinkChanged(m, up=True, ts=ts) for m in self._machine_ids)
        self._collect(results, ts, batch)
        if batch or self._handover.has_pending:  # most polls of a line change nothing
            await self._deliver(batch)
        return True

    def _collect(
        self, results: Sequence[BlockData | PlcDataError], ts: float, batch: list[SourceEvent]
    ) -> None:
        # The hot path of a line (tens of thousands of tag values a second): a block
        # whose words are those of the last poll is one list comparison and nothing
        # else; of a changed block only the points over a changed word are decoded.
        last_data = self._last_data
        dirty: list[int] = []
        for number, data in enumerate(results):
            if isinstance(data, PlcDataError):
                if number not in self._bad_blocks:
                    self._bad_blocks.add(number)
                    _log.warning("%s: %s", self._name, data)
                last_data[number] = None
                dirty.extend(self._block_points[number])
                continue
            if number in self._bad_blocks:
                self._bad_blocks.discard(number)
                _log.info("%s: %s readable again", self._name, self._plan.blocks[number])
            previous = last_data[number]
            if previous is None or len(previous) != len(data):
                dirty.extend(self._block_points[number])
            elif data == previous:
                continue  # the same words decode to the same values: nothing to deliver
            else:
                dirty.extend(
                    set(
                        chain.from_iterable(
                            compress(self._covering[number], map(ne, data, previous))
                        )
                    )
                )
            last_data[number] = data
        if dirty:
            if len(results) > 1:
                dirty.sort()  # samples in the order of the points, whatever block they are in
            self._decode(dirty, results, ts, batch)
        # Every value that cannot be decoded counts once per poll, decoded again or not.
        self._data_errors += sum(self._bad_in_block)

    def _decode(
        self,
        dirty: Sequence[int],
        results: Sequence[BlockData | PlcDataError],
        ts: float,
        batch: list[SourceEvent],
    ) -> None:
        last = self._last
        bad = self._bad_points
        points = self._points
        good = Quality.GOOD
        touched_blocks: set[int] = set()
        for i in dirty:
            point = points[i]
            data = results[point.block]
            touched_blocks.add(point.block)
            value: Value
            quality = good
            if isinstance(data, PlcDataError):
                value, quality = None, Quality.BAD
                bad.add(i)
            else:
                try:
                    value = point.decode(data, point.index)
                except PlcDataError as exc:
                    value, quality = None, Quality.BAD
                    if i not in bad:
                        bad.add(i)
                        _log.warning("%s: machine %s: %s", self._name, point.machine_id, exc)
                else:
                    if bad and i in bad:
                        bad.discard(i)
                        _log.info(
                            "%s: machine %s: %s good again",
                            self._name,
                            point.machine_id,
                            point.signal,
                        )
            previous = last[i]
            # type() too: True == 1 == 1.0, but a changed type is a change.
            if (
                previous is not None
                and previous[1] is quality
                and type(previous[0]) is type(value)
                and (
                    previous[0] == value
                    or (
                        point.deadband
                        and quality is good
                        and abs(previous[0] - value) < point.deadband  # type: ignore[operator]
                    )
                )
            ):
                continue
            last[i] = (value, quality)
            batch.append(Sample(point.machine_id, point.signal, value, ts, quality))
        for number in touched_blocks:
            self._bad_in_block[number] = sum(1 for i in self._block_points[number] if i in bad)

    def _forget_delivered(self) -> None:
        """The next poll delivers every value (after a reconnect or a failed sink call)."""
        self._last = [None] * len(self._points)
        self._last_data = [None] * len(self._plan.blocks)

    async def _deliver(self, batch: list[SourceEvent]) -> None:
        if not await self._handover.deliver(batch):
            self._forget_delivered()  # the values go again in full with the next poll

    # ------------------------------------------------------------------ pymodbus boundary

    async def _connected_client(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._close_client()
        # reconnect_delay=0: pymodbus must not reconnect on its own; our
        # backoff owns the reconnect schedule.
        client = AsyncModbusTcpClient(
            self._plc.host,
            port=self._plc.port,
            name=f"plc-{self._plc.id}",
            timeout=self._plc.timeout_s,
            retries=self._plc.retries,
            reconnect_delay=0,
        )
        for response_class in BLOCK_RESPONSES:
            client.register(response_class)
        try:
            connected = await client.connect()
        except (ModbusException, OSError) as exc:
            client.close()
            self._raise_if_cancelling()
            raise PlcConnectionError(f"cannot connect: {exc}") from exc
        if not connected:
            client.close()
            raise PlcConnectionError("cannot connect (refused or timed out)")
        self._client = client
        return client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _read(
        self, client: AsyncModbusTcpClient, block: ReadBlock
    ) -> BlockData | PlcDataError:
        self._requests += 1
        address, count, device_id = block.address, block.count, block.unit_id
        try:
            response: ModbusPDU
            if block.area is Area.HOLDING_REGISTER:
                response = await client.read_holding_registers(
                    address, count=count, device_id=device_id
                )
            elif block.area is Area.INPUT_REGISTER:
                response = await client.read_input_registers(
                    address, count=count, device_id=device_id
                )
            elif block.area is Area.COIL:
                response = await client.read_coils(address, count=count, device_id=device_id)
            else:
                response = await client.read_discrete_inputs(
                    address, count=count, device_id=device_id
                )
        except (ModbusException, OSError) as exc:
            self._raise_if_cancelling()
            raise PlcConnectionError(f"reading {block} failed: {exc}") from exc
        except Exception as exc:
            # Whatever else pymodbus raises on a garbled answer: the link is not
            # trustworthy, so treat it as down rather than let the poll loop die.
            self._raise_if_cancelling()
            raise PlcConnectionError(
                f"reading {block} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._raise_if_cancelling()
        if response.isError():
            return PlcDataError(
                f"reading {block} answered with Modbus exception {response.exception_code}"
            )
        if block.area.holds_bits:
            # Bits come padded to whole bytes.
            if len(response.bits) < count:
                return PlcDataError(f"reading {block} returned {len(response.bits)} bits")
            return response.bits[:count]
        if len(response.registers) != count:
            return PlcDataError(f"reading {block} returned {len(response.registers)} registers")
        return response.registers
