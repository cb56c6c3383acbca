"""The work order core: lifecycle, piece attribution, auto-complete, batch record (pure).

::

    core = OrderCore(spec, machine_roles={"M1": SEEN_TOTAL | SEEN_GOOD}, quantity_rule="series")
    core.check(action)                           # raises CommandError with the reason
    core.apply(action, ts, reason=..., source=..., user=...)    # a status change
    core.count(machine_id, role, count, ts) -> bool             # True once: target reached
    core.window_kpis(kpi_dict)                   # a machine's order-window KPIs (a segment)
    core.batch_record(ts, quality=[...], genealogy=Genealogy)   # once completed or aborted
    core.view() -> OrderView
    core.snapshot() -> dict;  OrderCore.restore(snapshot, machine_roles, quantity_rule)

Lifecycle
=========

::

    created ──release──► released ──start──► running ◄──resume── held
       │                    │                  │  └────hold────►  │
       │                    │                  ├──complete──► completed
       └───────abort────────┴──────abort───────┴──────abort─────► aborted

``complete`` is allowed from running and held (an order may be closed short
while held), ``abort`` from every status that is not final. Completed and
aborted are final. Every other (status, action) pair is refused with
:class:`~actors.errors.CommandError` saying why, and changes nothing.

Pieces
======

The machine core stamps every counter delta with the order running on the
machine at that instant (``PiecesCounted.order_id``); the runtime forwards
those to the order. Per machine the order keeps the raw pieces per role and
derives total/good/reject with the machine core's rule
(:func:`actors.oee.counters.derive_counts`), using the roles the machine's
PLC maps (``machine_roles``) and any role seen in its pieces. Rejects a
quality station adds to the machine arrive as ``quality_station_reject``.

The order's own quantities follow ``quantity_rule``:

``series`` (default: the machines are consecutive steps of one flow)
    good = the good pieces of the *last* machine in ``machine_ids`` (what
    left the line); reject = the rejects of all its machines (each one a
    piece lost from the order); total = good + reject.
``parallel`` (the machines each make the whole product)
    good, reject and total are the sums over the machines.

Pieces arrive while the order is running or held (a hold's last pieces may be
in flight). After the order is final, pieces are not counted: the runtime
closes the machines' order windows and drains the event bus before it
finishes an order, so none are expected; any that come are counted in
``late_pieces`` for the record.

Auto-complete: when ``spec.auto_complete`` is set, :meth:`count` returns True
once, the first time the good quantity reaches the target; the runtime then
completes the order as a command from ``source="auto"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from actors.commands import OrderSpec
from actors.errors import CommandError
from actors.oee.counters import EXTERNAL_REJECT, ROLE_NAMES, Tally, derive_counts
from actors.orders.batch import BatchRecord, merge_kpis
from actors.traceability import Genealogy

__all__ = [
    "FINAL",
    "TRANSITIONS",
    "OrderAction",
    "OrderCore",
    "OrderStatus",
    "OrderView",
    "QuantityRule",
    "refusal",
]


class OrderStatus(Enum):
    CREATED = "created"
    RELEASED = "released"
    RUNNING = "running"
    HELD = "held"
    COMPLETED = "completed"
    ABORTED = "aborted"


class OrderAction(Enum):
    RELEASE = "release"
    START = "start"
    HOLD = "hold"
    RESUME = "resume"
    COMPLETE = "complete"
    ABORT = "abort"


class QuantityRule(Enum):
    SERIES = "series"
    PARALLEL = "parallel"


S, A = OrderStatus, OrderAction
TRANSITIONS: dict[tuple[OrderStatus, OrderAction], OrderStatus] = {
    (S.CREATED, A.RELEASE): S.RELEASED,
    (S.CREATED, A.ABORT): S.ABORTED,
    (S.RELEASED, A.START): S.RUNNING,
    (S.RELEASED, A.ABORT): S.ABORTED,
    (S.RUNNING, A.HOLD): S.HELD,
    (S.RUNNING, A.COMPLETE): S.COMPLETED,
    (S.RUNNING, A.ABORT): S.ABORTED,
    (S.HELD, A.RESUME): S.RUNNING,
    (S.HELD, A.COMPLETE): S.COMPLETED,
    (S.HELD, A.ABORT): S.ABORTED,
}
FINAL = frozenset({S.COMPLETED, S.ABORTED})
# Machines are given this order while it is in one of these.
ON_MACHINES = frozenset({S.RUNNING})

_HINTS: dict[tuple[OrderStatus, OrderAction], str] = {
    (S.CREATED, A.START): "release it first",
    (S.CREATED, A.HOLD): "only a running order can be held",
    (S.CREATED, A.RESUME): "only a held order can be resumed",
    (S.CREATED, A.COMPLETE): "it never started; abort it instead",
    (S.RELEASED, A.RELEASE): "it is already released",
    (S.RELEASED, A.HOLD): "only a running order can be held",
    (S.RELEASED, A.RESUME): "only a held order can be resumed; start a released one",
    (S.RELEASED, A.COMPLETE): "it never started; abort it instead",
    (S.RUNNING, A.RELEASE): "it was released already and is running",
    (S.RUNNING, A.START): "it is already running",
    (S.RUNNING, A.RESUME): "it is running, not held",
    (S.HELD, A.RELEASE): "it was released already and is held",
    (S.HELD, A.START): "a held order is resumed, not started",
    (S.HELD, A.HOLD): "it is already held",
}


def refusal(order_id: str, status: OrderStatus, action: OrderAction) -> str | None:
    """Why ``action`` is not allowed in ``status`` (None: it is allowed)."""
    if (status, action) in TRANSITIONS:
        return None
    if status in FINAL:
        hint = f"a {status.value} order is final"
    else:
        hint = _HINTS.get((status, action), "not allowed")
    return f"cannot {action.value} order {order_id!r}: it is {status.value}; {hint}"


@dataclass(frozen=True, slots=True)
class MachineCounts:
    total: int
    good: int
    reject: int


@dataclass(frozen=True, slots=True)
class OrderView:
    order_id: str
    status: OrderStatus
    product: str
    target_quantity: int
    good_quantity: int
    reject_quantity: int
    total_quantity: int
    machine_ids: tuple[str, ...]
    ideal_cycle_s: float | None
    started_at: float | None
    ended_at: float | None
    machines: dict[str, MachineCounts] = field(default_factory=dict)
    target_reached: bool = False


def spec_to_data(spec: OrderSpec) -> dict[str, Any]:
    return {
        "order_id": spec.order_id,
        "product": spec.product,
        "target_quantity": spec.target_quantity,
        "machine_ids": list(spec.machine_ids),
        "ideal_cycle_s": spec.ideal_cycle_s,
        "operation_id": spec.operation_id,
        "auto_complete": spec.auto_complete,
        "produced_lot_id": spec.produced_lot_id,
    }


def spec_from_data(data: Mapping[str, Any]) -> OrderSpec:
    return OrderSpec(
        order_id=str(data["order_id"]),
        product=str(data["product"]),
        target_quantity=int(data["target_quantity"]),
        machine_ids=tuple(str(m) for m in data["machine_ids"]),
        ideal_cycle_s=float(data["ideal_cycle_s"]) if data["ideal_cycle_s"] is not None else None,
        operation_id=str(data["operation_id"]),
        auto_complete=bool(data["auto_complete"]),
        produced_lot_id=str(data["produced_lot_id"]),
    )


_ROLE_BY_NAME = {name: index for index, name in enumerate(ROLE_NAMES)}


class OrderCore:
    def __init__(
        self,
        spec: OrderSpec,
        *,
        machine_roles: Mapping[str, int] | None = None,
        quantity_rule: QuantityRule = QuantityRule.SERIES,
        created_at: float = 0.0,
        source: str = "",
        user: str = "",
    ) -> None:
        self.spec = spec
        self.quantity_rule = quantity_rule
        self.status = OrderStatus.CREATED
        self.created_at = created_at
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason = ""
        self.target_reached = False
        self.late_pieces = 0
        roles = machine_roles or {}
        self._roles: dict[str, int] = {m: roles.get(m, 0) for m in spec.machine_ids}
        self._tallies: dict[str, Tally] = {m: Tally() for m in spec.machine_ids}
        self._segments: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in spec.machine_ids}
        self.history: list[dict[str, Any]] = [
            {
                "ts": created_at,
                "status": OrderStatus.CREATED.value,
                "previous": "",
                "reason": "",
                "source": source,
                "user": user,
            }
        ]

    # ------------------------------------------------------------------ lifecycle

    def check(self, action: OrderAction) -> OrderStatus:
        """The status ``action`` leads to; raises CommandError saying why not."""
        why = refusal(self.spec.order_id, self.status, action)
        if why is not None:
            raise CommandError(why)
        return TRANSITIONS[(self.status, action)]

    def apply(
        self,
        action: OrderAction,
        ts: float,
        *,
        reason: str = "",
        source: str = "",
        user: str = "",
    ) -> OrderStatus:
        """Change status (or raise CommandError and change nothing); returns the previous one."""
        target = self.check(action)
        previous = self.status
        self.status = target
        if target is OrderStatus.RUNNING and self.started_at is None:
            self.started_at = ts
        if target in FINAL:
            self.ended_at = ts
            self.end_reason = reason
        self.history.append(
            {
                "ts": ts,
                "status": target.value,
                "previous": previous.value,
                "reason": reason,
                "source": source,
                "user": user,
            }
        )
        return previous

    # ------------------------------------------------------------------ pieces

    def count(self, machine_id: str, role: str, count: int, ts: float) -> bool:
        """Pieces counted for this order on a machine; True the first time the target is met."""
        tally = self._tallies.get(machine_id)
        index = _ROLE_BY_NAME.get(role)
        if tally is None or index is None or count <= 0:
            return False
        if self.status not in (OrderStatus.RUNNING, OrderStatus.HELD):
            self.late_pieces += count
            return False
        tally.add(index, count, 0.0)
        if index != EXTERNAL_REJECT:
            self._roles[machine_id] |= 1 << index
        if (
            self.spec.auto_complete
            and not self.target_reached
            and self.quantities()[0] >= self.spec.target_quantity
        ):
            self.target_reached = True
            return True
        return False

    def machine_counts(self, machine_id: str) -> MachineCounts:
        total, good, reject, _ = derive_counts(self._tallies[machine_id], self._roles[machine_id])
        return MachineCounts(total, good, reject)

    def quantities(self) -> tuple[int, int, int]:
        """``(good, reject, total)`` of the order by its quantity rule."""
        counts = [self.machine_counts(m) for m in self.spec.machine_ids]
        reject = sum(c.reject for c in counts)
        if self.quantity_rule is QuantityRule.SERIES:
            good = counts[-1].good if counts else 0
            return good, reject, good + reject
        return sum(c.good for c in counts), reject, sum(c.total for c in counts)

    def window_kpis(self, kpis: Mapping[str, Any]) -> None:
        """A machine's KPIs for one run segment of this order (a newer one replaces it)."""
        if kpis.get("window") != "order" or kpis.get("key") != self.spec.order_id:
            return
        segments = self._segments.get(str(kpis["machine_id"]))
        if segments is None:
            return
        plain = dict(kpis)
        plain["downtime_by_reason"] = dict(plain["downtime_by_reason"])
        segments[repr(float(plain["start"]))] = plain

    def machine_kpis(self, machine_id: str) -> dict[str, Any] | None:
        return merge_kpis(list(self._segments[machine_id].values()))

    # ------------------------------------------------------------------ queries

    def view(self) -> OrderView:
        good, reject, total = self.quantities()
        spec = self.spec
        return OrderView(
            order_id=spec.order_id,
            status=self.status,
            product=spec.product,
            target_quantity=spec.target_quantity,
            good_quantity=good,
            reject_quantity=reject,
            total_quantity=total,
            machine_ids=spec.machine_ids,
            ideal_cycle_s=spec.ideal_cycle_s,
            started_at=self.started_at,
            ended_at=self.ended_at,
            machines={m: self.machine_counts(m) for m in spec.machine_ids},
            target_reached=self.target_reached,
        )

    def batch_record(
        self,
        *,
        quality: Sequence[Mapping[str, Any]] = (),
        genealogy: Genealogy | None = None,
    ) -> BatchRecord:
        """The record of a finished order; CommandError while it is not final."""
        if self.status not in FINAL or self.ended_at is None:
            raise CommandError(
                f"order {self.spec.order_id!r} is {self.status.value}: "
                "a batch record is made when it is completed or aborted"
            )
        spec = self.spec
        good, reject, total = self.quantities()
        machines: dict[str, dict[str, Any]] = {}
        downtime: dict[str, float] = {}
        for machine_id in spec.machine_ids:
            counts = self.machine_counts(machine_id)
            kpis = self.machine_kpis(machine_id)
            machines[machine_id] = {
                "total_count": counts.total,
                "good_count": counts.good,
                "reject_count": counts.reject,
                "kpis": kpis,
            }
            if kpis is not None:
                for reason, seconds in kpis["downtime_by_reason"].items():
                    downtime[reason] = downtime.get(reason, 0.0) + seconds
        lineage = genealogy if genealogy is not None else Genealogy(spec.produced_lot_id, ())
        summaries = [dict(q) for q in quality]
        return BatchRecord(
            order_id=spec.order_id,
            product=spec.product,
            operation_id=spec.operation_id,
            status=self.status.value,
            reason=self.end_reason,
            target_quantity=spec.target_quantity,
            good_quantity=good,
            reject_quantity=reject,
            rework_quantity=sum(int(q.get("rework", 0)) for q in summaries),
            total_quantity=total,
            start=self.started_at,
            end=self.ended_at,
            machines=machines,
            downtime_by_reason=downtime,
            produced_lot_id=spec.produced_lot_id,
            consumed_lots=[scan.as_dict() for scan in lineage.consumed],
            genealogy=lineage.as_dict(),
            quality=summaries,
            history=[dict(h) for h in self.history],
        )

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        return {
            "spec": spec_to_data(self.spec),
            "quantity_rule": self.quantity_rule.value,
            "status": self.status.value,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "target_reached": self.target_reached,
            "late_pieces": self.late_pieces,
            "roles": dict(self._roles),
            "tallies": {m: t.to_data() for m, t in self._tallies.items()},
            "segments": {m: {k: dict(v) for k, v in s.items()} for m, s in self._segments.items()},
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def restore(
        cls,
        data: Mapping[str, Any],
        *,
        machine_roles: Mapping[str, int] | None = None,
    ) -> OrderCore:
        spec = spec_from_data(data["spec"])
        core = cls(
            spec,
            machine_roles=machine_roles,
            quantity_rule=QuantityRule(data["quantity_rule"]),
            created_at=float(data["created_at"]),
        )
        core.status = OrderStatus(data["status"])
        core.started_at = data["started_at"]
        core.ended_at = data["ended_at"]
        core.end_reason = str(data["end_reason"])
        core.target_reached = bool(data["target_reached"])
        core.late_pieces = int(data["late_pieces"])
        for machine_id in spec.machine_ids:
            core._roles[machine_id] |= int(data["roles"].get(machine_id, 0))
            if machine_id in data["tallies"]:
                core._tallies[machine_id] = Tally.from_data(data["tallies"][machine_id])
            core._segments[machine_id] = {
                str(k): dict(v) for k, v in data["segments"].get(machine_id, {}).items()
            }
        core.history = [dict(h) for h in data["history"]]
        return core
