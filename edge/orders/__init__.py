"""The order runtime: the I/O side of work orders, quality stations and lot traceability.

The decisions are the domain's (:mod:`actors.orders.line`); this package spawns
the actors, carries the decisions out, takes commands and saves its state.
See :mod:`edge.orders.component`.
"""

from actors.orders.line import FinishedOrder, LotScanResult
from edge.orders.component import OrdersRuntime, RuntimeState, component, machine_roles

__all__ = [
    "FinishedOrder",
    "LotScanResult",
    "OrdersRuntime",
    "RuntimeState",
    "component",
    "machine_roles",
]
