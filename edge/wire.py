"""The versioned wire schema: how the edge's events travel to the MES and QMIB.

Every domain event is a (frozen) dataclass; it is encoded generically, so an
event type defined anywhere in the project travels without a line of code
here. The rules, which are the schema (``SCHEMA_VERSION`` = 1):

- an event becomes an **envelope** ``{"seq": int, "type": str, "data": map}``:
  ``seq`` is the edge's persisted 64-bit sequence number (assigned by the
  outbox), ``type`` the event class name (``"StopEnded"``; class names are
  unique across the project and part of the schema), ``data`` its fields;
- field values map to plain data: ``str``/``int``/``float``/``bool``/``None``
  and ``bytes`` as they are; an ``Enum`` as its value (``"running"``); a nested
  dataclass (``KpiRecord``) as a map of its fields, without a type tag; a
  tuple, list, set or frozenset as an array (sets sorted); a mapping as a map
  (keys are strings or plain scalars; an Enum key as its value); ``datetime``,
  ``date`` and ``time`` as ISO 8601 strings, ``timedelta`` as seconds,
  ``Path``, ``Decimal`` and ``UUID`` as strings. Times in events are float
  epoch seconds UTC (``ts``). Computed properties are not sent;
- a **batch** (one MQTT message on ``<prefix>/<site>/<line>/events``) is a
  msgpack map ``{"v", "edge_id", "epoch", "batch_id", "seq_first",
  "seq_last", "count", "historical", "sent_at", "events": [envelope, ...]}``.
  ``epoch`` is a random id fixed when the edge's outbox was created: a new
  epoch means the sequence restarted at 1. ``batch_id`` names exactly the
  range ``seq_first..seq_last``; a batch sent again (after a lost PUBACK or a
  restart) carries the same ``batch_id`` and the same events, so the MES drops
  duplicates by ``batch_id`` (or by ``seq``). ``historical`` is true for events
  that waited in the outbox (a broker outage, an edge restart);
- the **status** message (retained, ``<prefix>/<site>/<line>/status``) is JSON:
  the birth ``{"v", "status": "online", "edge_id", "epoch", "version",
  "site", "area", "line", "name", "machines": [{"id", "name"}], "mqtt", "ts"}``
  and the death ``{"v", "status": "offline", "edge_id", "reason", "ts"}``;
- a **KPI snapshot** (retained, ``<prefix>/<site>/<line>/machines/<id>/oee``) is
  a msgpack map ``{"v", "edge_id", "ts", ...}`` plus the fields of the machine's
  status (state, counters, ``current_shift`` and ``last_closed_shift`` KPIs).

Events are encoded by msgspec where it follows these rules exactly (scalars,
str/int Enums, tuples, str-keyed maps, nested dataclasses: nearly every event
type), by msgpack with a default hook otherwise (sets, times, ``Any``);
``tests/unit/mqtt/test_wire_golden.py`` holds both to the same bytes.

Adding a field to an event is compatible (consumers ignore what they do not
know); renaming or removing one, or changing these rules, bumps
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import operator
import threading
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any, Literal, TypeGuard

import msgpack
import msgspec

from edge.errors import EdgeError

__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "BatchHeader",
    "WireError",
    "WireEvent",
    "batch_id_for",
    "decode_batch",
    "decode_envelope",
    "decode_kpi_snapshot",
    "decode_status",
    "encode_batch",
    "encode_batch_packed",
    "encode_envelope",
    "encode_kpi_snapshot",
    "encode_status",
    "envelope",
    "envelope_packer",
    "event_body",
    "json_safe",
    "pack_event",
    "pack_event_generic",
    "to_plain",
]

SCHEMA_VERSION = 1


class WireError(EdgeError):
    """A value cannot be encoded, or a payload is not what the schema says."""


# --------------------------------------------------------------------------- plain data

_AS_IS: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    try:
        return _FIELDS[cls]
    except KeyError:
        names = (
            tuple(f.name for f in dataclasses.fields(cls))
            if dataclasses.is_dataclass(cls)
            else None
        )
        _FIELDS[cls] = names
        return names


def to_plain(value: object) -> Any:
    """``value`` as msgpack/JSON-able plain data, by the rules in the module docstring."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    if isinstance(value, Enum):
        return to_plain(value.value)
    names = _field_names(kind)
    if names is not None:
        return {name: to_plain(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {_key(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((to_plain(item) for item in value), key=_sort_key)
    return _scalar(value)


def _key(key: object) -> Any:
    if type(key) in _AS_IS:
        return key
    plain = to_plain(key)
    return plain if type(plain) in _AS_IS else str(plain)


def _sort_key(item: object) -> tuple[str, str]:
    return (type(item).__name__, repr(item))


def _scalar(value: object) -> Any:
    if isinstance(value, str):  # a str subclass that is not an Enum
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath | Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise WireError(f"cannot encode a {type(value).__name__} on the wire: {value!r:.80}")


def event_body(event: object) -> tuple[str, dict[str, Any]]:
    """An event's wire ``type`` and ``data`` as plain data; WireError for a non-dataclass."""
    names = _field_names(type(event))
    if names is None:
        raise WireError(f"an event must be a dataclass, got {type(event).__name__}")
    return type(event).__name__, {name: to_plain(getattr(event, name)) for name in names}


def _pack_default(value: object) -> Any:
    # msgpack calls this only for what it cannot pack natively: the same rules as
    # to_plain, one level at a time (msgpack recurses into what this returns).
    if isinstance(value, Enum):
        return value.value
    names = _field_names(type(value))
    if names is not None:
        return {name: getattr(value, name) for name in names}
    if isinstance(value, set | frozenset):
        return sorted((to_plain(item) for item in value), key=_sort_key)
    if isinstance(value, Mapping):
        return dict(value)
    return _scalar(value)


_PACKER_OPTIONS: dict[str, Any] = {"use_bin_type": True, "default": _pack_default}
_local = threading.local()  # msgpack Packers are not thread-safe: one per thread
_GETTERS: dict[type, tuple[tuple[str, ...], Callable[[object], tuple[Any, ...]]]] = {}


def _packers() -> tuple[msgpack.Packer, msgpack.Packer, msgspec.msgpack.Encoder]:
    """(event packer with the wire's default hook, plain packer, msgspec encoder) of this thread."""
    try:
        packers: tuple[msgpack.Packer, msgpack.Packer, msgspec.msgpack.Encoder] = _local.packers
    except AttributeError:
        packers = (
            msgpack.Packer(**_PACKER_OPTIONS),
            msgpack.Packer(use_bin_type=True),
            msgspec.msgpack.Encoder(),
        )
        _local.packers = packers
    return packers


def _getter(cls: type) -> tuple[tuple[str, ...], Callable[[object], tuple[Any, ...]]] | None:
    found = _GETTERS.get(cls)
    if found is None:
        names = _field_names(cls)
        if names is None:
            return None
        if len(names) > 1:
            found = (names, operator.attrgetter(*names))
        else:
            found = (names, lambda obj: tuple(getattr(obj, n) for n in names))
        _GETTERS[cls] = found
    return found


def pack_event_generic(event: object) -> tuple[str, bytes]:
    """:func:`pack_event` by the rules alone (msgpack and the default hook): the reference.

    Slower; what pack_event falls back to for a type msgspec would encode
    differently, and the baseline of ``edge bench wire``.
    """
    cls = type(event)
    getter = _getter(cls)
    if getter is None:
        raise WireError(f"an event must be a dataclass, got {cls.__name__}")
    names, values = getter
    packer = _packers()[0]
    try:
        # zip without strict: names and values come from the same field list.
        packed: bytes = packer.pack(dict(zip(names, values(event))))  # noqa: B905
    except (TypeError, ValueError, OverflowError) as exc:
        packer.reset()
        raise WireError(f"cannot encode {cls.__name__}: {exc}") from exc
    return cls.__name__, packed


_NATIVE: dict[type, bool] = {}
_PLAIN_TYPES = (str, int, float, bool, bytes, type(None))


def _encodes_natively(hint: Any, seen: set[type]) -> bool:
    """Whether msgspec encodes values of ``hint`` exactly as the rules say.

    It does for scalars, str/int Enums, tuples, lists, str-keyed dicts and
    dataclasses of those; not for sets (the rules sort them), dates and times
    (ISO strings here, msgpack timestamps there), init=False fields (msgspec
    skips them) or anything unannotated.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _PLAIN_TYPES:
        return True
    if isinstance(hint, type) and issubclass(hint, Enum):
        return all(type(m.value) in (str, int) for m in hint)
    if origin is Literal:
        return all(type(arg) in _PLAIN_TYPES for arg in args)
    if origin in (typing.Union, types.UnionType, tuple, list):
        return all(arg is Ellipsis or _encodes_natively(arg, seen) for arg in args)
    if origin is dict:
        return args[0] is str and _encodes_natively(args[1], seen)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint in seen:
            return True
        try:
            hints = typing.get_type_hints(hint)
        except (NameError, TypeError):
            return False
        fields = dataclasses.fields(hint)
        seen.add(hint)
        return all(f.init and _encodes_natively(hints[f.name], seen) for f in fields)
    return False


def pack_event(event: object) -> tuple[str, bytes]:
    """An event's wire ``type`` and its ``data`` map packed (msgpack), in C.

    The hot path of the outbox; byte for byte what :func:`pack_event_generic`
    gives (a test holds them to it for every event type). msgspec encodes an
    event type whose annotations it follows exactly; any other type, or a value
    that does not fit its annotation, takes the generic path.
    """
    cls = type(event)
    native = _NATIVE.get(cls)
    if native is None:
        native = _NATIVE[cls] = dataclasses.is_dataclass(cls) and _encodes_natively(cls, set())
    if native:
        try:
            return cls.__name__, _packers()[2].encode(event)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
            pass  # a value outside its annotation: the generic path encodes it, or says why
    return pack_event_generic(event)


_ENVELOPE_HEAD: bytes = msgpack.packb("seq")
_TYPE_PARTS: dict[str, bytes] = {}


def envelope(seq: int, type_name: str, packed_data: bytes) -> bytes:
    """The envelope ``{"seq", "type", "data"}`` around an already-packed data map."""
    middle = _TYPE_PARTS.get(type_name)
    if middle is None:
        middle = b"".join(msgpack.packb(part) for part in ("type", type_name, "data"))
        _TYPE_PARTS[type_name] = middle
    head: bytes = _packers()[2].encode(seq)
    return b"\x83" + _ENVELOPE_HEAD + head + middle + packed_data


def envelope_packer() -> Callable[[object, int], bytes]:
    """A function packing ``(event, seq)`` into its envelope, for the calling thread.

    The same bytes as ``envelope(seq, *pack_event(event))``; for an event type
    msgspec encodes natively, the whole envelope is one C call (the outbox's
    per-event cost, edge bench outbox).
    """
    encode = _packers()[2].encode
    native = _NATIVE

    def pack_envelope(event: object, seq: int) -> bytes:
        cls = type(event)
        if native.get(cls) is None:
            pack_event(event)  # decides, once per type, whether msgspec follows the rules
        if native[cls]:
            try:
                packed: bytes = encode({"seq": seq, "type": cls.__name__, "data": event})
            except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
                pass  # a value outside its annotation: the generic path
            else:
                return packed
        return envelope(seq, *pack_event(event))

    return pack_envelope


def encode_envelope(seq: int, type_name: str, data: Mapping[str, Any]) -> bytes:
    """One event as stored in the outbox and sent inside a batch."""
    try:
        packed: bytes = msgpack.packb(dict(data), **_PACKER_OPTIONS)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f"cannot encode {type_name} #{seq}: {exc}") from exc
    return envelope(seq, type_name, packed)


@dataclass(frozen=True, slots=True)
class WireEvent:
    """A decoded envelope."""

    seq: int
    type: str
    data: dict[str, Any]


def decode_envelope(payload: bytes) -> WireEvent:
    try:
        item = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # every way bytes from outside can be wrong
        raise WireError(f"event envelope is not msgpack: {exc}") from exc
    return _envelope(item, "event")


def _envelope(item: object, where: str) -> WireEvent:
    if not isinstance(item, dict):
        raise WireError(f"{where}: must be a map, got {type(item).__name__}")
    seq, type_name, data = item.get("seq"), item.get("type"), item.get("data")
    if not _is_int(seq) or seq < 0:
        raise WireError(f"{where}.seq: must be a non-negative integer, got {seq!r:.40}")
    if not isinstance(type_name, str) or not type_name:
        raise WireError(f"{where}.type: must be a non-empty string, got {type_name!r:.40}")
    if not isinstance(data, dict):
        raise WireError(f"{where}.data: must be a map, got {type(data).__name__}")
    return WireEvent(seq, type_name, data)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True, slots=True)
class BatchHeader:
    edge_id: str
    epoch: str
    batch_id: str
    seq_first: int
    seq_last: int
    count: int
    historical: bool
    sent_at: float


def batch_id_for(epoch: str, seq_first: int, seq_last: int) -> str:
    """The id of a batch: it names the sequence range, so a resend repeats it."""
    return f"{epoch}-{seq_first}-{seq_last}"


def encode_batch(header: BatchHeader, envelopes: Sequence[bytes]) -> bytes:
    """A batch from already-encoded envelopes (as the outbox stores them): no re-encoding."""
    if header.count != len(envelopes):
        raise WireError(f"batch header says {header.count} events, got {len(envelopes)}")
    return encode_batch_packed(header, b"".join(envelopes))


def encode_batch_packed(header: BatchHeader, envelopes: bytes) -> bytes:
    """:func:`encode_batch` from the envelopes already joined (the outbox reads them so).

    ``envelopes`` must hold exactly ``header.count`` envelopes, back to back.
    """
    fields = {
        "v": SCHEMA_VERSION,
        "edge_id": header.edge_id,
        "epoch": header.epoch,
        "batch_id": header.batch_id,
        "seq_first": header.seq_first,
        "seq_last": header.seq_last,
        "count": header.count,
        "historical": header.historical,
        "sent_at": header.sent_at,
    }
    encode = _packers()[2].encode
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(len(fields) + 1)]
    for key, value in fields.items():
        parts.append(encode(key))
        parts.append(encode(value))
    parts.append(encode("events"))
    parts.append(packer.pack_array_header(header.count))
    parts.append(envelopes)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Batch:
    """A decoded batch."""

    v: int
    edge_id: str
    epoch: str
    batch_id: str
    seq_first: int
    seq_last: int
    historical: bool
    sent_at: float
    events: tuple[WireEvent, ...]


def decode_batch(payload: bytes, *, require_complete: bool = True) -> Batch:
    """Decode and check a batch; raises WireError naming the first thing wrong.

    With ``require_complete`` false, events that do not run ``seq_first..seq_last``
    exactly are no error: the caller checks them (``edge tail`` reports such a batch).
    """
    try:
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # every way bytes from outside can be wrong
        raise WireError(f"batch is not msgpack: {exc}") from exc
    if not isinstance(doc, dict):
        raise WireError(f"batch: must be a map, got {type(doc).__name__}")
    version = doc.get("v")
    if version != SCHEMA_VERSION:
        raise WireError(f"batch.v: schema version {version!r} is not {SCHEMA_VERSION}")
    edge_id, epoch, batch_id = doc.get("edge_id"), doc.get("epoch"), doc.get("batch_id")
    for key, value in (("edge_id", edge_id), ("epoch", epoch), ("batch_id", batch_id)):
        if not isinstance(value, str):
            raise WireError(f"batch.{key}: must be a string, got {value!r:.40}")
    assert isinstance(edge_id, str) and isinstance(epoch, str) and isinstance(batch_id, str)
    first, last, sent_at = doc.get("seq_first"), doc.get("seq_last"), doc.get("sent_at")
    if not _is_int(first) or not _is_int(last) or first > last:
        raise WireError(
            f"batch.seq_first/seq_last: must be integers, first <= last: {first!r}..{last!r}"
        )
    if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
        raise WireError(f"batch.sent_at: must be a number, got {sent_at!r:.40}")
    raw_events = doc.get("events")
    if not isinstance(raw_events, list):
        raise WireError("batch.events: must be an array")
    events = tuple(_envelope(item, f"batch.events[{i}]") for i, item in enumerate(raw_events))
    seqs = [e.seq for e in events]
    if require_complete and seqs != list(range(first, last + 1)):
        raise WireError(
            f"batch.events: sequence numbers must run {first}..{last} without gaps, "
            f"got {len(seqs)} events"
        )
    return Batch(
        v=version,
        edge_id=edge_id,
        epoch=epoch,
        batch_id=batch_id,
        seq_first=first,
        seq_last=last,
        historical=bool(doc.get("historical", False)),
        sent_at=float(sent_at),
        events=events,
    )


# --------------------------------------------------------------------------- status, KPIs


def encode_status(status: str, **fields: Any) -> bytes:
    """A birth (``"online"``) or death (``"offline"``) message, JSON."""
    doc = {"v": SCHEMA_VERSION, "status": status, **{k: to_plain(v) for k, v in fields.items()}}
    return json.dumps(json_safe(doc), separators=(",", ":"), sort_keys=True).encode()


def decode_status(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"status is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("status") not in ("online", "offline"):
        raise WireError("status: must be a JSON object with status online|offline")
    return doc


def encode_kpi_snapshot(edge_id: str, ts: float, machine_status: object) -> bytes:
    """A machine's retained KPI snapshot (its status record, generically encoded)."""
    body = to_plain(machine_status)
    if not isinstance(body, dict):
        raise WireError("a KPI snapshot needs a dataclass machine status")
    return _packers()[2].encode({"v": SCHEMA_VERSION, "edge_id": edge_id, "ts": ts, **body})


def decode_kpi_snapshot(payload: bytes) -> dict[str, Any]:
    try:
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # every way bytes from outside can be wrong
        raise WireError(f"KPI snapshot is not msgpack: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != SCHEMA_VERSION:
        raise WireError("KPI snapshot: must be a map with v = 1")
    return doc


def json_safe(value: Any) -> Any:
    """Plain data made valid JSON: NaN/infinity become null, bytes become hex strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value
