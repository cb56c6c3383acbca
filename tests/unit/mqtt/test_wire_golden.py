"""The wire stays byte-identical: every event type, against bytes the msgpack encoder made.

``wire_golden.json`` holds, for an instance of every event type the edge
publishes, the ``data`` map as the msgpack-only encoder of schema version 1
packed it (before the wire moved to msgspec). :func:`instance` builds the same
instance from the type's annotations, so the file needs no pickles; a new
event type is checked against the generic (reference) encoder instead.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.wire import WireError, pack_event, pack_event_generic

GOLDEN = Path(__file__).with_name("wire_golden.json")
EVENT_MODULES = ("actors.oee.events", "actors.orders.events", "actors.quality.events")
EDGE_EVENTS = (("edge.state.outbox", "OutboxPolicyApplied"), ("edge.commands", "CommandAudit"))


def event_types() -> list[type]:
    found: list[type] = []
    for name in EVENT_MODULES:
        module = importlib.import_module(name)
        found += [
            cls
            for cls in vars(module).values()
            if isinstance(cls, type)
            and dataclasses.is_dataclass(cls)
            and cls.__module__ == name
            and "ts" in {f.name for f in dataclasses.fields(cls)}
        ]
    found += [getattr(importlib.import_module(m), n) for m, n in EDGE_EVENTS]
    return found


def value_for(hint: Any, name: str, depth: int = 0) -> Any:
    """A deterministic value of ``hint``, varied by the field name (not all zeros)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    seed = sum(map(ord, name))
    if origin in (typing.Union, type(int | None)):
        return value_for(next(a for a in args if a is not type(None)), name, depth)
    if origin is typing.Literal:
        return args[0]
    if hint is str:
        return f"{name}-{seed % 97}"
    if hint is bool:
        return seed % 2 == 0
    if hint is int:
        return seed * 1_000_003  # beyond 16 and 32 bits
    if hint is float:
        return seed / 7.0
    if hint is bytes:
        return name.encode()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = list(hint)
        return members[seed % len(members)]
    if origin in (tuple, list):
        item = args[0]
        items = [value_for(item, f"{name}{i}", depth + 1) for i in range(2)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        return {f"{name}-k{i}": value_for(args[1], f"{name}{i}", depth + 1) for i in range(2)}
    if hint in (object, Any):
        return {"order_id": name, "quantity": seed, "nested": [1.5, None, "x"]}
    if dataclasses.is_dataclass(hint):
        return instance(typing.cast(type, hint), depth + 1)
    raise AssertionError(f"no value for {hint!r} ({name})")


def instance(cls: type, depth: int = 0) -> Any:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return cls(**{f.name: value_for(hints[f.name], f.name, depth) for f in fields})


def golden() -> dict[str, str]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_every_event_type_is_in_the_golden_file() -> None:
    missing = {cls.__name__ for cls in event_types()} - set(golden())
    assert not missing, f"add them to {GOLDEN.name} (encoded by pack_event_generic): {missing}"


@pytest.mark.parametrize("cls", event_types(), ids=lambda cls: cls.__name__)
def test_encoding_is_byte_identical_to_the_golden_bytes(cls: type) -> None:
    name, packed = pack_event(instance(cls))
    assert name == cls.__name__
    assert packed.hex() == golden()[name]
    assert pack_event_generic(instance(cls)) == (name, packed)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_both_encoders_agree_on_random_events(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(event_types()))
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    overrides = {}
    for f in fields:
        if hints[f.name] in (str, int, float):
            overrides[f.name] = data.draw(st.from_type(hints[f.name]))
    event = dataclasses.replace(instance(cls), **overrides)
    assert outcome(pack_event, event) == outcome(pack_event_generic, event)


def outcome(encode: Any, event: object) -> object:
    """The encoding, or the error's message (a too large integer, say)."""
    try:
        return encode(event)
    except WireError as exc:
        return str(exc)
