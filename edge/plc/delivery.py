"""What a PLC source hands to the core: batches of changed samples and link changes.

Only changes travel (per signal, against the last value *delivered*), which
keeps a 40-point machine polled every 100 ms from flooding the mailboxes with
repeats. After a reconnect the filter is cleared, so the full current value
set goes out and the core re-baselines its counters (OEE.md §5).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence

from actors.messages import LinkChanged, Quality, Sample, Value

__all__ = ["ChangeFilter", "SampleSink", "SourceEvent", "per_reader"]

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
