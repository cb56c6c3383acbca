"""Material lot traceability: scans of consumed lots and the produced lot's genealogy (pure).

A scan (a barcode scanner at a machine, or an MES command) says: lot ``lot_id``
of ``material`` was loaded into ``machine_id`` for ``order_id`` at ``ts``.
Every scan carries a ``scan_id`` chosen by its sender; the ledger is
idempotent by that id:

- the same scan id again with the same content is a duplicate: ignored, and
  reported as such (``recorded=False``), so a front end that resends after a
  lost reply does no harm;
- the same scan id with different content (another lot, machine or order) is
  refused with :class:`~actors.errors.CommandError`: a scanner reusing ids would
  otherwise silently lose scans.

The ledger keeps the scans of every order that is not finished, and the ids of
the last ``max_finished_scans`` scans of finished orders (enough to recognise
a late resend). :meth:`LotLedger.genealogy` is what goes into an order's batch
record: the produced lot and every distinct consumed lot, in scan order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from actors.errors import CommandError

__all__ = ["Genealogy", "LotLedger", "LotScan"]


@dataclass(frozen=True, slots=True)
class LotScan:
    scan_id: str
    lot_id: str
    order_id: str
    machine_id: str
    ts: float
    material: str = ""
    quantity: float | None = None
    source: str = ""
    user: str = ""

    def same_content(self, other: LotScan) -> bool:
        """Equal in what it says (who sent it and when it was resent do not matter)."""
        return (
            self.lot_id == other.lot_id
            and self.order_id == other.order_id
            and self.machine_id == other.machine_id
            and self.material == other.material
            and self.quantity == other.quantity
        )

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LotScan:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True, slots=True)
class Genealogy:
    """A produced lot and the lots it was made from."""

    produced_lot_id: str
    consumed: tuple[LotScan, ...]  # first scan of each distinct (lot, machine), in order

    @property
    def consumed_lot_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(scan.lot_id for scan in self.consumed))

    def as_dict(self) -> dict[str, Any]:
        return {
            "produced_lot_id": self.produced_lot_id,
            "consumed_lot_ids": list(self.consumed_lot_ids),
            "consumed": [scan.as_dict() for scan in self.consumed],
        }


def validate_scan(scan: LotScan) -> None:
    """Raise CommandError naming the first bad field."""
    for name in ("scan_id", "lot_id", "order_id", "machine_id"):
        value = getattr(scan, name)
        if not isinstance(value, str) or not value.strip():
            raise CommandError(f"{name} must be a non-empty string, got {value!r}")
    if not isinstance(scan.ts, (int, float)) or not math.isfinite(scan.ts):
        raise CommandError(f"ts must be a finite epoch time, got {scan.ts!r}")
    if scan.quantity is not None and (
        isinstance(scan.quantity, bool)
        or not isinstance(scan.quantity, (int, float))
        or not math.isfinite(scan.quantity)
        or scan.quantity < 0
    ):
        raise CommandError(f"quantity must be a non-negative number, got {scan.quantity!r}")


class LotLedger:
    """Every lot scan of the line's open orders, idempotent by scan id."""

    def __init__(self, *, max_finished_scans: int = 10_000) -> None:
        self._scans: dict[str, LotScan] = {}  # open orders' scans by scan id
        self._by_order: dict[str, list[str]] = {}
        self._finished: OrderedDict[str, LotScan] = OrderedDict()
        self._max_finished = max_finished_scans

    def record(self, scan: LotScan) -> bool:
        """Record a scan; False when it is a duplicate of one already recorded.

        Raises CommandError for a bad field or a scan id reused for other content.
        """
        validate_scan(scan)
        known = self._scans.get(scan.scan_id) or self._finished.get(scan.scan_id)
        if known is not None:
            if known.same_content(scan):
                return False
            raise CommandError(
                f"scan_id {scan.scan_id!r} was already used for lot {known.lot_id!r} on "
                f"machine {known.machine_id!r} (order {known.order_id!r}); "
                "a new scan needs a new scan_id"
            )
        self._scans[scan.scan_id] = scan
        self._by_order.setdefault(scan.order_id, []).append(scan.scan_id)
        return True

    def scans(self, order_id: str) -> tuple[LotScan, ...]:
        return tuple(self._scans[s] for s in self._by_order.get(order_id, ()))

    def genealogy(self, order_id: str, produced_lot_id: str) -> Genealogy:
        seen: set[tuple[str, str]] = set()
        consumed: list[LotScan] = []
        for scan in self.scans(order_id):
            key = (scan.lot_id, scan.machine_id)
            if key not in seen:
                seen.add(key)
                consumed.append(scan)
        return Genealogy(produced_lot_id, tuple(consumed))

    def finish(self, order_id: str) -> None:
        """The order is final: keep only its scan ids for duplicate detection."""
        for scan_id in self._by_order.pop(order_id, []):
            scan = self._scans.pop(scan_id)
            self._finished[scan_id] = scan
        while len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)

    def __len__(self) -> int:
        return len(self._scans)

    # -- persistence ------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "open": [self._scans[s].as_dict() for ids in self._by_order.values() for s in ids],
            "finished": [scan.as_dict() for scan in self._finished.values()],
        }

    @classmethod
    def restore(cls, data: dict[str, Any], *, max_finished_scans: int = 10_000) -> LotLedger:
        ledger = cls(max_finished_scans=max_finished_scans)
        for item in data.get("open", []):
            scan = LotScan.from_dict(item)
            ledger._scans[scan.scan_id] = scan
            ledger._by_order.setdefault(scan.order_id, []).append(scan.scan_id)
        for item in data.get("finished", []):
            scan = LotScan.from_dict(item)
            ledger._finished[scan.scan_id] = scan
        while len(ledger._finished) > ledger._max_finished:
            ledger._finished.popitem(last=False)
        return ledger
