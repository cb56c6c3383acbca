"""What a command says and what it answers, as the domain sees them.

The specs the line's command surface (:class:`edge.commands.LineCommands`)
takes and returns, defined below the I/O layer so the domain (the order core,
the line's order coordinator) builds and checks them without importing
``edge``; :mod:`edge.commands` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CommandAudit", "OrderInfo", "OrderSpec"]


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A work order as downloaded from the MES or a QMIB batch template."""

    order_id: str
    product: str
    target_quantity: int
    machine_ids: tuple[str, ...]
    ideal_cycle_s: float | None = None  # None: each machine's own
    operation_id: str = ""
    auto_complete: bool = False  # complete when good pieces reach the target
    produced_lot_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderInfo:
    """An order's state as a command result."""

    order_id: str
    status: str  # created | released | running | held | completed | aborted
    product: str
    target_quantity: int
    good_count: int
    reject_count: int
    machine_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommandAudit:
    """One command, as the audit trail keeps it."""

    ts: float
    source: str  # "mqtt", "opcua", "qmib", "cli"
    user: str
    command: str
    arguments: dict[str, object] = field(default_factory=dict)
    accepted: bool = True
    result: str = ""
