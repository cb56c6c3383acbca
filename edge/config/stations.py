"""``[[quality_stations]]``: inspection stations, their SPC characteristics and their signals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from actors.quality.params import (
    DEFAULT_RULES,
    MAX_SUBGROUP_SIZE,
    CharacteristicParams,
    Disposition,
    StationParams,
)
from edge.config.machines import AddressOffset, CounterBits, Machines, UnitId, unknown_reference
from edge.config.plcs import Plcs, read_plc_map
from edge.config.schema import (
    REQUIRED,
    Identifier,
    NonEmpty,
    Positive,
    Reader,
    Unique,
    at_least_one,
    between,
    fields_of,
)

if TYPE_CHECKING:
    from edge.config.plc_maps import PlcMap

_UNSIGNED_BITS = {"uint16": 16, "uint32": 32, "uint64": 64}
_RULE = msgspec.Meta(ge=1, le=8, description="must be a run rule number 1..8, got {value!r}")
RunRules = Annotated[
    tuple[Annotated[int, _RULE], ...], at_least_one("must list at least one run rule (1..8)")
]


@dataclass(frozen=True, slots=True)
class QualityStationConfig:
    """A quality station (``[[quality_stations]]``); ``params`` is what its core runs on.

    With ``plc``/``plc_map`` the order runtime polls the station's PLC itself
    (a connection of its own, even to a PLC that machines use too).
    """

    id: str
    name: str
    params: StationParams
    plc: str | None = None
    plc_map: str | None = None
    unit_id: int = 1
    address_offset: int = 0


@dataclass(frozen=True, slots=True)
class CharacteristicEntry:
    name: Annotated[str, Identifier]
    signal: Annotated[str, NonEmpty] | None = None  # None: manual entry only
    unit: str = ""
    lsl: float | None = None
    usl: float | None = None
    subgroup_size: Annotated[int, between(1, MAX_SUBGROUP_SIZE)] = 1
    baseline_mean: float | None = None
    baseline_range: Annotated[float, Positive] | None = None
    warmup: Annotated[int, between(2, 10_000)] = 25
    rules: RunRules = DEFAULT_RULES


@dataclass(frozen=True, slots=True)
class StationEntry:
    id: Annotated[str, Identifier, REQUIRED] | None = None
    machine: Annotated[str, REQUIRED] | None = None
    name: str | None = None
    feeds_machine_rejects: bool | None = None  # None: true unless the machine counts rejects
    plc: str | None = None
    plc_map: Annotated[str, NonEmpty] | None = None
    unit_id: UnitId = 1
    address_offset: AddressOffset = 0
    pass_signal: Annotated[str, NonEmpty] | None = None
    fail_signal: Annotated[str, NonEmpty] | None = None
    counter_bits: CounterBits | None = None
    plc_disposition: Disposition = Disposition.PENDING
    reason_codes: Annotated[
        tuple[Annotated[str, NonEmpty], ...], Unique("{!r} is listed twice")
    ] = ()
    characteristics: tuple[CharacteristicEntry, ...] = ()


def _characteristics(
    reader: Reader, raw: dict[str, Any], entry: StationEntry, path: str
) -> tuple[CharacteristicParams, ...]:
    for index, item in enumerate(reader.entries(raw, "characteristics")):
        if ("baseline_mean" in item) != ("baseline_range" in item):
            missing = "baseline_range" if "baseline_mean" in item else "baseline_mean"
            reader.problem(
                f"{path}.characteristics[{index}].{missing}",
                "missing: a baseline needs both baseline_mean and baseline_range "
                "(the average moving range for subgroup_size 1, else the average range)",
            )
    for index, c in enumerate(entry.characteristics):
        where = f"{path}.characteristics[{index}]"
        if c.name in {earlier.name for earlier in entry.characteristics[:index]}:
            reader.problem(f"{where}.name", f"characteristic {c.name!r} is listed twice")
        if c.lsl is not None and c.usl is not None and not c.lsl < c.usl:
            reader.problem(f"{where}.usl", f"must be > lsl ({c.lsl:g}), got {c.usl:g}")
    # The entry has the core's fields; the rules become a sorted set.
    return tuple(
        CharacteristicParams(**(fields_of(c) | {"rules": tuple(sorted(set(c.rules)))}))
        for c in entry.characteristics
    )


def _signal_bits(
    reader: Reader,
    path: str,
    wanted: list[tuple[str, str]],
    source: tuple[str | None, PlcMap | None],
) -> int | None:
    """The width of the station's pass/fail counters, every signal checked against its map."""
    source_name, source_map = source
    bits: int | None = None
    for key, signal in wanted:
        if source_name is None:
            need = "a PLC signal needs a plc_map: the station's own (plc, plc_map) or its machine's"
            reader.problem(f"{path}.{key}", need)
            continue
        counter = key in ("pass_signal", "fail_signal")
        definition = source_map.get(signal) if source_map else None
        # A counter may be one of the machine's counter roles (an inspection result
        # the machine PLC counts); a measurement is a process value.
        if source_map and (
            definition is None
            or not (definition.role is None or (counter and definition.is_counter))
        ):
            names = ", ".join(s.name for s in source_map.process_values) or "none"
            reader.problem(
                f"{path}.{key}",
                f"plc_map {source_name!r} has no process value {signal!r} "
                f"(process values: {names})",
            )
        elif definition is not None and counter:
            width = _UNSIGNED_BITS.get(definition.data_type.value)
            if width is None or definition.is_scaled:
                reader.problem(
                    f"{path}.{key}",
                    f"{signal!r} must be an unscaled uint16/uint32/uint64 piece counter, "
                    f"got {definition.data_type.value}",
                )
            elif bits is not None and width != bits:
                reader.problem(f"{path}.{key}", "pass and fail counters differ in width")
            bits = bits or width
    return bits


