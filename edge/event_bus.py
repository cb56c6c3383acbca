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


_Entry = tuple[str, Callable[[Sequence[T]], None], OutageLog]

# What a hold keeps at most: a start takes seconds, a line publishes thousands of
# items a second; far beyond that something is wrong, and memory comes first.
MAX_HELD_ITEMS = 500_000


class EventBus(Generic[T]):
    """Synchronous fan-out to subscribed consumers, in subscription order.

    A consumer that starts late can still see everything: between :meth:`hold`
    and :meth:`release` every published batch is kept, and a consumer that
    subscribes meanwhile gets nothing live; :meth:`release` hands it everything
    published since the hold began, in order, and makes it a live consumer. The
    service holds its buses while the components that start after the PLC
    sources (the OPC UA server) come up.
    """

    def __init__(self) -> None:
        self._consumers: list[_Entry[T]] = []
        self._held: list[_Entry[T]] = []
        self._history: list[Sequence[T]] | None = None
        self._history_items = 0
        self.published = 0

    def subscribe(self, name: str, consumer: Callable[[Sequence[T]], None]) -> Callable[[], None]:
        """Add a consumer; returns the function that removes it."""
        entry = (name, consumer, OutageLog(log, f"event consumer {name}", consumer=name))
        (self._held if self._history is not None else self._consumers).append(entry)

        def unsubscribe() -> None:
            for entries in (self._consumers, self._held):
                if entry in entries:
                    entries.remove(entry)

        return unsubscribe

    @property
    def has_consumers(self) -> bool:
        return bool(self._consumers) or self._history is not None

    def hold(self) -> None:
        """Keep what is published, for consumers that subscribe from now on."""
        if self._history is None:
            self._history = []
            self._history_items = 0

    def release(self) -> None:
        """Replay what was kept to the consumers that subscribed since :meth:`hold`
        and make them live; stop keeping."""
        history, self._history = self._history, None
        held, self._held = self._held, []
        for entry in held:
            for events in history or ():
                self._deliver(entry, events)
        self._consumers.extend(held)

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
        history = self._history
        if history is not None:
            if self._history_items + len(events) <= MAX_HELD_ITEMS:
                history.append(tuple(events))
                self._history_items += len(events)
            elif self._history_items <= MAX_HELD_ITEMS:
                self._history_items = MAX_HELD_ITEMS + 1
                log.warning(
                    "event bus: more than %d items published while consumers start; "
                    "they miss the rest of them",
                    MAX_HELD_ITEMS,
                )

    @staticmethod
    def _deliver(entry: _Entry[T], events: Sequence[T]) -> None:
        _name, consumer, outage = entry
        try:
            consumer(events)
        except Exception as exc:  # one consumer must not stop the line
            outage.failed(repr(exc))
        else:
            if outage.is_down:
                outage.recovered()
