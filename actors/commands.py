"""What a command says and what it answers, as the domain sees them.

The specs the line's command surface (:class:`edge.commands.LineCommands`)
takes and returns, defined below the I/O layer so the domain (the order core,
the line's order coordinator) builds and checks them without importing
``edge``; :mod:`edge.commands` re-exports them. Also the checks of the
arguments every command shares (ids, free text, event times): a refusal is a
:class:`~actors.errors.CommandError` naming the argument and why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from actors.errors import CommandError

__all__ = [
    "MAX_TEXT",
    "CommandAudit",
    "OrderInfo",
    "OrderSpec",
    "check_event_ts",
    "check_order_id",
    "check_text",
]


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


# -- argument checks every command shares ------------------------------------------------

MAX_TEXT = 256
# Ids become OPC UA node ids and MQTT payload keys: the config's id alphabet.
ORDER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_text(name: str, value: object, *, empty: bool = False) -> str:
    """``value`` stripped; CommandError when it is not a string, empty (unless allowed)
    or longer than :data:`MAX_TEXT`."""
    if not isinstance(value, str):
        raise CommandError(f"{name} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not empty and not text:
        raise CommandError(f"{name} must not be empty")
    if len(text) > MAX_TEXT:
        raise CommandError(f"{name} must be at most {MAX_TEXT} characters")
    return text


def check_order_id(value: object) -> str:
    if not isinstance(value, str) or not ORDER_ID_RE.match(value):
        raise CommandError(
            "order_id must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or "
            f"digit, got {value!r}"
        )
    return value


def check_event_ts(ts: object, default: float) -> float:
    """An event time given with a command (epoch seconds), else ``default``."""
    if ts is None:
        return default
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise CommandError(f"ts must be a finite epoch time in seconds, got {ts!r}")
    return float(ts)
