"""In-process fan-out: domain events from the actors, samples from the PLC sources.

Consumers (OPC UA address space, metrics, outbox, the event log) subscribe a
synchronous callback. Callbacks run on the event loop right after the actor
handled the message, so they must not block: a consumer that does I/O queues
the events and works on them in its own task. A consumer that raises is logged
once (and its recovery once) and never stops the others or the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from actors.oee.events import DomainEvent
from edge.logs import OutageLog

T = TypeVar("T")


class BusEvent(Protocol):
    """Anything published on the line's event bus: a frozen record stamped with its
    event time (machine events, order and quality events, audits, outbox reports)."""

    @property
    def ts(self) -> float: ...


log = logging.getLogger("edge.event_bus")

EventConsumer = Callable[[Sequence[DomainEvent]], None]


class EventBus(Generic[T]):
    def __init__(self) -> None:
        self._consumers: list[tuple[str, Callable[[Sequence[T]], None], OutageLog]] = []
        self.published = 0

    def subscribe(self, name: str, consumer: Callable[[Sequence[T]], None]) -> Callable[[], None]:
        """Add a consumer; returns the function that removes it."""
        entry = (name, consumer, OutageLog(log, f"event consumer {name}", consumer=name))
        self._consumers.append(entry)

        def unsubscribe() -> None:
            if entry in self._consumers:
                self._consumers.remove(entry)

        return unsubscribe

    @property
    def has_consumers(self) -> bool:
        return bool(self._consumers)

    def publish(self, events: Sequence[T]) -> None:
        self.published += len(events)
        for _name, consumer, outage in self._consumers:
            try:
                consumer(events)
            except Exception as exc:  # one consumer must not stop the line
                outage.failed(repr(exc))
            else:
                if outage.is_down:
                    outage.recovered()
