"""Messages that flow into the domain actors.

Time is event time: float seconds since the Unix epoch, UTC, as carried by the
sample (the PLC's source timestamp, else the poll completion). Floats keep the
hot path free of datetime arithmetic; conversion happens at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

Value = bool | int | float | str | None


class Quality(Enum):
    """OPC UA-style quality of a value: what a reader may trust it for."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class Sample:
    """One timestamped value of one signal of one machine.

    ``signal`` is a role (``running``, ``state``, ``fault_code``,
    ``total_count``, ``good_count``, ``reject_count``) or a process value name.
    """

    machine_id: str
    signal: str
    value: Value
    ts: float
    quality: Quality = Quality.GOOD
    work_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """The link to the PLC feeding ``machine_id`` went down or came back at ``ts``."""

    machine_id: str
    up: bool
    ts: float
    detail: str = ""


SIGNAL_ROLES = frozenset(
    {"running", "state", "fault_code", "total_count", "good_count", "reject_count"}
)
COUNTER_ROLES = frozenset({"total_count", "good_count", "reject_count"})
