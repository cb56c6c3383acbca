"""Link state of one PLC connection (the backoff between reconnect attempts: edge.backoff).

Protocol-neutral: the Modbus source uses it and an OPC UA source can too.
:class:`LinkTracker` reports only transitions, so a failure is logged once
(warning, with the reason) and the recovery once (info, with the outage
length), however many attempts lie between.
"""

from __future__ import annotations

import logging
from enum import Enum

from edge.backoff import Backoff

__all__ = ["Backoff", "LinkState", "LinkTracker"]  # Backoff: from edge.backoff


class LinkState(Enum):
    UNKNOWN = "unknown"  # nothing tried yet
    UP = "up"
    DOWN = "down"


class LinkTracker:
    """Up/down state of one link; the methods say whether a transition happened."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self._name = name
        self._log = logger
        self._state = LinkState.UNKNOWN
        self._down_since: float | None = None
        self._consecutive_failures = 0

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def is_up(self) -> bool:
        return self._state is LinkState.UP

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    @property
    def down_since(self) -> float | None:
        return self._down_since

    def failed(self, ts: float, reason: str) -> bool:
        """Record a failed attempt at ``ts``; True when the link just went down."""
        self._consecutive_failures += 1
        if self._state is LinkState.DOWN:
            return False
        self._state = LinkState.DOWN
        self._down_since = ts
        self._log.warning("%s: link down: %s", self._name, reason)
        return True

    def succeeded(self, ts: float) -> bool:
        """Record a successful attempt at ``ts``; True when the link just came up."""
        self._consecutive_failures = 0
        if self._state is LinkState.UP:
            return False
        if self._state is LinkState.DOWN and self._down_since is not None:
            self._log.info(
                "%s: link restored after %.1f s down", self._name, max(0.0, ts - self._down_since)
            )
        else:
            self._log.info("%s: link up", self._name)
        self._state = LinkState.UP
        self._down_since = None
        return True
