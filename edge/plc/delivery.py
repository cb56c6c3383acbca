"""What a PLC source hands to the core: batches of changed samples and link changes.

Only changes travel (per signal, against the last value *delivered*), which
keeps a 40-point machine polled every 100 ms from flooding the mailboxes with
repeats. After a reconnect the filter is cleared, so the full current value
set goes out and the core re-baselines its counters (OEE.md §5).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from actors.messages import LinkChanged, Quality, Sample, Value

__all__ = ["ChangeFilter", "SampleSink", "SourceEvent"]

SourceEvent = Sample | LinkChanged
SampleSink = Callable[[Sequence[SourceEvent]], Awaitable[None]]


class ChangeFilter:
    """Remembers the last delivered (value, quality) of every signal of every machine."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, dict[str, tuple[Value, Quality]]] = {}

    def changed(self, machine_id: str, signal: str, value: Value, quality: Quality) -> bool:
        """True (and remembered as delivered) when this differs from the last one."""
        signals = self._last.get(machine_id)
        if signals is None:
            signals = self._last[machine_id] = {}
        last = signals.get(signal)
        # type() too: True == 1 == 1.0 in Python, but a changed type is a change.
        if (
            last is not None
            and last[1] is quality
            and type(last[0]) is type(value)
            and last[0] == value
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
