"""Work orders: the pure order core, the batch record, the OrderActor and the line's
order coordinator.

See :mod:`actors.orders.core` for the lifecycle and how pieces are attributed,
:mod:`actors.orders.batch` for the batch record, :mod:`actors.orders.line` for what
a command does to which order, machine and station, and docs/orders-and-quality.md.
"""

from actors.orders.batch import BatchRecord, merge_kpis
from actors.orders.core import (
    FINAL,
    TRANSITIONS,
    OrderAction,
    OrderCore,
    OrderStatus,
    OrderView,
    QuantityRule,
    refusal,
)

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "BatchRecord",
    "OrderAction",
    "OrderCore",
    "OrderStatus",
    "OrderView",
    "QuantityRule",
    "merge_kpis",
    "refusal",
]
