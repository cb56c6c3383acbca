"""plc_maps: which register or node of a PLC model carries which signal of a machine.

A plc_map is a TOML file shipped as data in ``plc_maps/``; a machine in the line
config names one (``plc_map = "generic-modbus"``). :func:`load_plc_map` turns it
into a frozen :class:`PlcMap` or raises one :class:`~edge.errors.ConfigError`
listing every problem with its key path (``signals[3].bit: must be 0..15, got 16``).

File layout::

    protocol = "modbus"            # or "opcua"
    description = "what PLC model this is for"
    byte_order = "big"             # Modbus only: default for every signal
    word_order = "big"             # Modbus only: many PLCs swap words ("little")

    [[signals]]
    role = "total_count"           # one of: running, state, fault_code, total_count,
                                   # good_count, reject_count
    # name = "temperature"         # ...or instead of role: a process value's name
    area = "holding_register"      # Modbus: coil | discrete_input | holding_register
                                   #         | input_register
    address = 10                   # Modbus: 0-based protocol address
    # count = 2                    # Modbus, optional: registers as the PLC manual lists
                                   # them; checked against the type
    # bit = 3                      # Modbus: a bool kept in one bit (0..15) of a register
    # node = "ns=2;s={machine}.Count"  OPC UA: node id; {machine} becomes the machine id
    type = "uint32"                # bool, int16, uint16, int32, uint32, int64, uint64,
                                   # float32, float64
    # word_order = "little"        # per-signal override of the map default
    # scale = 0.1                  # engineering value = raw * scale + offset
    # offset = 0.0
    # unit = "degC"                # engineering unit (OPC UA EngineeringUnits)
    # min = 0                      # a value outside min..max is delivered as BAD
    # max = 17
    # deadband = 0.5               # process values: delivered only when they moved at
                                   # least this much (engineering units) since the last
                                   # delivered value; sensor noise then costs nothing
    # description = "..."

Rules the loader enforces (besides types and unknown keys):

- each role and name at most once; a process value cannot take a role's name;
- ``running`` is a bool; ``state`` and ``fault_code`` are integers; the counters
  are ``uint16``/``uint32``/``uint64`` and all of one width, which is the
  counter width the OEE core wraps at (OEE.md §5);
- roles take no scale/offset (the core needs the PLC's raw codes and counts) and no
  deadband (the core sees every counter step and every state edge); a ``deadband``
  is >= 0 and only for numbers;
- Modbus: coils and discrete inputs hold only ``bool``; a ``bool`` in a register
  needs ``bit``; a value fits below address 65536; two signals of one area never
  share a register, except different bits of the same register.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from actors.messages import COUNTER_ROLES, SIGNAL_ROLES
from edge.errors import ConfigError, Problem

__all__ = [
    "Area",
    "DataType",
    "Endian",
    "ModbusLocation",
    "NodeLocation",
    "PlcMap",
    "Protocol",
    "SignalDef",
    "find_plc_map",
    "load_plc_map",
    "parse_plc_map",
]

MODBUS_ADDRESS_SPACE = 65536
MACHINE_PLACEHOLDER = "{machine}"


class Protocol(Enum):
    MODBUS = "modbus"
    OPCUA = "opcua"


class Area(Enum):
    """A Modbus data area (the four tables of the protocol)."""

    COIL = "coil"
    DISCRETE_INPUT = "discrete_input"
    HOLDING_REGISTER = "holding_register"
    INPUT_REGISTER = "input_register"

    @property
    def holds_bits(self) -> bool:
        return self in (Area.COIL, Area.DISCRETE_INPUT)


class DataType(Enum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def registers(self) -> int:
        """How many 16-bit registers a value of this type occupies (a bool: one)."""
        return max(1, self.bits // 16)

    @property
    def is_float(self) -> bool:
        return self in (DataType.FLOAT32, DataType.FLOAT64)

    @property
    def is_integer(self) -> bool:
        return self is not DataType.BOOL and not self.is_float

    @property
    def is_signed(self) -> bool:
        return self in (DataType.INT16, DataType.INT32, DataType.INT64)

    @property
    def int_range(self) -> tuple[int, int]:
        """Smallest and largest value of an integer type."""
        if not self.is_integer:
            raise ValueError(f"{self.value} is not an integer type")
        if self.is_signed:
            half = 1 << (self.bits - 1)
            return -half, half - 1
        return 0, (1 << self.bits) - 1


_BITS = {
    DataType.BOOL: 1,
    DataType.INT16: 16,
    DataType.UINT16: 16,
    DataType.INT32: 32,
    DataType.UINT32: 32,
    DataType.INT64: 64,
    DataType.UINT64: 64,
    DataType.FLOAT32: 32,
    DataType.FLOAT64: 64,
}
_COUNTER_TYPES = (DataType.UINT16, DataType.UINT32, DataType.UINT64)


class Endian(Enum):
    """Order of bytes in a register, or of registers in a multi-register value."""

    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class ModbusLocation:
    area: Area
    address: int
    # Only for a bool kept in one bit of a register.
    bit: int | None = None


@dataclass(frozen=True, slots=True)
class NodeLocation:
    """An OPC UA node id template; ``{machine}`` is replaced by the machine id."""

    node: str

    def node_id(self, machine_id: str) -> str:
        return self.node.replace(MACHINE_PLACEHOLDER, machine_id)


@dataclass(frozen=True, slots=True)
class SignalDef:
    """One mapped signal: where it lives, how to decode it, what it means."""

    name: str
    data_type: DataType
    location: ModbusLocation | NodeLocation
    byte_order: Endian = Endian.BIG
    word_order: Endian = Endian.BIG
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    # Engineering units a process value must move before it is delivered again (0: any).
    deadband: float = 0.0

    @property
    def role(self) -> str | None:
        return self.name if self.name in SIGNAL_ROLES else None

    @property
    def is_counter(self) -> bool:
        return self.name in COUNTER_ROLES

    @property
    def is_scaled(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0

    @property
    def width(self) -> int:
        """Registers (register areas) or bits (bit areas) this signal reads."""
        loc = self.location
        if isinstance(loc, ModbusLocation) and (loc.area.holds_bits or loc.bit is not None):
            return 1
        return self.data_type.registers


@dataclass(frozen=True, slots=True)
class PlcMap:
    name: str
    protocol: Protocol
    signals: tuple[SignalDef, ...]
    description: str = ""
    source: str = ""

    def get(self, name: str) -> SignalDef | None:
        for signal in self.signals:
            if signal.name == name:
                return signal
        return None

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(s.name for s in self.signals if s.role is not None)

    @property
    def process_values(self) -> tuple[SignalDef, ...]:
        return tuple(s for s in self.signals if s.role is None)

    @property
    def counter_bits(self) -> int | None:
        """Width of the mapped counters (validated to be one width), None without counters."""
        for signal in self.signals:
            if signal.is_counter:
                return signal.data_type.bits
        return None


# --------------------------------------------------------------------------- loading


def find_plc_map(name_or_path: str, search_dirs: Sequence[Path]) -> Path | None:
    """A ``.toml`` path that exists, else ``<dir>/<name>.toml`` from the first dir that has it."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    for directory in search_dirs:
        path = Path(directory) / f"{name_or_path}.toml"
        if path.is_file():
            return path
    return None


