"""The line's event streams for their consumers (MQTT, QMIB), as one component.

The outbox and its writer belong to the line (edge.state: they keep the line's
state in the same transactions); listing :func:`component` makes the line store
events for a consumer too, and lets the MQTT and QMIB components find the
streams (:func:`find_outbox`).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from types import TracebackType
from typing import Self

from edge.context import LineContext
from edge.errors import EdgeError
from edge.state.outbox import EVENTS_STREAM, OutboxStatistics, statistics_of

__all__ = ["OutboxComponent", "component", "find_outbox"]

log = logging.getLogger("edge.outbox")


class OutboxComponent:
    """The line's event streams for their consumers, as one component of the line.

    The outbox and its writer belong to the service (they keep the line's state
    too); listing this component makes the service store events as well
    (:func:`component` among its factories). List it
    before the MQTT and QMIB components: they find it on ``context.components``
    (:func:`find_outbox`).
    """

    def __init__(self, context: LineContext) -> None:
        self.outbox = context.outbox
        self.writer = context.writer

    async def __aenter__(self) -> Self:
        depth = self.outbox.depth(EVENTS_STREAM)
        if depth:
            log.info(
                "outbox: events from before this start are waiting for the MES",
                extra={"events": depth, "path": str(self.outbox.path)},
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to do: the service stores the last events and state when it stops."""

    def statistics(self) -> OutboxStatistics:
        return statistics_of(self.outbox, self.writer)

    def metric_values(self) -> dict[str, float | int | bool | None]:
        """For edge.serve.metrics (its MetricsSource protocol): the outbox's figures."""
        streams = self.outbox.stream_statistics().values()
        ages = [s.oldest_age_s for s in streams if s.oldest_age_s is not None]
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += Path(f"{self.outbox.path}{suffix}").stat().st_size
        return {
            "outbox_depth": sum(s.depth for s in streams),
            "outbox_oldest_age_s": max(ages) if ages else 0.0,
            "outbox_size_bytes": size,
            "outbox_appended": self.outbox.appended,
            "outbox_dropped": self.outbox.dropped,
            # Refused by the disk cap (reject-new) or, the disk stalled, by the memory bound.
            "outbox_rejected": self.outbox.rejected + self.writer.refused_memory,
        }

    def banner(self) -> list[str]:
        o = self.outbox
        return [
            f"outbox      {o.path} ({o.depth(EVENTS_STREAM)} events waiting; cap "
            f"{o.max_bytes:,} bytes, {o.policy.value}; synchronous={o.synchronous})"
        ]


def component(context: LineContext) -> OutboxComponent:
    """The component factory (list it before the MQTT and QMIB components)."""
    return OutboxComponent(context)


def find_outbox(context: LineContext) -> OutboxComponent:
    """The running outbox component; an EdgeError naming the wiring mistake otherwise."""
    for candidate in context.components:
        if isinstance(candidate, OutboxComponent):
            return candidate
    raise EdgeError(
        "the outbox component (edge.forward.streams.component) must be listed before the MQTT and "
        "QMIB components"
    )
