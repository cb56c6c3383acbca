"""Decode and check one MQTT message of an events topic before it goes near the database.

The envelope is checked by :func:`edge.wire.decode_batch` (schema version,
header types, ``seq_first..seq_last`` without gaps). On top of it, what the
store needs to keep a batch exactly once and typed:

- the topic is ``<prefix>/<site>/<line>/events`` (site and line come from it);
- ``count`` matches the events, and every event has ``machine_id`` (a string)
  and ``ts`` (finite epoch seconds);
- the event types the store splits into typed tables have the fields it reads,
  with the right types (:data:`REQUIRED`); other types are kept raw, as sent.

Anything else is a :class:`~edge.ingest.errors.MalformedBatch` naming the first
problem: the worker stores the message as a dead letter with that reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack

from edge.ingest.errors import MalformedBatch
from edge.wire import Batch, WireError, decode_batch, json_safe

__all__ = ["REQUIRED", "DecodedBatch", "EventRow", "decode_message", "line_of_topic", "peek"]

# Field kinds: "str", "str?" (or null), "int", "int?", "num", "num?", "bool", "map".
_KPIS = "kpis"
REQUIRED: Mapping[str, Mapping[str, str]] = {
    "PiecesCounted": {"role": "str", "count": "int", "order_id": "str?"},
    "StateChanged": {"state": "str", "previous": "str"},
    "StopStarted": {"stop_id": "int", "reason": "str", "category": "str"},
    "StopEnded": {
        "stop_id": "int",
        "start": "num",
        "end": "num",
        "duration_s": "num",
        "kind": "str",
        "reason": "str",
        "category": "str",
    },
    "StopReasonChanged": {
        "stop_id": "int",
        "reason": "str",
        "category": "str",
        "previous_reason": "str",
        "previous_category": "str",
        "stop_start": "num",
        "stop_end": "num?",
    },
    "ShiftClosed": {_KPIS: "map"},
    "WindowRevised": {_KPIS: "map"},
    "OrderWindowClosed": {"order_id": "str", _KPIS: "map"},
    "OrderStatusChanged": {
        "order_id": "str",
        "status": "str",
        "previous": "str",
        "reason": "str",
    },
    "OrderProgress": {
        "order_id": "str",
        "good_quantity": "int",
        "reject_quantity": "int",
        "total_quantity": "int",
        "target_quantity": "int",
    },
    "BatchRecordCompleted": {"order_id": "str", "record": "map"},
    "InspectionRecorded": {
        "station_id": "str",
        "order_id": "str?",
        "passed": "int",
        "failed": "int",
        "disposition": "str",
        "reason_code": "str",
        "source": "str",
        "feeds_machine_rejects": "bool",
    },
    "RejectsDisposed": {
        "station_id": "str",
        "order_id": "str?",
        "count": "int",
        "disposition": "str",
        "reason_code": "str",
    },
    "SpcViolation": {
        "station_id": "str",
        "order_id": "str?",
        "characteristic": "str",
        "chart": "str",
        "rule": "int",
        "value": "num?",
        "description": "str",
        "alarm_id": "str",
        "new_alarm": "bool",
    },
    "OutboxPolicyApplied": {
        "stream": "str",
        "policy": "str",
        "count": "int",
        "seq_first": "int?",
        "seq_last": "int?",
        "total": "int",
    },
}
# What a window's KPI map must hold (OEE.md section 6; ratios may be null).
KPI_FIELDS: Mapping[str, str] = {
    "window": "str",
    "key": "str",
    "name": "str",
    "start": "num",
    "end": "num",
    "closed": "bool",
    "open_stop": "bool",
    "scheduled_s": "num",
    "planned_stop_s": "num",
    "planned_production_s": "num",
    "run_s": "num",
    "downtime_s": "num",
    "downtime_events": "int",
    "micro_stops": "int",
    "micro_stop_s": "num",
    "total_count": "int",
    "good_count": "int",
    "reject_count": "int",
    "availability": "num?",
    "performance": "num?",
    "quality": "num?",
    "oee": "num?",
    "teep": "num?",
    "mtbf_s": "num?",
    "mttr_s": "num?",
    "downtime_by_reason": "map",
    "pieces_outside_ppt": "int",
}

# (edge_id, epoch, seq, type, site, line, machine_id, ts, data as JSON text, batch_id)
EventRow = tuple[str, str, int, str, str, str, str, datetime, str, str]
EVENT_COLUMNS = (
    "edge_id",
    "epoch",
    "seq",
    "type",
    "site",
    "line",
    "machine_id",
    "ts",
    "data",
    "batch_id",
)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch that passed every check, with its rows for ``plant.events``."""

    batch: Batch
    site: str
    line: str
    rows: tuple[EventRow, ...]
    types: tuple[str, ...]  # the distinct event types, sorted

    @property
    def events(self) -> int:
        return len(self.rows)