def _check_references(
    reader: Reader, entry: StationEntry, path: str, machines: Machines, plcs: Plcs
) -> None:
    if entry.id in machines.ids:
        reader.problem(f"{path}.id", f"{entry.id!r} is a machine id; a station needs its own id")
    if entry.machine is not None:
        unknown_reference(reader, f"{path}.machine", "machine", entry.machine, machines.ids)
    if entry.plc is not None:
        unknown_reference(reader, f"{path}.plc", "plc", entry.plc, plcs.ids)
        if entry.plc_map is None:
            reader.problem(f"{path}.plc_map", "missing: a station read from a plc needs a plc_map")
    if entry.plc_map is not None and entry.plc is None:
        reader.problem(f"{path}.plc", "missing: a plc_map is read from a plc")


def read_stations(
    reader: Reader, doc: dict[str, Any], machines: Machines, plcs: Plcs, map_dirs: tuple[Path, ...]
) -> tuple[QualityStationConfig, ...]:
    """The stations, with the double-counting rule (docs/orders-and-quality.md).

    ``feeds_machine_rejects`` defaults to true only for a machine whose PLC
    counts no rejects (neither ``good_count`` nor ``reject_count`` mapped);
    true for a machine that does is refused: every failure would count twice.
    """
    by_id = {m.id: m for m in machines.configs}
    stations: list[QualityStationConfig] = []
    for index, raw in enumerate(reader.entries(doc, "quality_stations")):
        path = f"quality_stations[{index}]"
        entry = reader.section(StationEntry, raw, path)
        if entry is None:
            continue
        if entry.id in {station.id for station in stations}:
            reader.problem(f"{path}.id", f"duplicate quality station id {entry.id!r}")
        _check_references(reader, entry, path, machines, plcs)
        machine = by_id.get(entry.machine or "")
        machine_map = machines.maps.get(machine.id) if machine else None
        mapped = sorted(
            (machine_map.roles if machine_map else set()) & {"good_count", "reject_count"}
        )
        if entry.feeds_machine_rejects and mapped and machine:
            reader.problem(
                f"{path}.feeds_machine_rejects",
                f"machine {machine.id!r} counts rejects itself (its plc_map {machine.plc_map!r} "
                f"maps {' and '.join(mapped)}): adding the station's failures would count them "
                "twice; set it false (the default for this machine)",
            )
        characteristics = _characteristics(reader, raw, entry, path)
        # Without a plc of its own, the station reads its signals from its machine's
        # samples (the machine's plc_map, through the service's sample bus).
        source = (machine.plc_map if machine else None), machine_map
        if entry.plc_map is not None:
            plc = plcs.by_id.get(entry.plc or "")
            source = (
                entry.plc_map,
                read_plc_map(reader, entry.plc_map, map_dirs, f"{path}.plc_map", plc),
            )
        wanted = [("pass_signal", entry.pass_signal), ("fail_signal", entry.fail_signal)]
        wanted += [
            (f"characteristics[{i}].signal", c.signal) for i, c in enumerate(characteristics)
        ]
        bits = _signal_bits(reader, path, [(k, s) for k, s in wanted if s is not None], source)
        if entry.counter_bits and bits and entry.counter_bits != bits:
            reader.problem(
                f"{path}.counter_bits",
                f"is {entry.counter_bits} but the plc_map's pass/fail counters are {bits}-bit",
            )
        if entry.id is None or machine is None:
            continue
        feeds = entry.feeds_machine_rejects
        params = StationParams(
            station_id=entry.id,
            machine_id=machine.id,
            feeds_machine_rejects=not mapped if feeds is None else feeds,
            name=entry.name or entry.id,
            pass_signal=entry.pass_signal,
            fail_signal=entry.fail_signal,
            counter_bits=entry.counter_bits or bits or 32,
            plc_disposition=entry.plc_disposition,
            reason_codes=entry.reason_codes,
            characteristics=characteristics,
        )
        where = (entry.plc, entry.plc_map, entry.unit_id, entry.address_offset)
        stations.append(QualityStationConfig(entry.id, params.name, params, *where))
    return tuple(stations)
