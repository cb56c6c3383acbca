"""PLC connectivity: plc_maps, decoding, and the sources that feed the machine actors.

Public surface (everything else in this package is private)::

    load_plc_map(name_or_path, search_dirs) -> PlcMap      raises ConfigError
    ModbusSource(plc, bindings, sink)                        async with; .statistics()
    edge.sources.plc.opcua.OpcUaSource(plc, bindings, sink)          the same for OPC UA (imported
                                                             from its module: asyncua is heavy)
    MachineBinding(machine_id, plc_map, unit_id, address_offset)
    SampleSink = Callable[[Sequence[Sample | LinkChanged]], Awaitable[None]]

Errors: :class:`~edge.errors.ConfigError` for a bad map or binding,
:class:`~edge.errors.PlcConnectionError` / :class:`~edge.errors.PlcDataError`
inside the sources (never raised to the sink; they become LinkChanged and BAD
samples). The protocol-neutral pieces (maps, codec, link state, change filter)
are meant for other sources (OPC UA) too.
"""

from edge.backoff import Backoff
from edge.config.plc_maps import (
    Area,
    DataType,
    Endian,
    ModbusLocation,
    NodeLocation,
    PlcMap,
    Protocol,
    SignalDef,
    find_plc_map,
    load_plc_map,
    parse_plc_map,
)
from edge.sources.plc.binding import MachineBinding, SourceState
from edge.sources.plc.codec import (
    compile_decoder,
    decode_registers,
    encode_registers,
    from_engineering,
    to_engineering,
)
from edge.sources.plc.delivery import ChangeFilter, SampleSink, SourceEvent
from edge.sources.plc.link import LinkState, LinkTracker
from edge.sources.plc.modbus import ModbusSource, ModbusStatistics

__all__ = [
    "Area",
    "Backoff",
    "ChangeFilter",
    "DataType",
    "Endian",
    "LinkState",
    "LinkTracker",
    "MachineBinding",
    "ModbusLocation",
    "ModbusSource",
    "ModbusStatistics",
    "NodeLocation",
    "PlcMap",
    "Protocol",
    "SampleSink",
    "SignalDef",
    "SourceEvent",
    "SourceState",
    "compile_decoder",
    "decode_registers",
    "encode_registers",
    "find_plc_map",
    "from_engineering",
    "load_plc_map",
    "parse_plc_map",
    "to_engineering",
]
