"""The order runtime's part of the line's state (:mod:`edge.cut`): what it saves with
every commit, and what a restart restores.

Keys in ``state.db`` (docs/state-and-recovery.md): ``order/<id>`` (an open
order's core and the pieces still queued for it), ``quality/<id>`` (a station:
counter readings, tallies, charts, alarms), ``orders/index`` (the open orders'
ids and the finished orders' info and batch records) and ``orders/lots`` (the
lot ledger). A finished order's key is deleted by the cut that writes the
index without it.
"""

from __future__ import annotations

import logging

from actors.orders.actor import OrderActor
from actors.orders.line import LineOrders
from edge.cut import Saved, decode_pending, encode_pending
from edge.orders.children import LineChildren, order_key, station_key
from edge.state_store import StateStore

__all__ = ["INDEX_KEY", "LEDGER_KEY", "cut", "restore"]

log = logging.getLogger("edge.orders")

INDEX_KEY = "orders/index"
LEDGER_KEY = "orders/lots"


async def restore(store: StateStore, orders: LineOrders, children: LineChildren) -> list[str]:
    """Stations, finished orders, the ledger and the open orders as last committed, their
    actors spawned; returns the orders to auto-complete now (restored past their target)."""
    active = orders.restore(store.load(INDEX_KEY), store.load(LEDGER_KEY))
    routes = orders.stations
    for station_id in routes.ids:
        await children.spawn_station(routes.params(station_id), store.load(station_key(station_id)))
    due: list[str] = []
    for order_id in active:
        record = store.record(order_key(order_id))
        if record is None:
            log.error("order listed as active has no saved state", extra={"order": order_id})
            continue
        core = orders.restored_core(record.data)
        ref = await children.spawn_order(core)
        if orders.add(core):
            due.append(order_id)
        # Pieces that were on their way to the order when the cut was taken.
        for message in decode_pending(record.pending, OrderActor.kept_on_cut):
            ref.post(message)  # type: ignore[arg-type]
    return due


def cut(orders: LineOrders, children: LineChildren) -> dict[str, Saved | None]:
    """The runtime's part of the line's cut: what changed since the last.

    Synchronous, between two messages of every actor: an order's part is its state
    and the pieces still queued for it, so with the machines' part (taken just
    before) every piece counted is in exactly one place.
    """
    actors: dict[str, Saved | None] = {}
    for order_id, ref in children.orders.items():
        order_cut = ref.cut()
        if order_cut is not None and order_cut.snapshot is not None:
            actors[order_key(order_id)] = Saved(
                order_cut.snapshot, encode_pending(order_cut.pending)
            )
    for station_id, station in children.stations.items():
        station_cut = station.cut()
        if station_cut is not None and station_cut.snapshot is not None:
            actors[station_key(station_id)] = Saved(station_cut.snapshot)
    # After the actors' parts (one may refuse, and the collect is tried again).
    changes = orders.changes()
    # Deletions first: an order id used again after its finished record was dropped
    # is saved by the same cut that deletes the old one.
    saved: dict[str, Saved | None] = {order_key(order_id): None for order_id in changes.gone}
    saved.update(actors)
    if changes.ledger is not None:
        saved[LEDGER_KEY] = Saved(changes.ledger)
    if changes.index is not None:
        saved[INDEX_KEY] = Saved(changes.index)
    return saved
