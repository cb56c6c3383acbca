"""The plant floor the line reads: ``[[plcs]]`` (Modbus TCP or OPC UA), ``[[machines]]``
(OEE parameters, stop reasons, signals through a plc_map) and ``[[quality_stations]]``
(inspection results and SPC characteristics)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from actors.oee import params as oee
from actors.quality import params as quality
from edge.config import schema as rule
from edge.config.schema import Doc, Reader, pick, raw_ids
from edge.errors import ConfigError, Problem
from edge.secrets import Secret

if TYPE_CHECKING:
    from edge.config.plc_maps import PlcMap


def _opc_endpoint(value: str) -> str | None:
    with contextlib.suppress(ValueError):  # a bad IPv6 host, or (reading .port) a bad port
        parts = urlsplit(value)
        if parts.scheme == "opc.tcp" and parts.hostname and parts.port != -1:
            return None
    return f'must be an OPC UA endpoint "opc.tcp://host:port/path", got {value!r}'


OpcEndpoint = Annotated[str, _opc_endpoint]
CounterBits = Literal[16, 32, 64]
_UNSIGNED_BITS = {"uint16": 16, "uint32": 32, "uint64": 64}


@dataclass(frozen=True, slots=True)
class ModbusPlcConfig:
    id: Annotated[str, rule.Identifier]
    host: Annotated[str, rule.NonEmpty]
    port: Annotated[int, rule.Port] = 502
    poll_interval_s: rule.Seconds = 1.0
    timeout_s: rule.Seconds = 1.0
    retries: Annotated[int, rule.between(0, 10)] = 1
    max_gap: Annotated[int, rule.between(0, 124)] = 8
    backoff_initial_s: rule.Seconds = 1.0
    backoff_max_s: rule.BackoffMax = 30.0
    protocol: Literal["modbus"] = "modbus"


@dataclass(frozen=True, slots=True)
class OpcUaPlcConfig:
    id: Annotated[str, rule.Identifier]
    endpoint: OpcEndpoint
    sampling_interval_s: rule.Seconds = 0.5
    publishing_interval_s: rule.Seconds = 0.5
    timeout_s: rule.Seconds = 5.0
    username: str | None = None
    password: Secret | None = None
    backoff_initial_s: rule.Seconds = 1.0
    backoff_max_s: rule.BackoffMax = 30.0
    protocol: Literal["opcua"] = "opcua"


PlcConfig = ModbusPlcConfig | OpcUaPlcConfig
_PROTOCOLS: dict[str, type[PlcConfig]] = {"modbus": ModbusPlcConfig, "opcua": OpcUaPlcConfig}
Plcs = dict[str, PlcConfig | None]
MapDirs = tuple[Path, ...]  # where plc_maps are looked up, in order


def read_plcs(reader: Reader, doc: Doc) -> Plcs:
    """Every ``[[plcs]]`` id as given, with its config (None: invalid)."""
    plcs: Plcs = dict.fromkeys(raw_ids(doc, "plcs"))
    unique = rule.Unique("duplicate plc id {0!r}", "id")
    raws = reader.items(dict[str, Any], (unique,), doc.get("plcs", []), "plcs") or []
    for path, raw in ((f"plcs[{i}]", raw) for i, raw in enumerate(raws) if isinstance(raw, dict)):
        if "protocol" not in raw:
            reader.problem(f"{path}.protocol", "missing required key (expected a string)")
            continue
        protocol = reader.value(Literal["modbus", "opcua"], raw["protocol"], f"{path}.protocol")
        if plc := reader.build(_PROTOCOLS[protocol], raw, path) if protocol in _PROTOCOLS else None:
            plcs[plc.id] = plc
    return plcs


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where a machine's or station's signals come from: a plc and its plc_map."""

    plc: str | None = None
    plc_map: Annotated[str, rule.NonEmpty] | None = None
    unit_id: Annotated[int, rule.between(0, 255)] = 1
    address_offset: Annotated[int, rule.between(0, 65535)] = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _MachineKeys(Source):
    """A machine's source and identification (OPC 40001-1 Machinery; empty: not given)."""

    manufacturer: str = ""
    model: str = ""
    serial_number: str = ""
    product_instance_uri: str = ""  # empty: <namespace_uri>:<machine id>
    year_of_construction: Annotated[int, rule.between(1900, 2200)] | None = None


