"""Edge line controller: one service per production line.

It reads the line's PLCs, keeps every machine, work order and quality station as
an actor, computes counts, stops and OEE at the edge, and serves that state to
SCADA (OPC UA), Prometheus, the MES (MQTT) and QMIB.

This module stays import-light: ``edge.errors`` is imported by the pure core.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
