"""What reaches the quality stations from the PLCs: the station's own points, or its
machine's samples.

- A station with a ``plc`` and a ``plc_map`` of its own is read over that PLC's
  one connection, beside the machines (PLCs allow few connections):
  :meth:`StationFeed.attach` gives the service the bindings, whose samples come
  back to :meth:`StationFeed.deliver`.
- A station without one reads its machine's samples: the service's sample bus
  calls :meth:`StationFeed.on_samples` (synchronously, it must not block), which
  queues what each station reads (``StationRoutes.route_samples``); one task
  hands the queue on, in order. :meth:`StationFeed.drain` waits until
  everything queued so far is in the stations' mailboxes (before a station
  changes order, and before the last cut).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from actors.messages import LinkChanged, Sample
from actors.quality.actor import StationMessage, StationSamples
from actors.quality.routes import StationRoutes
from edge.config import LineConfig
from edge.plc import MachineBinding, load_plc_map
from edge.plc.delivery import SampleSink, per_reader

__all__ = ["StationFeed"]

StationTell = Callable[[str, StationMessage], Awaitable[None]]
AttachBindings = Callable[[str, Sequence[MachineBinding], SampleSink], None]


class _Barrier:
    """A marker in the queue: set when everything queued before it was handed on."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class StationFeed:
    def __init__(self, routes: StationRoutes, tell: StationTell) -> None:
        self._routes = routes
        self._tell = tell
        self._queue: asyncio.Queue[tuple[str, StationMessage] | _Barrier] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    @property
    def reads_machine_samples(self) -> bool:
        return self._routes.read_machine_samples

    def attach(self, config: LineConfig, attach_bindings: AttachBindings) -> None:
        """Give each PLC the points of the stations with a plc_map of their own on it."""
        for plc in config.plcs:
            bindings = [
                MachineBinding(
                    machine_id=s.id,
                    plc_map=load_plc_map(s.plc_map, config.plc_map_dirs),
                    unit_id=s.unit_id,
                    address_offset=s.address_offset,
                )
                for s in config.quality_stations
                if s.plc == plc.id and s.plc_map is not None
            ]
            if bindings:
                attach_bindings(plc.id, bindings, self.deliver)

    async def deliver(self, batch: Sequence[Sample | LinkChanged]) -> None:
        """A PLC source's batch of the stations' own points."""
        for station_id, item in per_reader(batch):
            message = StationSamples(item) if isinstance(item, tuple) else item
            await self._tell(station_id, message)

    def start(self) -> None:
        """Hand queued machine samples on, until :meth:`stop`."""
        if self._task is None and self.reads_machine_samples:
            self._task = asyncio.ensure_future(self._forward())
            self._task.set_name("orders-stations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def on_samples(self, batch: Sequence[Sample | LinkChanged]) -> None:
        """Sample bus consumer: a machine's samples that stations without a PLC read."""
        put = self._queue.put_nowait
        for item in self._routes.route_samples(batch):
            put(item)

    async def drain(self) -> None:
        """Until the machine samples queued so far are in the stations' mailboxes."""
        if self._task is None:
            return
        barrier = _Barrier()
        self._queue.put_nowait(barrier)
        await barrier.done

    async def _forward(self) -> None:
        queue = self._queue
        while True:
            item = await queue.get()
            if isinstance(item, _Barrier):
                if not item.done.done():
                    item.done.set_result(None)
                continue
            station_id, message = item
            await self._tell(station_id, message)
