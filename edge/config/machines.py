"""``[[machines]]``: each machine's OEE parameters, stop reasons and where its signals come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from actors.oee.params import (
    DEFAULT_MAX_RATE_FACTOR,
    LossBucket,
    MachineParams,
    Reason,
    ReasonCategory,
    StateSource,
)
from edge.config.plcs import Plcs, read_plc_map
from edge.config.schema import (
    REQUIRED,
    Identifier,
    NonEmpty,
    NonNegative,
    Positive,
    Reader,
    between,
)

if TYPE_CHECKING:
    from edge.config.plc_maps import PlcMap

UnitId = Annotated[int, between(0, 255)]
AddressOffset = Annotated[int, between(0, 65535)]
CounterBits = Literal[16, 32, 64]
YearOfConstruction = Annotated[int, between(1900, 2200)]
RateFactor = Annotated[float, between(1.0, 1000.0)]


@dataclass(frozen=True, slots=True)
class MachineConfig:
    id: str
    name: str
    params: MachineParams
    plc: str | None = None
    plc_map: str | None = None
    unit_id: int = 1
    address_offset: int = 0
    # Identification on the OPC UA server (OPC 40001-1 Machinery); empty: not given.
    manufacturer: str = ""
    model: str = ""
    serial_number: str = ""
    product_instance_uri: str = ""  # empty: <namespace_uri>:<machine id>
    year_of_construction: int | None = None


@dataclass(frozen=True, slots=True)
class ReasonEntry:
    name: Annotated[str, NonEmpty]
    code: Annotated[int, NonNegative] | None = None
    category: ReasonCategory = ReasonCategory.UNPLANNED


@dataclass(frozen=True, slots=True)
class MachineEntry:
    id: Annotated[str, Identifier, REQUIRED] | None = None
    ideal_cycle_s: Annotated[float, Positive, REQUIRED] | None = None
    name: str | None = None
    micro_stop_s: Annotated[float, NonNegative] = 120.0
    stop_after_s: Annotated[float, Positive] | None = None  # None: 5 x ideal cycle
    micro_stop_bucket: LossBucket = LossBucket.PERFORMANCE
    counter_bits: CounterBits | None = None  # None: the plc_map's, else 32
    # A counter step beyond this x the ideal rate is capped (actors.oee.counters).
    max_rate_factor: RateFactor = DEFAULT_MAX_RATE_FACTOR
    state_source: StateSource | None = None
    reasons: tuple[ReasonEntry, ...] = ()
    plc: str | None = None
    plc_map: Annotated[str, NonEmpty] | None = None
    unit_id: UnitId = 1
    address_offset: AddressOffset = 0
    manufacturer: str = ""
    model: str = ""
    serial_number: str = ""
    product_instance_uri: str = ""
    year_of_construction: YearOfConstruction | None = None


def unknown_reference(reader: Reader, path: str, what: str, name: str, known: set[str]) -> None:
    if name not in known:
        listed = ", ".join(sorted(known)) or "none defined"
        reader.problem(path, f"unknown {what} {name!r} (known: {listed})")


@dataclass
class Machines:
    """The ``[[machines]]``: every entry's id, valid or not; the valid ones; their plc_maps."""

    ids: set[str] = field(default_factory=set)
    configs: list[MachineConfig] = field(default_factory=list)
    maps: dict[str, PlcMap] = field(default_factory=dict)


def _check_entry(reader: Reader, entry: MachineEntry, path: str, plcs: Plcs) -> None:
    for index, reason in enumerate(entry.reasons):
        earlier = entry.reasons[:index]
        if reason.code is not None and reason.code in {e.code for e in earlier}:
            reader.problem(f"{path}.reasons[{index}].code", f"code {reason.code} is listed twice")
        if reason.name in {e.name for e in earlier}:
            reader.problem(
                f"{path}.reasons[{index}].name", f"reason {reason.name!r} is listed twice"
            )
    if entry.plc is not None:
        unknown_reference(reader, f"{path}.plc", "plc", entry.plc, plcs.ids)
        if entry.plc_map is None:
            reader.problem(f"{path}.plc_map", "missing: a machine read from a plc needs a plc_map")


def read_machines(
    reader: Reader, doc: dict[str, Any], plcs: Plcs, map_dirs: tuple[Path, ...]
) -> Machines:
    if "machines" not in doc:
        reader.problem("machines", "missing: a line needs at least one [[machines]] entry")
    machines = Machines()
    first: dict[str, int] = {}
    for index, raw in enumerate(reader.entries(doc, "machines")):
        path, machine_id = f"machines[{index}]", raw.get("id")
        machines.ids |= {machine_id} if isinstance(machine_id, str) else set()
        entry = reader.section(MachineEntry, raw, path)
        if entry is None:
            continue
        if entry.id is not None and first.setdefault(entry.id, index) != index:
            also = f"also machines[{first[entry.id]}]"
            reader.problem(f"{path}.id", f"duplicate machine id {entry.id!r} ({also})")
        _check_entry(reader, entry, path, plcs)
        plc = plcs.by_id.get(entry.plc or "")
        plc_map = None
        if entry.plc_map is not None:
            plc_map = read_plc_map(reader, entry.plc_map, map_dirs, f"{path}.plc_map", plc)
        bits = plc_map.counter_bits if plc_map else None
        if entry.counter_bits and bits and entry.counter_bits != bits:
            reader.problem(
                f"{path}.counter_bits",
                f"is {entry.counter_bits} but plc_map {entry.plc_map!r} maps {bits}-bit counters",
            )
        if entry.id is None or entry.ideal_cycle_s is None:
            continue
        reasons = tuple(Reason(r.name, r.code, r.category) for r in entry.reasons)
        params = MachineParams(
            machine_id=entry.id,
            ideal_cycle_s=entry.ideal_cycle_s,
            micro_stop_s=entry.micro_stop_s,
            stop_after_s=entry.stop_after_s,
            micro_stop_bucket=entry.micro_stop_bucket,
            counter_bits=entry.counter_bits or bits or 32,
            reasons=reasons,
            state_source=entry.state_source,
            max_rate_factor=entry.max_rate_factor,
        )
        name, plc_id, offset = entry.name or entry.id, entry.plc, entry.address_offset
        config = MachineConfig(
            entry.id,
            name,
            params,
            plc_id,
            entry.plc_map,
            entry.unit_id,
            offset,
            manufacturer=entry.manufacturer,
            model=entry.model,
            serial_number=entry.serial_number,
            product_instance_uri=entry.product_instance_uri,
            year_of_construction=entry.year_of_construction,
        )
        machines.configs.append(config)
        if plc_map:
            machines.maps[entry.id] = plc_map
    return machines
