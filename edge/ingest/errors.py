"""Errors of the central store (under :class:`edge.errors.ConnectorError`)."""

from __future__ import annotations

from edge.errors import ConnectorError
from edge.wire import WireError

__all__ = ["MalformedBatch", "RefusedBatch", "StoreError", "StoreUnavailableError"]


class StoreError(ConnectorError):
    """The central PostgreSQL store failed or refused (schema, a statement)."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached right now; the batch waits (not acknowledged)."""


class RefusedBatch(StoreError):
    """PostgreSQL refused the batch's data (a value out of range, a broken constraint)."""


class MalformedBatch(WireError):
    """A message on an events topic is not a batch this store can keep; it is dead-lettered."""
