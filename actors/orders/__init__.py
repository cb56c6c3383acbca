"""Work orders: the pure order core, the batch record and the OrderActor.

See :mod:`actors.orders.core` for the lifecycle and how pieces are attributed,
:mod:`actors.orders.batch` for the batch record, and docs/orders-and-quality.md.
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
