"""The live feed of the line display: a WebSocket that pushes the board as the line changes.

``GET /api/v1/live`` (``?machine=ID`` for a machine page too) upgrades to a
WebSocket. The server sends JSON text messages; the client sends nothing (what
it sends is ignored):

- ``{"type": "line", ...}``: the board document (``GET /api/v1/line``), first in
  full, then whenever something changed; ``timelines`` then holds only the
  machines whose timeline changed;
- ``{"type": "machine", ...}``: the machine page's document
  (``GET /api/v1/machines/ID``), when the client named a machine.

What changed is learnt from the event bus: a state change, a stop, a stop's
reason, an order's status or an alarm is pushed at once (within
:data:`URGENT_DELAY_S`, which gathers what happens together); counts and KPIs
move at most every :data:`COUNTS_INTERVAL_S`; every :data:`REFRESH_S` every
machine is asked again, so KPIs that change with time alone (a long stop) move
too. With no client connected nothing is asked.

A client that does not read (a frozen tab) is dropped when its queue is full,
so it never holds the others back; browsers reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import WSMsgType, web

from actors.oee.events import StateChanged, StopEnded, StopReasonChanged, StopStarted
from actors.orders.events import OrderProgress, OrderStatusChanged
from actors.quality.events import AlarmAcknowledged, SpcViolation
from edge.logs import OutageLog
from edge.serve.web.board import Board

__all__ = ["LiveFeed"]

log = logging.getLogger("edge.web.live")

URGENT_DELAY_S = 0.05
COUNTS_INTERVAL_S = 1.0
REFRESH_S = 5.0
CLIENT_QUEUE = 8
HEARTBEAT_S = 20.0

_TIMELINE_EVENTS = (StopStarted, StopEnded, StopReasonChanged, StateChanged)


class _Client:
    __slots__ = ("machine_id", "queue", "ws")

    def __init__(self, ws: web.WebSocketResponse, machine_id: str | None) -> None:
        self.ws = ws
        self.machine_id = machine_id
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(CLIENT_QUEUE)

    def offer(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True


class LiveFeed:
    """Bus consumer and WebSocket hub; ``run()`` is its push loop (a task of the component)."""

    def __init__(self, board: Board) -> None:
        self._board = board
        self._clients: set[_Client] = set()
        self._urgent: set[str] = set()  # machines with a state/stop change
        self._timelines: set[str] = set()  # machines whose timeline changed
        self._counted: set[str] = set()  # machines with only new pieces
        self._machine_pages: set[str] = set()  # machines whose page document changed
        self._orders_changed = False
        self._alarms_changed = False
        self._wake = asyncio.Event()
        self._outage = OutageLog(log, "live feed of the line display")
        self.pushes = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -- events ---------------------------------------------------------------------

    def consume(self, events: Sequence[object]) -> None:
        urgent = False
        for event in events:
            machine_id = getattr(event, "machine_id", None)
            if isinstance(event, _TIMELINE_EVENTS):
                self._urgent.add(str(machine_id))
                self._timelines.add(str(machine_id))
                urgent = True
            elif isinstance(event, OrderStatusChanged):
                self._orders_changed = urgent = True
            elif isinstance(event, OrderProgress):
                self._orders_changed = True
            elif isinstance(event, (SpcViolation, AlarmAcknowledged)):
                self._alarms_changed = urgent = True
                self._machine_pages.add(str(machine_id))
            elif machine_id is not None:
                self._counted.add(str(machine_id))
        if urgent:
            self._wake.set()

    # -- the push loop ----------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_counts = last_refresh = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(COUNTS_INTERVAL_S):
                    await self._wake.wait()
                await asyncio.sleep(URGENT_DELAY_S)  # what happens together goes together
            self._wake.clear()
            if not self._clients:
                self._forget()
                continue
            tick = loop.time()
            try:
                await self._push(
                    counts=tick - last_counts >= COUNTS_INTERVAL_S,
                    refresh=tick - last_refresh >= REFRESH_S,
                )
            except Exception as exc:  # the feed must outlive any one bad push
                self._outage.failed(repr(exc))
            else:
                if self._outage.is_down:
                    self._outage.recovered()
            if tick - last_counts >= COUNTS_INTERVAL_S:
                last_counts = tick
            if tick - last_refresh >= REFRESH_S:
                last_refresh = tick

    def _forget(self) -> None:
        self._urgent.clear()
        self._timelines.clear()
        self._counted.clear()
        self._machine_pages.clear()
        self._orders_changed = self._alarms_changed = False

    async def _push(self, *, counts: bool, refresh: bool) -> None:
        board = self._board
        now = time.time()
        asked = set(board.machines) if refresh else set(self._urgent)
        if counts:
            asked |= self._counted
            self._counted.clear()
        self._urgent.clear()
        timelines = set(board.machines) if refresh else set(self._timelines)
        self._timelines.clear()
        orders = self._orders_changed or counts or refresh
        alarms = self._alarms_changed or refresh
        self._orders_changed = self._alarms_changed = False
        if not (asked or timelines or orders or alarms):
            return
        await board.refresh_statuses(asked, now)
        await board.refresh_timelines(timelines, now)
        if orders:
            await board.refresh_orders(now)
        if alarms:
            await board.refresh_alarms()
        text = _dump({"type": "line", **board.line_document(now, timelines)})
        pages = asked | timelines | self._machine_pages
        self._machine_pages.clear()
        documents: dict[str, str] = {}
        for client in list(self._clients):
            if client.machine_id is not None and (client.machine_id in pages or alarms):
                if client.machine_id not in documents:
                    doc = await board.machine_document(client.machine_id, now)
                    documents[client.machine_id] = _dump({"type": "machine", **doc})
                self._send(client, documents[client.machine_id])
            self._send(client, text)
        self.pushes += 1

    def _send(self, client: _Client, text: str) -> None:
        if not client.offer(text):
            log.info("live feed client not reading; dropped", extra={"clients": self.clients})
            self._clients.discard(client)
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)

    # -- WebSocket ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        machine_id = request.query.get("machine") or None
        if machine_id is not None and machine_id not in self._board.machines:
            raise web.HTTPNotFound(text=f"no machine {machine_id!r} on this line\n")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096)
        await ws.prepare(request)
        client = _Client(ws, machine_id)
        now = time.time()
        board = self._board
        await board.refresh_all(now)
        client.offer(_dump({"type": "line", **board.line_document(now)}))
        if machine_id is not None:
            doc = await board.machine_document(machine_id, now)
            client.offer(_dump({"type": "machine", **doc}))
        self._clients.add(client)
        sender = asyncio.ensure_future(self._sender(client))
        try:
            async for message in ws:  # only to notice the close; what clients send is ignored
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _sender(self, client: _Client) -> None:
        while True:
            text = await client.queue.get()
            if text is None:
                await client.ws.close(code=1013, message=b"not reading: reconnect")
                return
            try:
                await client.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def close_all(self) -> None:
        """The server stops: every client is told so (1001: going away)."""
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.ws.close(code=1001, message=b"edge stopping")
        self._clients.clear()


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), allow_nan=False)
