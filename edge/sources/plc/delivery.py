"""What a PLC source hands to the core: batches of changed samples and link changes.

Only changes travel (per signal, against the last value *delivered*), which
keeps a 40-point machine polled every 100 ms from flooding the mailboxes with
repeats. After a reconnect the filter is cleared, so the full current value
set goes out and the core re-baselines its counters (OEE.md §5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence

from actors.messages import LinkChanged, Quality, Sample, Value

__all__ = ["ChangeFilter", "Handover", "SampleSink", "SourceEvent", "per_reader"]

SourceEvent = Sample | LinkChanged
SampleSink = Callable[[Sequence[SourceEvent]], Awaitable[None]]


def per_reader(
    batch: Sequence[SourceEvent],
) -> Iterator[tuple[str, tuple[Sample, ...] | LinkChanged]]:
    """A source batch as one message per reader (machine or station): its samples
    together, a link change sent after that reader's samples before it, so each
    reader sees its samples and link changes in the order the source produced them."""
    pending: dict[str, list[Sample]] = {}
    for item in batch:
        if isinstance(item, Sample):
            pending.setdefault(item.machine_id, []).append(item)
            continue
        samples = pending.pop(item.machine_id, None)
        if samples:
            yield item.machine_id, tuple(samples)
        yield item.machine_id, item
    for reader_id, samples in pending.items():
        yield reader_id, tuple(samples)


class Handover:
    """Hands a source's batches to the sink, keeping what a failed call must not lose.

    A link change is the truth about the link and is never lost: one the sink did
    not take goes again first with the next batch. Samples are not kept: the
    source sends its full value set again (it forgets what it delivered), which
    is newer anyway. A failure is logged once and the recovery once.
    """

    __slots__ = ("_failing", "_log", "_name", "_pending", "_retry", "_sink")

    def __init__(self, sink: SampleSink, name: str, log: logging.Logger, retry: str) -> None:
        self._sink = sink
        self._name = name
        self._log = log
        self._retry = retry  # how the source sends its values again, for the log
        self._pending: list[SourceEvent] = []  # link changes a failed sink call did not take
        self._failing = False

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    async def deliver(self, batch: list[SourceEvent]) -> bool:
        """False when the sink failed: the caller forgets what it delivered."""
        if self._pending:
            batch = [*self._pending, *batch]
            self._pending = []
        if not batch:
            return True
        try:
            await self._sink(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._pending = [e for e in batch if isinstance(e, LinkChanged)]
            if not self._failing:
                self._failing = True
                self._log.exception("%s: the sample sink failed; %s", self._name, self._retry)
            return False
        if self._failing:
            self._failing = False
            self._log.info("%s: the sample sink accepts batches again", self._name)
        return True


class ChangeFilter:
    """Remembers the last delivered (value, quality) of every signal of every machine."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, dict[str, tuple[Value, Quality]]] = {}

    def changed(
        self,
        machine_id: str,
        signal: str,
        value: Value,
        quality: Quality,
        deadband: float = 0.0,
    ) -> bool:
        """True (and remembered as delivered) when this differs from the last one; a
        GOOD number within ``deadband`` of the last delivered one does not."""
        signals = self._last.get(machine_id)
        if signals is None:
            signals = self._last[machine_id] = {}
        last = signals.get(signal)
        # type() too: True == 1 == 1.0 in Python, but a changed type is a change.
        if (
            last is not None
            and last[1] is quality
            and type(last[0]) is type(value)
            and (
                last[0] == value
                or (
                    deadband > 0.0
                    and quality is Quality.GOOD
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and abs(last[0] - value) < deadband  # type: ignore[operator]
                )
            )
        ):
            return False
        signals[signal] = (value, quality)
        return True

    def forget(self, machine_id: str | None = None) -> None:
        """Forget one machine (or all): its next values are delivered in full."""
        if machine_id is None:
            self._last.clear()
        else:
            self._last.pop(machine_id, None)
