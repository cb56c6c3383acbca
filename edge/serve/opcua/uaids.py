"""NodeId constructors typed for mypy (asyncua's NodeId wants its NewType'd ints/strs)."""

from __future__ import annotations

import functools
from datetime import UTC

from asyncua import ua
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

__all__ = [
    "AttributeIds",
    "ObjectIds",
    "StatusCodes",
    "numeric",
    "numeric_in",
    "status",
    "string",
    "ua_time",
]


@functools.cache
def numeric(identifier: int) -> ua.NodeId:
    """A namespace-0 NodeId (standard nodes and types).

    Shared: every node's DataType, TypeDefinition and reference type points at one
    of a few dozen of these, and asyncua never mutates a NodeId in place."""
    return ua.NodeId(ua.Int32(identifier))


def numeric_in(identifier: int, idx: int) -> ua.NodeId:
    """A numeric NodeId in namespace ``idx`` (a companion specification's node)."""
    return ua.NodeId(ua.Int32(identifier), ua.Int16(idx))


def string(text: str, idx: int) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(idx))


def status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def ua_time(ts: float) -> ua.DateTime:
    """An event time (epoch seconds, UTC) as an OPC UA DateTime."""
    return ua.DateTime.fromtimestamp(ts, UTC)