def line_of_topic(topic: str) -> tuple[str, str]:
    """(site, line) of ``<prefix>/<site>/<line>/events``."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[-1] != "events" or not parts[-2] or not parts[-3]:
        raise MalformedBatch(f"topic {topic!r} is not <prefix>/<site>/<line>/events")
    return parts[-3], parts[-2]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) < 1e300
    )


_CHECKS: Mapping[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "str?": lambda v: v is None or isinstance(v, str),
    "int": _is_int,
    "int?": lambda v: v is None or _is_int(v),
    "num": _is_num,
    "num?": lambda v: v is None or _is_num(v),
    "bool": lambda v: isinstance(v, bool),
    "map": lambda v: isinstance(v, dict),
}
_BIGINT = 1 << 63


def _check_fields(where: str, data: Mapping[str, Any], fields: Mapping[str, str]) -> None:
    for name, kind in fields.items():
        if name not in data:
            raise MalformedBatch(f"{where}: missing field {name!r}")
        value = data[name]
        if not _CHECKS[kind](value):
            raise MalformedBatch(
                f"{where}.{name}: must be {kind.rstrip('?')}"
                f"{' or null' if kind.endswith('?') else ''}, got {value!r:.40}"
            )
        if kind.startswith("int") and value is not None and not -_BIGINT <= value < _BIGINT:
            raise MalformedBatch(f"{where}.{name}: {value} does not fit 64 bits")


def _json(data: dict[str, Any]) -> str:
    try:
        text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError):  # NaN/infinity or bytes: the wire's JSON rules
        text = json.dumps(json_safe(data), separators=(",", ":"))
    if "\\u0000" in text:  # PostgreSQL's jsonb cannot hold NUL characters
        text = text.replace("\\u0000", "\\ufffd")
    return text


def decode_message(topic: str, payload: bytes) -> DecodedBatch:
    """The checked batch and its rows; MalformedBatch naming the first problem."""
    site, line = line_of_topic(topic)
    try:
        batch = decode_batch(payload)
    except WireError as exc:
        reason = str(exc)
        if reason.endswith(": ") and exc.__cause__ is not None:  # msgpack said nothing more
            reason += type(exc.__cause__).__name__
        raise MalformedBatch(reason) from exc
    if not batch.edge_id or not batch.epoch or not batch.batch_id:
        raise MalformedBatch("batch: edge_id, epoch and batch_id must not be empty")
    if batch.seq_last >= _BIGINT:
        raise MalformedBatch(f"batch.seq_last: {batch.seq_last} does not fit 64 bits")
    count = _count_of(payload)
    if count is not None and count != len(batch.events):
        raise MalformedBatch(f"batch.count: says {count}, the batch holds {len(batch.events)}")
    rows: list[EventRow] = []
    types: set[str] = set()
    edge_id, epoch, batch_id = batch.edge_id, batch.epoch, batch.batch_id
    for event in batch.events:
        data = event.data
        where = f"batch.events[seq {event.seq}] ({event.type})"
        machine_id, ts = data.get("machine_id"), data.get("ts")
        if not isinstance(machine_id, str):
            raise MalformedBatch(f"{where}.machine_id: must be a string, got {machine_id!r:.40}")
        if not _is_num(ts):
            raise MalformedBatch(f"{where}.ts: must be epoch seconds, got {ts!r:.40}")
        assert isinstance(ts, int | float)
        required = REQUIRED.get(event.type)
        if required is not None:
            _check_fields(where, data, required)
            kpis = data.get(_KPIS)
            if isinstance(kpis, dict):
                _check_fields(f"{where}.kpis", kpis, KPI_FIELDS)
        types.add(event.type)
        rows.append(
            (
                edge_id,
                epoch,
                event.seq,
                event.type,
                site,
                line,
                machine_id,
                datetime.fromtimestamp(ts, UTC),
                _json(data),
                batch_id,
            )
        )
    return DecodedBatch(batch, site, line, tuple(rows), tuple(sorted(types)))


def _count_of(payload: bytes) -> int | None:
    """The header's ``count`` (decode_batch does not keep it); None when absent."""
    # A second unpack would double the cost; the header is at the front, so read
    # the map lazily and stop at "events".
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(payload)
    try:
        size = unpacker.read_map_header()
        for _ in range(size):
            key = unpacker.unpack()
            if key == "count":
                value = unpacker.unpack()
                return int(value) if _is_int(value) else -1
            unpacker.skip()
    except Exception:  # decode_batch already accepted it; be lenient here
        return None
    return None


def peek(payload: bytes) -> dict[str, Any]:
    """What can be read of a rejected message's header, for the dead-letter row."""
    try:
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:  # every way bytes from outside can be wrong
        return {}
    if not isinstance(doc, dict):
        return {}
    found: dict[str, Any] = {}
    for key in ("edge_id", "epoch", "batch_id"):
        if isinstance(doc.get(key), str):
            found[key] = doc[key]
    for key in ("seq_first", "seq_last"):
        value = doc.get(key)
        if isinstance(value, int) and _is_int(value) and -_BIGINT <= value < _BIGINT:
            found[key] = value
    return found
