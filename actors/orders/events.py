"""Events the order runtime publishes on the event bus.

Like the machine events (:mod:`actors.oee.events`): frozen dataclasses with
``machine_id`` and ``ts`` (event time, float epoch seconds UTC). An order spans
machines, so order-level events carry an empty ``machine_id`` and name the
order in ``order_id``; a lot scan names the machine it was loaded into.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.orders.batch import BatchRecord


@dataclass(frozen=True, slots=True)
class OrderStatusChanged:
    machine_id: str  # empty: the order, not one machine
    ts: float
    order_id: str
    status: str
    previous: str  # empty for a newly downloaded order
    reason: str
    source: str
    user: str


@dataclass(frozen=True, slots=True)
class OrderProgress:
    """The quantities of a running or held order changed (at most about once a second)."""

    machine_id: str
    ts: float
    order_id: str
    good_quantity: int
    reject_quantity: int
    total_quantity: int
    target_quantity: int


@dataclass(frozen=True, slots=True)
class OrderTargetReached:
    """The order's good quantity reached its target (auto-complete follows when set)."""

    machine_id: str
    ts: float
    order_id: str
    good_quantity: int
    target_quantity: int


@dataclass(frozen=True, slots=True)
class BatchRecordCompleted:
    """An order finished (completed or aborted): its batch record, for the MES and QMIB."""

    machine_id: str
    ts: float
    order_id: str
    record: BatchRecord

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine_id": self.machine_id,
            "ts": self.ts,
            "order_id": self.order_id,
            "record": self.record.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class LotScanned:
    """A material lot was recorded against an order and a machine (duplicates are not)."""

    machine_id: str
    ts: float
    order_id: str
    scan_id: str
    lot_id: str
    material: str
    quantity: float | None


OrderEvent = (
    OrderStatusChanged | OrderProgress | OrderTargetReached | BatchRecordCompleted | LotScanned
)
