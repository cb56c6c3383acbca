"""The line's own OPC UA server (asyncua): address space, live values, events,
methods and security, for SCADA and HMI clients.

Wire it into a LineService as a component::

    from edge import opcua_server
    LineService(config, components=[opcua_server.component])

Public surface: :func:`component`, :class:`OpcUaServer` (``ingest_samples``,
``set_diagnostics``, ``statistics``, ``banner``), :func:`application_uri`.
The address space is described in :mod:`edge.opcua_server.model`, what a
value is worth while its PLC link is down in :mod:`edge.opcua_server.machines`,
the methods in :mod:`edge.opcua_server.methods`, security in
:mod:`edge.opcua_server.security`.
"""

from edge.opcua_server.server import (
    OpcUaServer,
    OpcUaServerStatistics,
    ServerState,
    application_uri,
    component,
)

__all__ = [
    "OpcUaServer",
    "OpcUaServerStatistics",
    "ServerState",
    "application_uri",
    "component",
]
