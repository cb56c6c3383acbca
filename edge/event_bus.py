"""In-process fan-out of domain events from the actors to their consumers.

Consumers (OPC UA address space, metrics, outbox, the event log) subscribe a
synchronous callback. Callbacks run on the event loop right after the actor
handled the message, so they must not block: a consumer that does I/O queues
the events and works on them in its own task. A consumer that raises is logged
once (and its recovery once) and never stops the others or the actor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from actors.oee.events import DomainEvent
from edge.logs import OutageLog

log = logging.getLogger("edge.event_bus")

EventConsumer = Callable[[Sequence[DomainEvent]], None]


class EventBus:
    def __init__(self) -> None:
        self._consumers: list[tuple[str, EventConsumer, OutageLog]] = []
        self.published = 0

    def subscribe(self, name: str, consumer: EventConsumer) -> Callable[[], None]:
        """Add a consumer; returns the function that removes it."""
        entry = (name, consumer, OutageLog(log, f"event consumer {name}", consumer=name))
        self._consumers.append(entry)

        def unsubscribe() -> None:
            if entry in self._consumers:
                self._consumers.remove(entry)

        return unsubscribe

    def publish(self, events: Sequence[DomainEvent]) -> None:
        self.published += len(events)
        for _name, consumer, outage in self._consumers:
            try:
                consumer(events)
            except Exception as exc:  # one consumer must not stop the line
                outage.failed(repr(exc))
            else:
                if outage.is_down:
                    outage.recovered()
