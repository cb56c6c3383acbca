"""``[[plcs]]``: the PLC connections (Modbus TCP or OPC UA), and reading a plc_map."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from edge.config.schema import Check, Identifier, NonEmpty, Port, Positive, Reader, between
from edge.errors import ConfigError
from edge.secrets import Secret

if TYPE_CHECKING:
    from edge.config.plc_maps import PlcMap


def _opc_endpoint(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme != "opc.tcp" or not parts.hostname:
        return f'must be an OPC UA endpoint "opc.tcp://host:port/path", got {value!r}'
    try:
        _ = parts.port
    except ValueError:
        return f"has an invalid port: {value!r}"
    return None


OpcEndpoint = Annotated[str, Check(_opc_endpoint)]
Seconds = Annotated[float, Positive]


@dataclass(frozen=True, slots=True)
class ModbusPlcConfig:
    id: Annotated[str, Identifier]
    host: Annotated[str, NonEmpty]
    port: Annotated[int, Port] = 502
    poll_interval_s: Seconds = 1.0
    timeout_s: Seconds = 1.0
    retries: Annotated[int, between(0, 10)] = 1
    max_gap: Annotated[int, between(0, 124)] = 8
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 30.0
    protocol: Literal["modbus"] = "modbus"


@dataclass(frozen=True, slots=True)
class OpcUaPlcConfig:
    id: Annotated[str, Identifier]
    endpoint: OpcEndpoint
    sampling_interval_s: Seconds = 0.5
    publishing_interval_s: Seconds = 0.5
    timeout_s: Seconds = 5.0
    username: str | None = None
    password: Secret | None = None
    backoff_initial_s: Seconds = 1.0
    backoff_max_s: Seconds = 30.0
    protocol: Literal["opcua"] = "opcua"


PlcConfig = ModbusPlcConfig | OpcUaPlcConfig
_Protocol = Literal["modbus", "opcua"]
_PROTOCOLS: dict[str, type[PlcConfig]] = {"modbus": ModbusPlcConfig, "opcua": OpcUaPlcConfig}


def check_backoff(reader: Reader, section: Any, path: str) -> None:
    if section.backoff_max_s < section.backoff_initial_s:
        reader.problem(f"{path}.backoff_max_s", "must be >= backoff_initial_s")


@dataclass
class Plcs:
    """The ``[[plcs]]``: every entry's id, valid or not (so references to it stay quiet)."""

    ids: set[str] = field(default_factory=set)
    by_id: dict[str, PlcConfig] = field(default_factory=dict)


def read_plcs(reader: Reader, doc: dict[str, Any]) -> Plcs:
    plcs = Plcs()
    for index, raw in enumerate(reader.entries(doc, "plcs")):
        path, plc_id = f"plcs[{index}]", raw.get("id")
        if plc_id in plcs.ids:
            reader.problem(f"{path}.id", f"duplicate plc id {plc_id!r}")
        plcs.ids |= {plc_id} if isinstance(plc_id, str) else set()
        if "protocol" not in raw:
            reader.problem(f"{path}.protocol", "missing required key (expected a string)")
        protocol = (
            reader.value(_Protocol, raw["protocol"], f"{path}.protocol")
            if "protocol" in raw
            else None
        )
        plc = reader.section(_PROTOCOLS[protocol], raw, path) if protocol in _PROTOCOLS else None
        if plc is not None:
            check_backoff(reader, plc, path)
            plcs.by_id.setdefault(plc.id, plc)
    return plcs


def read_plc_map(
    reader: Reader, name: str, map_dirs: tuple[Path, ...], path: str, plc: PlcConfig | None
) -> PlcMap | None:
    """A machine's or station's plc_map, its problems reported under ``path``."""
    from edge.config.plc_maps import find_plc_map, load_plc_map  # noqa: PLC0415 - avoids a cycle

    if find_plc_map(name, map_dirs) is None:
        dirs = ", ".join(str(d) for d in map_dirs)
        reader.problem(path, f"unknown plc_map {name!r} (searched {dirs})")
        return None
    try:
        plc_map = load_plc_map(name, map_dirs)
    except ConfigError as exc:
        for problem in exc.problems:
            where = f"{path} ({exc.source})" + (f" {problem.path}" if problem.path else "")
            reader.problem(where, problem.message)
        return None
    if plc is not None and plc_map.protocol.value != plc.protocol:
        reader.problem(
            path,
            f"plc_map {name!r} is for {plc_map.protocol.value} but plc {plc.id!r} "
            f"speaks {plc.protocol}",
        )
    return plc_map
