"""The wire schema: generic event encoding, envelopes, batches, status and KPI payloads."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.oee.events import PiecesCounted, ShiftClosed, StateChanged, StopEnded
from actors.oee.kpi import KpiRecord
from actors.oee.params import ReasonCategory
from actors.oee.state import MachineState
from actors.oee.stops import StopKind
from edge.wire import (
    SCHEMA_VERSION,
    BatchHeader,
    WireError,
    batch_id_for,
    decode_batch,
    decode_envelope,
    decode_status,
    encode_batch,
    encode_envelope,
    encode_status,
    envelope,
    event_body,
    json_safe,
    pack_event,
    to_plain,
)

KPI = KpiRecord(
    machine_id="M1",
    window="shift",
    key="Day@2026-01-05",
    name="Day",
    start=100.0,
    end=200.0,
    closed=True,
    open_stop=False,
    scheduled_s=100.0,
    planned_stop_s=0.0,
    planned_production_s=100.0,
    run_s=90.0,
    downtime_s=10.0,
    downtime_events=1,
    micro_stops=0,
    micro_stop_s=0.0,
    total_count=80,
    good_count=78,
    reject_count=2,
    availability=0.9,
    performance=None,
    quality=0.975,
    oee=None,
    teep=None,
    mtbf_s=90.0,
    mttr_s=10.0,
    downtime_by_reason={"jam": 10.0},
    pieces_outside_ppt=0,
)

EVENTS: list[object] = [
    PiecesCounted("M1", 1.5, "total_count", 3, None),
    StateChanged("M1", 2.0, MachineState.STOPPED, MachineState.RUNNING),
    StopEnded("M1", 9.0, 4, 2.0, 9.0, 7.0, StopKind.MICRO_STOP, "jam", ReasonCategory.UNPLANNED),
    ShiftClosed("M1", 200.0, KPI),
]


def test_domain_events_become_plain_data_field_by_field() -> None:
    assert event_body(EVENTS[1]) == (
        "StateChanged",
        {"machine_id": "M1", "ts": 2.0, "state": "stopped", "previous": "running"},
    )
    name, data = event_body(EVENTS[2])
    assert name == "StopEnded"
    assert data["kind"] == "micro_stop" and data["category"] == "unplanned"
    assert "micro" not in data, "properties are not fields"
    name, data = event_body(EVENTS[3])
    assert data["kpis"]["downtime_by_reason"] == {"jam": 10.0}
    assert data["kpis"]["performance"] is None
    assert data["kpis"] == KPI.as_dict()


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_the_fast_packer_and_the_plain_data_agree(event: object) -> None:
    name, packed = pack_event(event)
    assert (name, msgpack.unpackb(packed)) == event_body(event)
    wire = decode_envelope(envelope(42, name, packed))
    assert (wire.seq, wire.type, wire.data) == (42, name, event_body(event)[1])
    assert envelope(42, name, packed) == encode_envelope(42, name, event_body(event)[1])


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclass(frozen=True, slots=True)
class Inner:
    at: dt.datetime
    path: Path


@dataclass(frozen=True, slots=True)
class SomethingNew:
    """An event type defined elsewhere, later: no code in edge.wire for it."""

    machine_id: str
    ts: float
    colour: Colour
    tags: frozenset[str]
    inner: Inner
    steps: tuple[int, ...]
    by_colour: dict[Colour, int] = field(default_factory=dict)
    blob: bytes = b"\x00\x01"


def test_a_new_event_type_travels_without_code_in_the_wire_module() -> None:
    event = SomethingNew(
        "M2",
        3.0,
        Colour.BLUE,
        frozenset({"b", "a"}),
        Inner(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), Path("/x/y")),
        (1, 2),
        {Colour.RED: 1},
    )
    expected = {
        "machine_id": "M2",
        "ts": 3.0,
        "colour": 2,
        "tags": ["a", "b"],
        "inner": {"at": "2026-01-02T03:04:05+00:00", "path": "/x/y"},
        "steps": [1, 2],
        "by_colour": {"red": 1},
        "blob": b"\x00\x01",
    }
    assert event_body(event) == ("SomethingNew", expected)
    _name, packed = pack_event(event)
    assert msgpack.unpackb(packed) == expected


def test_what_cannot_be_encoded_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="must be a dataclass"):
        pack_event({"machine_id": "M1"})

    @dataclass(frozen=True)
    class Odd:
        machine_id: str
        thing: object

    with pytest.raises(WireError, match="cannot encode"):
        pack_event(Odd("M1", object()))
    with pytest.raises(WireError, match="cannot encode"):
        to_plain(Odd("M1", object()))


def _batch(first: int, last: int, *, historical: bool = False) -> bytes:
    envelopes = [
        envelope(seq, *pack_event(PiecesCounted("M1", float(seq), "total_count", 1, None)))
        for seq in range(first, last + 1)
    ]
    header = BatchHeader(
        edge_id="edge-T-L1",
        epoch="e1",
        batch_id=batch_id_for("e1", first, last),
        seq_first=first,
        seq_last=last,
        count=len(envelopes),
        historical=historical,
        sent_at=12.5,
    )
    return encode_batch(header, envelopes)


def test_batches_round_trip() -> None:
    batch = decode_batch(_batch(5, 7, historical=True))
    assert (batch.v, batch.edge_id, batch.epoch) == (SCHEMA_VERSION, "edge-T-L1", "e1")
    assert (batch.batch_id, batch.seq_first, batch.seq_last) == ("e1-5-7", 5, 7)
    assert batch.historical and batch.sent_at == 12.5
    assert [e.seq for e in batch.events] == [5, 6, 7]
    assert batch.events[0].data == {
        "machine_id": "M1",
        "ts": 5.0,
        "role": "total_count",
        "count": 1,
        "order_id": None,
    }
    # A plain msgpack reader sees the documented map.
    doc = msgpack.unpackb(_batch(1, 1))
    assert set(doc) == {
        "v",
        "edge_id",
        "epoch",
        "batch_id",
        "seq_first",
        "seq_last",
        "count",
        "historical",
        "sent_at",
        "events",
    }
    assert doc["events"][0]["type"] == "PiecesCounted"


def _tampered(**changes: Any) -> bytes:
    doc = msgpack.unpackb(_batch(1, 3))
    doc.update(changes)
    return msgpack.packb(doc)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1, 2]), "must be a map"),
        (_tampered(v=2), "schema version"),
        (_tampered(edge_id=5), "batch.edge_id"),
        (_tampered(seq_first=3, seq_last=1), "first <= last"),
        (_tampered(seq_last=4), "without gaps"),
        (_tampered(events="x"), "batch.events"),
        (_tampered(sent_at="now"), "sent_at"),
        (_tampered(events=[{"seq": 1, "type": "X"}]), "data: must be a map"),
    ],
)
def test_bad_batches_are_wire_errors_naming_the_field(payload: bytes, fragment: str) -> None:
    with pytest.raises(WireError, match=fragment.replace("(", r"\(")):
        decode_batch(payload)


def test_a_batch_not_covering_its_range_decodes_when_the_caller_checks_it() -> None:
    """edge tail reports such a batch itself (SequenceChecker), so it needs its events."""
    batch = decode_batch(_tampered(seq_last=4), require_complete=False)
    assert (batch.seq_first, batch.seq_last, [e.seq for e in batch.events]) == (1, 4, [1, 2, 3])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_never_a_batch_and_never_crash(payload: bytes) -> None:
    with pytest.raises(WireError):
        decode_batch(payload)


def test_status_messages_are_json_and_json_safe() -> None:
    birth = encode_status("online", edge_id="e", machines=[{"id": "M1"}], ratio=math.nan)
    doc = json.loads(birth)
    assert doc == {
        "v": 1,
        "status": "online",
        "edge_id": "e",
        "machines": [{"id": "M1"}],
        "ratio": None,
    }
    assert decode_status(birth) == doc
    with pytest.raises(WireError):
        decode_status(b'{"status": "sleeping"}')
    assert json_safe({"a": [math.inf, b"\x01"]}) == {"a": [None, "01"]}
