"""The line's command surface: what the MES (MQTT), SCADA (OPC UA methods) and
QMIB may ask the line to do.

Every front end (MQTT command topics, OPC UA methods, the CLI) decodes and
authorises its own input, then calls one :class:`LineCommands` method. Each
method validates its arguments and either returns a result or raises
:class:`~edge.errors.CommandError` whose message names the argument and why;
a rejected command changes nothing. Front ends turn that into their own
rejection (an MQTT reply, an OPC UA Bad status).

Every command is audited: :class:`CommandAudit` records who asked what and
the outcome, and goes to the event bus (and from there to the outbox).

The specs (:class:`OrderSpec`, :class:`OrderInfo`, :class:`CommandAudit`) are
the domain's (:mod:`actors.commands`), re-exported here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from actors.commands import CommandAudit, OrderInfo, OrderSpec

__all__ = [
    "AlarmOwner",
    "AlarmOwners",
    "CommandAudit",
    "LineCommands",
    "OrderInfo",
    "OrderSpec",
    "register_alarm_owner",
]


class LineCommands(Protocol):
    """Implemented by the line's order/quality runtime; called by every front end."""

    async def download_order(self, spec: OrderSpec, *, source: str, user: str) -> OrderInfo: ...

    async def release_order(self, order_id: str, *, source: str, user: str) -> OrderInfo: ...

    async def start_order(self, order_id: str, *, source: str, user: str) -> OrderInfo: ...

    async def hold_order(
        self, order_id: str, reason: str, *, source: str, user: str
    ) -> OrderInfo: ...

    async def resume_order(self, order_id: str, *, source: str, user: str) -> OrderInfo: ...

    async def complete_order(self, order_id: str, *, source: str, user: str) -> OrderInfo: ...

    async def abort_order(
        self, order_id: str, reason: str, *, source: str, user: str
    ) -> OrderInfo: ...

    async def set_stop_reason(
        self,
        machine_id: str,
        reason: str,
        *,
        stop_id: int | None = None,
        ts: float | None = None,
        source: str,
        user: str,
    ) -> None: ...

    async def acknowledge_alarm(self, alarm_id: str, *, source: str, user: str) -> None: ...


class AlarmOwner(Protocol):
    """Keeps alarms the order runtime does not (a machine's fault and PLC-link
    conditions, kept by the OPC UA server); acknowledged through
    :meth:`LineCommands.acknowledge_alarm` like every alarm."""

    def owns(self, alarm_id: str) -> bool: ...

    async def acknowledge(self, alarm_id: str, *, ts: float, user: str) -> bool:
        """Acknowledge it; False when it already was."""
        ...


@runtime_checkable
class AlarmOwners(Protocol):
    """A LineCommands that also acknowledges the alarms of registered owners."""

    def add_alarm_owner(self, owner: AlarmOwner) -> None:
        """Register ``owner`` (again: no change)."""
        ...


def register_alarm_owner(commands: object, owner: AlarmOwner) -> None:
    """Let ``commands`` acknowledge ``owner``'s alarms, if it acknowledges others' at all."""
    if isinstance(commands, AlarmOwners):
        commands.add_alarm_owner(owner)