def load_plc_map(name_or_path: str, search_dirs: Sequence[Path]) -> PlcMap:
    """Find, read and validate a plc_map; raises ConfigError with every problem."""
    path = find_plc_map(name_or_path, search_dirs)
    if path is None:
        dirs = ", ".join(str(d) for d in search_dirs) or "no directories"
        raise ConfigError(
            name_or_path,
            [Problem("", f"no plc_map named {name_or_path!r} (searched {dirs})")],
        )
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        cached = _LOADED.get(key)
        if cached is not None:
            return cached  # many machines share a map: parse it once
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [Problem("", f"cannot read: {exc}")]) from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [Problem("", f"invalid TOML: {exc}")]) from exc
    plc_map = parse_plc_map(document, name=path.stem, source=str(path))
    _LOADED[key] = plc_map
    return plc_map


# Parsed maps by (path, mtime, size): a changed file is read again. PlcMap is frozen.
_LOADED: dict[tuple[str, int, int], PlcMap] = {}


def parse_plc_map(document: Mapping[str, Any], *, name: str, source: str = "") -> PlcMap:
    """Validate an already parsed TOML document (tests and embedded maps use this)."""
    return _MapReader(source or name).read(document, name)


_TOP_KEYS = ("protocol", "description", "byte_order", "word_order", "signals")
_SIGNAL_KEYS = (
    "role",
    "name",
    "count",
    "type",
    "area",
    "address",
    "bit",
    "node",
    "byte_order",
    "word_order",
    "scale",
    "offset",
    "unit",
    "min",
    "max",
    "deadband",
    "description",
)
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_MISSING = object()
_E = TypeVar("_E", bound=Enum)