def unknown(reader: Reader, path: str, what: str, name: str | None, known: set[str]) -> None:
    if name is not None and name not in known:
        listed = ", ".join(sorted(known)) or "none defined"
        reader.problem(path, f"unknown {what} {name!r} (known: {listed})")


def read_source(
    reader: Reader, entry: Source, path: str, plcs: Plcs, dirs: MapDirs
) -> PlcMap | None:
    """A machine's or station's plc (it exists) and plc_map (found, valid, same protocol)."""
    from edge.config.plc_maps import find_plc_map, load_plc_map  # noqa: PLC0415 - avoids a cycle

    unknown(reader, f"{path}.plc", "plc", entry.plc, set(plcs))
    what = "station" if isinstance(entry, StationEntry) else "machine"
    if entry.plc is not None and entry.plc_map is None:
        reader.problem(f"{path}.plc_map", f"missing: a {what} read from a plc needs a plc_map")
    if (name := entry.plc_map) is None:
        return None
    if find_plc_map(name, dirs) is None:
        searched = ", ".join(str(d) for d in dirs)
        reader.problem(f"{path}.plc_map", f"unknown plc_map {name!r} (searched {searched})")
        return None
    try:
        plc_map = load_plc_map(name, dirs)
    except ConfigError as exc:
        where = f"{path}.plc_map ({exc.source})"
        reader.problems += [Problem(f"{where} {p.path}".strip(), p.message) for p in exc.problems]
        return None
    plc, protocol = plcs.get(entry.plc or ""), plc_map.protocol.value
    if plc is not None and protocol != plc.protocol:
        speaks = f"is for {protocol} but plc {plc.id!r} speaks {plc.protocol}"
        reader.problem(f"{path}.plc_map", f"plc_map {name!r} {speaks}")
    return plc_map


@dataclass(frozen=True, slots=True)
class MachineConfig(_MachineKeys):
    id: str
    name: str
    params: oee.MachineParams


@dataclass(frozen=True, slots=True)
class ReasonEntry:
    name: Annotated[str, rule.NonEmpty]
    code: Annotated[int, rule.NonNegative] | None = None
    category: oee.ReasonCategory = oee.ReasonCategory.UNPLANNED


_CODE_ONCE = rule.Unique("code {0} is listed twice", "code")
_NAME_ONCE = rule.Unique("reason {0!r} is listed twice", "name")


@dataclass(frozen=True, slots=True)
class MachineEntry(_MachineKeys):
    """A ``[[machines]]`` entry: the keys of MachineConfig and of its MachineParams."""

    id: Annotated[str, rule.Identifier, rule.REQUIRED] | None = None
    ideal_cycle_s: Annotated[float, rule.Positive, rule.REQUIRED] | None = None
    name: str | None = None
    micro_stop_s: Annotated[float, rule.NonNegative] = 120.0
    stop_after_s: Annotated[float, rule.Positive] | None = None  # None: 5 x ideal cycle
    micro_stop_bucket: oee.LossBucket = oee.LossBucket.PERFORMANCE
    counter_bits: CounterBits | None = None  # None: the plc_map's, else 32
    # A counter step beyond this x the ideal rate is capped (actors.oee.counters).
    max_rate_factor: Annotated[float, rule.between(1.0, 1000.0)] = oee.DEFAULT_MAX_RATE_FACTOR
    state_source: oee.StateSource | None = None
    reasons: Annotated[tuple[ReasonEntry, ...], _CODE_ONCE, _NAME_ONCE] = ()


# The valid [[machines]] by id, each with its plc_map.
Machines = dict[str, tuple[MachineConfig, "PlcMap | None"]]


