"""Hot-log trace lines (OEE.md §7) to :class:`~actors.messages.Sample`.

One JSON object a line::

    {"ts":"2025-08-22T00:37:41Z","resource_id":"SMT01","work_order_id":"WO123",
     "operation_id":"OP10","sensor":"total_count","value":4711,"unit":"pcs","meta":{"site":"BKK"}}

Required: ``ts`` (ISO 8601 *with* a zone, ``Z`` or an offset), ``resource_id``
(the machine id), ``sensor`` (a signal role or a process value name) and a
numeric ``value`` (a JSON number or boolean, finite). Optional:
``work_order_id`` and ``quality`` (``good``, ``uncertain``, ``bad``; default
good). Other keys are ignored. A line that breaks these rules raises
:class:`~edge.errors.TraceError` naming what is wrong; the caller decides what
to do with it (``edge replay`` skips it and reports its line number).

This is where datetimes end: the sample carries float epoch seconds UTC.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

from actors.messages import Quality, Sample
from edge.errors import TraceError

_QUALITIES = {q.value: q for q in Quality}
_GOOD = Quality.GOOD


def parse_timestamp(text: object) -> float:
    """ISO 8601 with a zone to epoch seconds; naive timestamps are refused (which zone?)."""
    if not isinstance(text, str):
        raise TraceError(f"ts must be an ISO 8601 string, got {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TraceError(f"ts {text!r} is not an ISO 8601 timestamp") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise TraceError(f"ts {text!r} has no time zone (add Z or an offset such as +07:00)")
    return moment.timestamp()


class TraceParser:
    """Parses trace lines; remembers the last timestamp text (a poll's lines share it)."""

    __slots__ = ("_last_text", "_last_ts")

    def __init__(self) -> None:
        self._last_text: object = None
        self._last_ts = 0.0

    def parse(self, line: str | bytes) -> Sample:
        try:
            record = json.loads(line)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise TraceError(f"not valid JSON: {exc}") from exc
        if type(record) is not dict:
            raise TraceError(f"not a JSON object but {type(record).__name__}")
        text = record.get("ts")
        if text is None:
            raise TraceError("missing ts")
        if text == self._last_text:
            ts = self._last_ts
        else:
            ts = parse_timestamp(text)
            self._last_text, self._last_ts = text, ts
        machine_id = record.get("resource_id")
        if type(machine_id) is not str or not machine_id:
            raise TraceError(f"resource_id must be a non-empty string, got {machine_id!r}")
        signal = record.get("sensor")
        if type(signal) is not str or not signal:
            raise TraceError(f"sensor must be a non-empty string, got {signal!r}")
        value = record.get("value")
        kind = type(value)
        if kind is not int and kind is not float and kind is not bool:
            raise TraceError(f"value of {signal} must be a number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise TraceError(f"value of {signal} must be finite, got {value!r}")
        order = record.get("work_order_id")
        if order is not None and type(order) is not str:
            raise TraceError(f"work_order_id must be a string, got {order!r}")
        quality_text = record.get("quality")
        if quality_text is None:
            quality = _GOOD
        else:
            found = _QUALITIES.get(quality_text) if isinstance(quality_text, str) else None
            if found is None:
                raise TraceError(
                    f"quality must be one of {', '.join(_QUALITIES)}, got {quality_text!r}"
                )
            quality = found
        return Sample(machine_id, signal, value, ts, quality, order)
