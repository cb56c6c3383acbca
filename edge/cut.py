"""The consistent cut: the state a restart restores, taken together with its events.

The state writer (:class:`edge.outbox.OutboxWriter`) takes a cut right before
each commit, synchronously on the event loop, and stores it in the same
transaction as every event published up to that moment. Each part of the line
that has state registers a *source* (``cuts.add("machines", collect)``): a
synchronous function returning, for every key whose state changed since its
last call, the state to save (a :class:`Saved`) or ``None`` to delete the key.

Two rules make the cut consistent:

- an actor's part is taken between two of its messages (``ActorRef.cut``), so it
  agrees with every event it published; messages carrying state from one actor
  to another that are still queued are saved with the receiver (``pending``);
- an operation of several steps (an order command: the order, its machines, the
  status event) holds the :class:`Gate`; no cut is taken while anyone holds it,
  so a restart never sees half of it.

Sources are asked in the order they were added: the machines before the orders
they feed, so a piece a machine counted is either in its order's state or in
the order's pending messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.errors import StateStoreError
from edge.state_store import SnapshotRow, pack_row
from edge.wire import to_plain

log = logging.getLogger("edge.cut")

__all__ = ["CutSources", "Gate", "Saved", "StateSource", "decode_pending", "encode_pending"]


@dataclass(frozen=True, slots=True)
class Saved:
    """One key's part of a cut: plain data and the messages still in flight to it."""

    data: object
    pending: tuple[object, ...] = ()


StateSource = Callable[[], Mapping[str, Saved | None]]


class Gate:
    """Held by operations of several steps; a cut waits until nobody holds it."""

    def __init__(self) -> None:
        self._holders = 0
        self._clear = asyncio.Event()
        self._clear.set()

    @property
    def held(self) -> bool:
        return self._holders > 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._holders += 1
        self._clear.clear()
        try:
            yield
        finally:
            self._holders -= 1
            if self._holders == 0:
                self._clear.set()

    async def cleared(self) -> None:
        """Until nobody holds the gate; returns without yielding when that is already so."""
        while self._holders:
            await self._clear.wait()


class CutSources:
    """The line's state sources and its gate."""

    def __init__(self) -> None:
        self.gate = Gate()
        self._sources: list[tuple[str, StateSource]] = []

    def add(self, name: str, source: StateSource) -> Callable[[], None]:
        """Register a source; returns the function that removes it."""
        entry = (name, source)
        self._sources.append(entry)

        def remove() -> None:
            if entry in self._sources:
                self._sources.remove(entry)

        return remove

    def collect(self) -> dict[str, SnapshotRow]:
        """Every source's changes, packed: key -> row, or None to delete the key.

        Raises StateStoreError when a source cannot give a consistent part now (an
        actor half-way through a message); the caller tries again shortly.
        """
        rows: dict[str, SnapshotRow] = {}
        for name, source in self._sources:
            try:
                changes = source()
            except Exception as exc:
                raise StateStoreError(f"state source {name}: {exc}") from exc
            for key, saved in changes.items():
                if saved is None:
                    rows[key] = None
                    continue
                try:
                    rows[key] = pack_row(saved.data, saved.pending)
                except StateStoreError as exc:
                    # A bug (state that is not plain data): keep the last saved state.
                    log.error("state not saved", extra={"key": key, "error": str(exc)})
        return rows


def encode_pending(messages: Sequence[object]) -> tuple[object, ...]:
    """Queued messages (flat frozen dataclasses) as plain data: ``[type name, fields]``."""
    return tuple([type(m).__name__, to_plain(m)] for m in messages)


def decode_pending(items: Sequence[Any], kinds: Sequence[type]) -> list[object]:
    """Messages back from :func:`encode_pending`; unknown or malformed ones are skipped (logged)."""
    by_name = {kind.__name__: kind for kind in kinds}
    messages: list[object] = []
    for item in items:
        try:
            name, fields = item
            kind = by_name[name]
            names = {f.name for f in dataclasses.fields(kind)}
            messages.append(kind(**{k: v for k, v in fields.items() if k in names}))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            log.error(
                "a saved message in flight cannot be read; skipped", extra={"error": repr(exc)}
            )
    return messages