def read_machines(reader: Reader, doc: Doc, plcs: Plcs, map_dirs: MapDirs) -> Machines:
    machines: Machines = {}
    one = rule.at_least_one("missing: a line needs at least one [[machines]] entry")
    unique = rule.Unique("duplicate machine id {0!r} (also {1})", "id")
    for path, entry in reader.entries(MachineEntry, doc, "machines", one, unique):
        plc_map = read_source(reader, entry, path, plcs, map_dirs)
        bits = plc_map.counter_bits if plc_map else None
        if entry.counter_bits and bits and entry.counter_bits != bits:
            wrong = f"is {entry.counter_bits} but plc_map {entry.plc_map!r} maps {bits}-bit"
            reader.problem(f"{path}.counter_bits", f"{wrong} counters")
        if entry.id is None or entry.ideal_cycle_s is None:
            continue
        reasons = tuple(pick(oee.Reason, reason) for reason in entry.reasons)
        bits = entry.counter_bits or bits or 32
        params = pick(
            oee.MachineParams, entry, machine_id=entry.id, counter_bits=bits, reasons=reasons
        )
        machine = pick(MachineConfig, entry, name=entry.name or entry.id, params=params)
        machines.setdefault(entry.id, (machine, plc_map))
    return machines


@dataclass(frozen=True, slots=True)
class QualityStationConfig(Source):
    """A quality station; with a plc_map of its own the order runtime polls its PLC."""

    id: str
    name: str
    params: quality.StationParams


_RULE = msgspec.Meta(ge=1, le=8, description="must be a run rule number 1..8, got {value!r}")
_ONE_RULE = rule.at_least_one("must list at least one run rule (1..8)")
_BOTH = "missing: a baseline needs both baseline_mean and baseline_range (the average moving range"
_BASELINE = rule.With("baseline_mean", f"{_BOTH} for subgroup_size 1, else the average range)")


def _above_lsl(entry: CharacteristicEntry, usl: float | None) -> str | None:
    below = entry.lsl is not None and usl is not None and not entry.lsl < usl
    return f"must be > lsl ({entry.lsl:g}), got {usl:g}" if below else None


@dataclass(frozen=True, slots=True)
class CharacteristicEntry:
    name: Annotated[str, rule.Identifier]
    signal: Annotated[str, rule.NonEmpty] | None = None  # None: manual entry only
    unit: str = ""
    lsl: float | None = None
    usl: Annotated[float, rule.After(_above_lsl)] | None = None
    subgroup_size: Annotated[int, rule.between(1, quality.MAX_SUBGROUP_SIZE)] = 1
    baseline_mean: float | None = None
    baseline_range: Annotated[float, rule.Positive, _BASELINE] | None = None
    warmup: Annotated[int, rule.between(2, 10_000)] = 25
    rules: Annotated[tuple[Annotated[int, _RULE], ...], _ONE_RULE] = quality.DEFAULT_RULES


_CODES_ONCE = rule.Unique("{0!r} is listed twice")
_CHARACTERISTIC_ONCE = rule.Unique("characteristic {0!r} is listed twice", "name")


@dataclass(frozen=True, slots=True)
class StationEntry(Source):
    id: Annotated[str, rule.Identifier, rule.REQUIRED] | None = None
    machine: Annotated[str, rule.REQUIRED] | None = None
    name: str | None = None
    feeds_machine_rejects: bool | None = None  # None: true unless the machine counts rejects
    pass_signal: Annotated[str, rule.NonEmpty] | None = None
    fail_signal: Annotated[str, rule.NonEmpty] | None = None
    counter_bits: CounterBits | None = None
    plc_disposition: quality.Disposition = quality.Disposition.PENDING
    reason_codes: Annotated[tuple[Annotated[str, rule.NonEmpty], ...], _CODES_ONCE] = ()
    characteristics: Annotated[tuple[CharacteristicEntry, ...], _CHARACTERISTIC_ONCE] = ()