class _MapReader:
    """Collects every problem of one map instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # -- typed getters: record a problem and return None on a wrong type

    def _unknown_keys(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                where = f"{path}.{key}" if path else key
                self.problem(where, f"unknown key{suffix}")

    def _string(self, table: Mapping[str, Any], key: str, path: str) -> str | None:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return None
        if not isinstance(value, str):
            self.problem(path, f"must be a string, got {value!r}")
            return None
        return value

    def _integer(self, table: Mapping[str, Any], key: str, path: str) -> int | None:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"must be an integer, got {value!r}")
            return None
        return value

    def _number(self, table: Mapping[str, Any], key: str, path: str) -> float | None:
        value = table.get(key, _MISSING)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"must be a number, got {value!r}")
            return None
        if not math.isfinite(value):
            self.problem(path, f"must be a finite number, got {value!r}")
            return None
        return float(value)

    def _choice(self, table: Mapping[str, Any], key: str, path: str, enum: type[_E]) -> _E | None:
        raw = self._string(table, key, path)
        if raw is None:
            return None
        for member in enum:
            if member.value == raw:
                return member
        allowed = ", ".join(str(m.value) for m in enum)
        self.problem(path, f"unknown value {raw!r}, expected one of: {allowed}")
        return None

    # -- the document

    def read(self, document: Mapping[str, Any], name: str) -> PlcMap:
        self._unknown_keys(document, _TOP_KEYS, "")
        protocol = Protocol.MODBUS
        if "protocol" not in document:
            self.problem("protocol", 'missing: "modbus" or "opcua"')
        else:
            protocol = self._choice(document, "protocol", "protocol", Protocol) or protocol
        description = self._string(document, "description", "description") or ""
        byte_order = self._choice(document, "byte_order", "byte_order", Endian) or Endian.BIG
        word_order = self._choice(document, "word_order", "word_order", Endian) or Endian.BIG
        if protocol is Protocol.OPCUA:
            for key in ("byte_order", "word_order"):
                if key in document:
                    self.problem(key, "only Modbus maps have a byte or word order")

        raw_signals = document.get("signals", _MISSING)
        signals: list[tuple[int, SignalDef]] = []
        if raw_signals is _MISSING or raw_signals == []:
            self.problem("signals", "missing: a map needs at least one [[signals]] entry")
        elif not isinstance(raw_signals, list):
            self.problem("signals", "must be an array of tables ([[signals]])")
        else:
            for index, raw in enumerate(raw_signals):
                path = f"signals[{index}]"
                if not isinstance(raw, dict):
                    self.problem(path, "must be a table")
                    continue
                signal = self._signal(raw, path, protocol, byte_order, word_order)
                if signal is not None:
                    signals.append((index, signal))

        self._check_names(signals)
        self._check_counter_widths(signals)
        if protocol is Protocol.MODBUS:
            self._check_overlaps(signals)
        else:
            self._check_nodes(signals)

        if self.problems:
            raise ConfigError(self.source, self.problems)
        return PlcMap(
            name=name,
            protocol=protocol,
            signals=tuple(s for _, s in signals),
            description=description,
            source=self.source,
        )

    def _signal(
        self,
        raw: Mapping[str, Any],
        path: str,
        protocol: Protocol,
        default_byte_order: Endian,
        default_word_order: Endian,
    ) -> SignalDef | None:
        before = len(self.problems)
        self._unknown_keys(raw, _SIGNAL_KEYS, path)

        name = self._name(raw, path)
        data_type = self._choice(raw, "type", f"{path}.type", DataType)
        if "type" not in raw:
            self.problem(f"{path}.type", "missing")

        location: ModbusLocation | NodeLocation | None
        if protocol is Protocol.MODBUS:
            location = self._modbus_location(raw, path, data_type)
            byte_order = self._choice(raw, "byte_order", f"{path}.byte_order", Endian)
            word_order = self._choice(raw, "word_order", f"{path}.word_order", Endian)
        else:
            location = self._node_location(raw, path)
            byte_order = word_order = None
            for key in ("byte_order", "word_order"):
                if key in raw:
                    self.problem(f"{path}.{key}", "only Modbus maps have a byte or word order")

        scale = self._number(raw, "scale", f"{path}.scale")
        offset = self._number(raw, "offset", f"{path}.offset")
        minimum = self._number(raw, "min", f"{path}.min")
        maximum = self._number(raw, "max", f"{path}.max")
        unit = self._string(raw, "unit", f"{path}.unit") or ""
        description = self._string(raw, "description", f"{path}.description") or ""
        deadband = self._number(raw, "deadband", f"{path}.deadband")
        if deadband is not None and not deadband >= 0.0:
            self.problem(f"{path}.deadband", f"must be >= 0, got {deadband:g}")

        if scale == 0.0:
            self.problem(f"{path}.scale", "must not be 0")
        if minimum is not None and maximum is not None and minimum > maximum:
            self.problem(f"{path}.max", f"must be >= min ({minimum:g}), got {maximum:g}")

        if name is not None and data_type is not None:
            self._check_role(raw, path, name, data_type)
            if data_type is DataType.BOOL:
                for key in ("scale", "offset", "min", "max", "deadband"):
                    if key in raw:
                        self.problem(f"{path}.{key}", "not allowed for a bool")
            elif name in SIGNAL_ROLES and "deadband" in raw:
                self.problem(
                    f"{path}.deadband",
                    f"not allowed for the role {name!r}: the core needs every change of it",
                )

        if len(self.problems) > before or name is None or data_type is None or location is None:
            return None
        return SignalDef(
            name=name,
            data_type=data_type,
            location=location,
            byte_order=byte_order or default_byte_order,
            word_order=word_order or default_word_order,
            scale=1.0 if scale is None else scale,
            offset=0.0 if offset is None else offset,
            unit=unit,
            minimum=minimum,
            maximum=maximum,
            description=description,
            deadband=0.0 if deadband is None else deadband,
        )

    def _name(self, raw: Mapping[str, Any], path: str) -> str | None:
        if "role" in raw and "name" in raw:
            self.problem(path, "give either role (a signal role) or name (a process value)")
            return None
        if "role" in raw:
            role = self._string(raw, "role", f"{path}.role")
            if role is not None and role not in SIGNAL_ROLES:
                roles = sorted(SIGNAL_ROLES)
                hint = difflib.get_close_matches(role, roles, n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.problem(
                    f"{path}.role", f"unknown role {role!r}{suffix}; roles: {', '.join(roles)}"
                )
                return None
            return role
        if "name" not in raw:
            self.problem(
                f"{path}.name", "missing: role = a signal role, or name = a process value name"
            )
            return None
        name = self._string(raw, "name", f"{path}.name")
        if name is None:
            return None
        if name in SIGNAL_ROLES:
            self.problem(f"{path}.name", f"{name!r} is a role: write role = {name!r}")
            return None
        if not _NAME_RE.match(name):
            self.problem(
                f"{path}.name",
                f"must be a letter then letters, digits or _ (at most 64), got {name!r}",
            )
            return None
        return name

    def _check_role(
        self, raw: Mapping[str, Any], path: str, name: str, data_type: DataType
    ) -> None:
        if name not in SIGNAL_ROLES:
            return
        type_path = f"{path}.type"
        if name == "running" and data_type is not DataType.BOOL:
            self.problem(type_path, f"running must be bool, got {data_type.value}")
        elif name in ("state", "fault_code") and not data_type.is_integer:
            self.problem(type_path, f"{name} must be an integer type, got {data_type.value}")
        elif name in COUNTER_ROLES and data_type not in _COUNTER_TYPES:
            self.problem(
                type_path,
                f"a counter must be uint16, uint32 or uint64 (unsigned, it wraps), "
                f"got {data_type.value}",
            )
        for key in ("scale", "offset"):
            if key in raw:
                self.problem(f"{path}.{key}", f"not allowed for the role {name!r} (raw values)")
        if name in COUNTER_ROLES:
            for key in ("min", "max"):
                if key in raw:
                    self.problem(f"{path}.{key}", "not allowed for a counter (it wraps)")

    def _modbus_location(
        self, raw: Mapping[str, Any], path: str, data_type: DataType | None
    ) -> ModbusLocation | None:
        if "node" in raw:
            self.problem(f"{path}.node", "only OPC UA maps have node ids")
        area = self._choice(raw, "area", f"{path}.area", Area)
        if "area" not in raw:
            self.problem(f"{path}.area", "missing")
        address = self._integer(raw, "address", f"{path}.address")
        if "address" not in raw:
            self.problem(f"{path}.address", "missing")
        bit = self._integer(raw, "bit", f"{path}.bit")

        if address is not None and not 0 <= address < MODBUS_ADDRESS_SPACE:
            self.problem(f"{path}.address", f"must be 0..65535, got {address}")
            address = None
        if bit is not None and not 0 <= bit <= 15:
            self.problem(f"{path}.bit", f"must be 0..15, got {bit}")
            bit = None
        if area is None or data_type is None:
            return None

        if area.holds_bits:
            if data_type is not DataType.BOOL:
                self.problem(
                    f"{path}.type",
                    f"a {area.value} holds one bit: type must be bool, got {data_type.value}",
                )
            if "bit" in raw:
                self.problem(f"{path}.bit", f"only for a bool in a register, not in a {area.value}")
        elif data_type is DataType.BOOL:
            if "bit" not in raw:
                self.problem(f"{path}.bit", "missing: a bool in a register needs its bit (0..15)")
        elif "bit" in raw:
            self.problem(f"{path}.bit", f"only for a bool, not for {data_type.value}")

        width = 1 if area.holds_bits or data_type is DataType.BOOL else data_type.registers
        declared = self._integer(raw, "count", f"{path}.count")
        if declared is not None and declared != width:
            unit = "bit" if area.holds_bits else "register"
            plural = "" if width == 1 else "s"
            self.problem(
                f"{path}.count",
                f"a {data_type.value} in a {area.value} occupies {width} {unit}{plural}, "
                f"got {declared}",
            )
        if address is not None and not area.holds_bits and data_type is not DataType.BOOL:
            count = data_type.registers
            if address + count > MODBUS_ADDRESS_SPACE:
                self.problem(
                    f"{path}.address",
                    f"{data_type.value} needs {count} registers from {address}: past 65535",
                )
                return None
        if address is None:
            return None
        return ModbusLocation(area=area, address=address, bit=bit)

    def _node_location(self, raw: Mapping[str, Any], path: str) -> NodeLocation | None:
        for key in ("area", "address", "bit", "count"):
            if key in raw:
                self.problem(f"{path}.{key}", "only Modbus maps have areas, addresses and bits")
        node = self._string(raw, "node", f"{path}.node")
        if "node" not in raw:
            self.problem(f"{path}.node", 'missing: an OPC UA node id like "ns=2;s={machine}.Count"')
            return None
        if node is None:
            return None
        if not node.strip():
            self.problem(f"{path}.node", "must not be empty")
            return None
        unknown = [p for p in _PLACEHOLDER_RE.findall(node) if p != "machine"]
        if unknown:
            self.problem(
                f"{path}.node",
                f"unknown placeholder {{{unknown[0]}}}: only {MACHINE_PLACEHOLDER} is substituted",
            )
            return None
        return NodeLocation(node=node)

    # -- whole-map checks

    def _check_names(self, signals: Sequence[tuple[int, SignalDef]]) -> None:
        seen: dict[str, int] = {}
        for index, signal in signals:
            first = seen.setdefault(signal.name, index)
            if first != index:
                what = "role" if signal.role else "signal"
                self.problem(
                    f"signals[{index}].{what if signal.role else 'name'}",
                    f"{what} {signal.name!r} is already mapped at signals[{first}]",
                )

    def _check_counter_widths(self, signals: Sequence[tuple[int, SignalDef]]) -> None:
        first: SignalDef | None = None
        for index, signal in signals:
            if not signal.is_counter:
                continue
            if first is None:
                first = signal
            elif signal.data_type.bits != first.data_type.bits:
                self.problem(
                    f"signals[{index}].type",
                    f"all counters share one width: {first.name} is {first.data_type.bits} bits, "
                    f"this is {signal.data_type.bits}",
                )

    def _check_overlaps(self, signals: Sequence[tuple[int, SignalDef]]) -> None:
        # Per area: register/bit address -> (index, bit or None for the whole word).
        occupied: dict[tuple[Area, int], list[tuple[int, int | None]]] = {}
        for index, signal in signals:
            loc = signal.location
            if not isinstance(loc, ModbusLocation):
                continue
            for address in range(loc.address, loc.address + signal.width):
                users = occupied.setdefault((loc.area, address), [])
                clash = next(
                    (
                        other
                        for other, other_bit in users
                        if loc.bit is None or other_bit is None or other_bit == loc.bit
                    ),
                    None,
                )
                if clash is not None:
                    self.problem(
                        f"signals[{index}].address",
                        f"{loc.area.value} {address} is already used by signals[{clash}]",
                    )
                    break
                users.append((index, loc.bit))

    def _check_nodes(self, signals: Sequence[tuple[int, SignalDef]]) -> None:
        seen: dict[str, int] = {}
        for index, signal in signals:
            loc = signal.location
            if not isinstance(loc, NodeLocation):
                continue
            first = seen.setdefault(loc.node, index)
            if first != index:
                self.problem(f"signals[{index}].node", f"already used by signals[{first}]")
