"""The Modbus source's hot path against the plain definition of what it delivers.

The source compares each block with the last one and decodes only the points over
changed words. Whatever the words do, it must deliver exactly what decoding every
point on every poll and passing it through the per-signal change filter would:
the same samples, in the same order, and the same count of undecodable values.
No server is needed: the poll results are fed to the source's collect step.
"""

from __future__ import annotations

import logging
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import Quality, Sample
from edge.config import ModbusPlcConfig
from edge.errors import PlcDataError
from edge.plc import ChangeFilter, MachineBinding, ModbusSource, compile_decoder, parse_plc_map
from edge.plc.maps import PlcMap

WORDS = 12


def _map() -> PlcMap:
    def hr(name: str, address: int, type_: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "area": "holding_register",
            "address": address,
            "type": type_,
            **extra,
        }

    return parse_plc_map(
        {
            "protocol": "modbus",
            "signals": [
                {
                    "role": "state",
                    "area": "holding_register",
                    "address": 0,
                    "type": "uint16",
                    "max": 17,
                },
                {"role": "total_count", "area": "holding_register", "address": 1, "type": "uint32"},
                {
                    "role": "running",
                    "area": "holding_register",
                    "address": 3,
                    "type": "bool",
                    "bit": 0,
                },
                {
                    "name": "door",
                    "area": "holding_register",
                    "address": 3,
                    "type": "bool",
                    "bit": 5,
                },
                hr("temp", 4, "int16", scale=0.1, min=-40, max=250, deadband=0.5),
                hr("flow", 5, "float32", word_order="little"),  # NaN is a BAD value
                hr("speed", 7, "uint16", max=30000),
                hr("energy", 8, "uint64", byte_order="little"),
            ],
        },
        name="collect",
    )


PLC = ModbusPlcConfig(id="p1", host="127.0.0.1", port=1)
BINDINGS = [MachineBinding("M1", _map(), unit_id=1), MachineBinding("M2", _map(), unit_id=2)]


def _reference(polls: list[list[list[int] | None]]) -> tuple[list[list[Sample]], int]:
    """Decode every point of every poll, filter per signal: the plain definition."""
    change = ChangeFilter()
    delivered: list[list[Sample]] = []
    errors = 0
    for ts, poll in enumerate(polls):
        out = []
        for binding, words in zip(BINDINGS, poll, strict=True):
            for signal in binding.plc_map.signals:
                index = signal.location.address  # type: ignore[union-attr]
                value: Any
                quality = Quality.GOOD
                if words is None:
                    value, quality = None, Quality.BAD
                else:
                    try:
                        value = compile_decoder(signal)(words, index)
                    except PlcDataError:
                        value, quality = None, Quality.BAD
                if quality is Quality.BAD:
                    errors += 1
                if change.changed(binding.machine_id, signal.name, value, quality, signal.deadband):
                    out.append(Sample(binding.machine_id, signal.name, value, float(ts), quality))
        delivered.append(out)
    return delivered, errors


def _source(polls: list[list[list[int] | None]]) -> tuple[list[list[Sample]], int]:
    source = ModbusSource(PLC, BINDINGS, _discard)
    assert len(source.blocks) == 2  # one block per machine: one per unit id
    delivered = []
    for ts, poll in enumerate(polls):
        results = [PlcDataError("exception response") if w is None else list(w) for w in poll]
        batch: list[Any] = []
        source._collect(results, float(ts), batch)
        delivered.append(batch)
    return delivered, source.statistics().data_errors


async def _discard(batch: object) -> None:
    return None


word = st.integers(0, 0xFFFF)
block = st.lists(word, min_size=WORDS, max_size=WORDS)


@st.composite
def poll_sequences(draw: st.DrawFn) -> list[list[list[int] | None]]:
    """Polls of two machines: mostly repeats and small edits, sometimes a failed block."""
    current = [draw(block), draw(block)]
    polls: list[list[list[int] | None]] = []
    for _ in range(draw(st.integers(1, 25))):
        poll: list[list[int] | None] = []
        for m in range(2):
            action = draw(st.sampled_from(["same", "same", "edit", "edit", "new", "fail"]))
            if action == "edit":
                for _ in range(draw(st.integers(1, 3))):
                    current[m][draw(st.integers(0, WORDS - 1))] = draw(word)
            elif action == "new":
                current[m] = draw(block)
            poll.append(None if action == "fail" else list(current[m]))
        polls.append(poll)
    return polls


@settings(max_examples=300, deadline=None)
@given(poll_sequences())
def test_block_compare_delivers_what_decoding_everything_would(
    polls: list[list[list[int] | None]],
) -> None:
    logging.getLogger("edge.plc.modbus").disabled = True
    try:
        assert _source(polls) == _reference(polls)
    finally:
        logging.getLogger("edge.plc.modbus").disabled = False