def _signal_bits(
    reader: Reader, path: str, entry: StationEntry, name: str | None, plc_map: PlcMap | None
) -> int | None:
    """Every signal of a station checked against its plc_map; the width of its counters."""
    want = {"pass_signal": entry.pass_signal, "fail_signal": entry.fail_signal}
    want |= {f"characteristics[{i}].signal": c.signal for i, c in enumerate(entry.characteristics)}
    bits: int | None = None
    for key, signal in ((key, signal) for key, signal in want.items() if signal is not None):
        where, counter = f"{path}.{key}", key in ("pass_signal", "fail_signal")
        found = plc_map.get(signal) if plc_map else None
        width = _UNSIGNED_BITS.get(found.data_type.value) if found else None
        if name is None:
            need = "a PLC signal needs a plc_map: the station's own (plc, plc_map) or its machine's"
            reader.problem(where, need)
        # A counter may be one of the machine's counter roles (an inspection result
        # the machine PLC counts); a measurement is a process value.
        elif plc_map and not (found and (found.role is None or (counter and found.is_counter))):
            names = ", ".join(s.name for s in plc_map.process_values) or "none"
            missing = f"plc_map {name!r} has no process value {signal!r}"
            reader.problem(where, f"{missing} (process values: {names})")
        elif found and counter and (width is None or found.is_scaled):
            wrong = f"{signal!r} must be an unscaled uint16/uint32/uint64 piece counter"
            reader.problem(where, f"{wrong}, got {found.data_type.value}")
        elif found and counter and bits is not None and width != bits:
            reader.problem(where, "pass and fail counters differ in width")
        elif counter:
            bits = bits or width
    return bits


def read_stations(
    reader: Reader, doc: Doc, machines: Machines, plcs: Plcs, map_dirs: MapDirs
) -> tuple[QualityStationConfig, ...]:
    """The stations; one feeds its machine's rejects by default only if the machine's PLC
    counts none, never if it does (they would count twice: docs/orders-and-quality.md)."""
    stations: list[QualityStationConfig] = []
    machine_ids = set(raw_ids(doc, "machines"))
    unique = rule.Unique("duplicate quality station id {0!r}", "id")
    for path, entry in reader.entries(StationEntry, doc, "quality_stations", unique):
        if entry.id in machine_ids:
            clash = f"{entry.id!r} is a machine id; a station needs its own id"
            reader.problem(f"{path}.id", clash)
        unknown(reader, f"{path}.machine", "machine", entry.machine, machine_ids)
        if entry.plc_map is not None and entry.plc is None:
            reader.problem(f"{path}.plc", "missing: a plc_map is read from a plc")
        machine, machine_map = machines.get(entry.machine or "", (None, None))
        roles = machine_map.roles if machine_map else frozenset()
        mapped = sorted(roles & {"good_count", "reject_count"})
        if entry.feeds_machine_rejects and mapped and machine:
            twice = (
                f"machine {machine.id!r} counts rejects itself (its plc_map {machine.plc_map!r} "
                f"maps {' and '.join(mapped)}): adding the station's failures would count them "
                "twice; set it false (the default for this machine)"
            )
            reader.problem(f"{path}.feeds_machine_rejects", twice)
        # Without a plc of its own, the station reads its signals from its machine's
        # samples (the machine's plc_map, through the service's sample bus).
        own = read_source(reader, entry, path, plcs, map_dirs)
        name = entry.plc_map or (machine.plc_map if machine else None)
        bits = _signal_bits(reader, path, entry, name, own if entry.plc_map else machine_map)
        if entry.counter_bits and bits and entry.counter_bits != bits:
            wrong = f"is {entry.counter_bits} but the plc_map's pass/fail counters are {bits}-bit"
            reader.problem(f"{path}.counter_bits", wrong)
        if entry.id is None or machine is None:
            continue
        feeds = not mapped if entry.feeds_machine_rejects is None else entry.feeds_machine_rejects
        charts = tuple(
            pick(quality.CharacteristicParams, c, rules=tuple(sorted(set(c.rules))))
            for c in entry.characteristics
        )
        given: dict[str, Any] = {"station_id": entry.id, "machine_id": machine.id}
        given |= {"name": entry.name or entry.id, "counter_bits": entry.counter_bits or bits or 32}
        given |= {"feeds_machine_rejects": feeds, "characteristics": charts}
        params = pick(quality.StationParams, entry, **given)
        stations.append(pick(QualityStationConfig, entry, name=params.name, params=params))
    return tuple(stations)
