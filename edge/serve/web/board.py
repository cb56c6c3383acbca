"""The line display's documents, built from the actors' answers and kept between pushes.

:class:`Board` holds the latest status of every machine, the shift timelines, the
open orders and the active alarms; the live feed tells it what changed (from the
event bus) and it asks only those actors again. The pages and the JSON API read
the same documents (edge.serve.web.views says what is in them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from actors.machine import GetShiftStops, GetStatus, MachineStatus
from actors.oee.stops import StopRecord
from actors.orders.core import OrderView
from actors.quality.core import Alarm, ChartView
from edge.context import LineContext
from edge.errors import ActorError, EdgeError
from edge.serve.web import views
from edge.serve.web.history import LineHistory

log = logging.getLogger("edge.web")

ASK_TIMEOUT_S = 2.0


@runtime_checkable
class LineQueries(Protocol):
    """What the display reads from the order runtime besides the machines."""

    async def open_orders(self) -> list[OrderView]: ...

    async def active_alarms(self) -> list[Alarm]: ...

    async def station_charts(self, station_id: str) -> list[ChartView]: ...


class Board:
    def __init__(self, service: LineContext, history: LineHistory) -> None:
        self._service = service
        self._history = history
        config = service.config
        self.machines = {m.id: m for m in config.machines}
        self._cycles = {m.id: m.params.ideal_cycle_s for m in config.machines}
        self._stations = {s.id: s for s in config.quality_stations}
        self._statuses: dict[str, MachineStatus | None] = {}
        self._timelines: dict[str, list[list[Any]]] = {}
        self._orders: list[dict[str, Any]] = []
        self._alarms: list[dict[str, Any]] = []

    # -- asking the actors ------------------------------------------------------------

    def _queries(self) -> LineQueries | None:
        commands = self._service.commands
        return commands if isinstance(commands, LineQueries) else None

    async def _ask(self, machine_id: str, message: GetStatus | GetShiftStops) -> Any:
        try:
            return await self._service.machine_ref(machine_id).ask(message, timeout=ASK_TIMEOUT_S)
        except (ActorError, KeyError):
            return None

    async def refresh_statuses(self, machine_ids: Iterable[str], now: float) -> None:
        ids = [m for m in machine_ids if m in self.machines]
        replies = await asyncio.gather(*(self._ask(m, GetStatus(now)) for m in ids))
        self._statuses.update(zip(ids, replies, strict=True))

    async def shift_stops(self, machine_id: str, now: float) -> list[StopRecord]:
        stops = await self._ask(machine_id, GetShiftStops(now))
        return list(stops) if stops is not None else []

    async def refresh_timelines(self, machine_ids: Iterable[str], now: float) -> list[str]:
        """The shift timelines of ``machine_ids`` asked again; returns those refreshed."""
        ids = [m for m in machine_ids if m in self.machines]
        stops = await asyncio.gather(*(self.shift_stops(m, now) for m in ids))
        start = self.shift_start(now)
        for machine_id, records in zip(ids, stops, strict=True):
            unknown = self._history.unknown_spans(machine_id, start, now) if start else []
            self._timelines[machine_id] = views.timeline(records, unknown)
        return ids

    async def refresh_orders(self, now: float) -> None:
        queries = self._queries()
        if queries is None:
            self._orders = []
            return
        with contextlib.suppress(ActorError, EdgeError):
            self._orders = [
                views.order_item(v, now, self._cycles)
                for v in await queries.open_orders()
                if v.status in views.OPEN_ORDERS
            ]

    async def refresh_alarms(self) -> None:
        queries = self._queries()
        if queries is None:
            self._alarms = []
            return
        with contextlib.suppress(ActorError, EdgeError):
            alarms = sorted(await queries.active_alarms(), key=lambda a: a.last_ts, reverse=True)
            self._alarms = [views.alarm_item(a) for a in alarms]

    async def refresh_all(self, now: float) -> None:
        await self.refresh_statuses(self.machines, now)
        await self.refresh_timelines(self.machines, now)
        await self.refresh_orders(now)
        await self.refresh_alarms()

    # -- documents ----------------------------------------------------------------------

    def shift_start(self, now: float) -> float | None:
        instance = self._service.calendar.instance_at(now)
        return instance.start if instance is not None else None

    def line_document(self, now: float, timelines: Iterable[str] | None = None) -> dict[str, Any]:
        """The board: every machine, the shift, orders, alarms, the downtime Pareto, and
        the timelines of ``timelines`` (default: every machine)."""
        ident = self._service.config.line
        wanted = self.machines if timelines is None else timelines
        return {
            "v": views.API_VERSION,
            "line": {"id": ident.id, "name": ident.name, "site": ident.site, "area": ident.area},
            "timezone": self._service.config.calendar.timezone,
            "time": now,
            "shift": views.shift_item(self._service.calendar.instance_at(now)),
            "machines": [
                views.machine_summary(m, self._statuses.get(m.id)) for m in self.machines.values()
            ],
            "timelines": {m: self._timelines.get(m, []) for m in wanted if m in self.machines},
            "orders": self._orders,
            "alarms": self._alarms,
            "pareto": views.pareto(self._statuses.get(m) for m in self.machines),
        }

    async def machine_document(self, machine_id: str, now: float) -> dict[str, Any]:
        """One machine's page: its tile, the shift's stops, pieces per hour, its orders,
        and the SPC charts and alarms of its quality stations."""
        machine = self.machines[machine_id]
        status = await self._ask(machine_id, GetStatus(now))
        self._statuses[machine_id] = status
        stops = await self.shift_stops(machine_id, now)
        instance = self._service.calendar.instance_at(now)
        # From when this machine's shift was first observed: hours before it are unknown.
        shift = status.current_shift if status is not None else None
        start = shift.start if shift is not None else now
        unknown = self._history.unknown_spans(machine_id, start, now)
        self._timelines[machine_id] = views.timeline(stops, unknown)
        stations = [s for s in self._stations.values() if s.params.machine_id == machine_id]
        charts: list[dict[str, Any]] = []
        queries = self._queries()
        if queries is not None:
            for station in stations:
                with contextlib.suppress(ActorError, EdgeError):
                    for chart in await queries.station_charts(station.id):
                        charts.append(views.chart_item(station.id, station.name, chart))
        station_ids = {s.id for s in stations}
        ident = self._service.config.line
        return {
            "v": views.API_VERSION,
            "line": {"id": ident.id, "name": ident.name, "site": ident.site, "area": ident.area},
            "timezone": self._service.config.calendar.timezone,
            "time": now,
            "shift": views.shift_item(instance),
            "machine": views.machine_summary(machine, status),
            "stops": [views.stop_item(s) for s in reversed(stops)],
            "timeline": self._timelines[machine_id],
            "hours": views.hours(self._history.hourly(machine_id, start, now)),
            "orders": [o for o in self._orders if machine_id in o["machines"]],
            "charts": charts,
            "alarms": [a for a in self._alarms if a["station"] in station_ids],
        }
