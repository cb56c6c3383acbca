"""The line's own OPC UA server (asyncua): address space, live values, events,
methods and security, for SCADA and HMI clients.

Wire it into a LineService as a component::

    from edge.serve import opcua as opcua_server
    LineService(config, components=[opcua_server.component])

Public surface: :func:`component`, :class:`OpcUaServer` (``ingest_samples``,
``set_diagnostics``, ``statistics``, ``banner``), :func:`application_uri`.
The address space is described in :mod:`edge.serve.opcua.model`, what a
value is worth while its PLC link is down in :mod:`edge.serve.opcua.machines`,
the methods in :mod:`edge.serve.opcua.methods`, security in
:mod:`edge.serve.opcua.security`.
"""

from edge.serve.opcua.server import (
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
