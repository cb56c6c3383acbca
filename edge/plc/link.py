"""Link state of one PLC connection and the backoff between reconnect attempts.

Protocol-neutral: the Modbus source uses it and an OPC UA source can too.
:class:`LinkTracker` reports only transitions, so a failure is logged once
(warning, with the reason) and the recovery once (info, with the outage
length), however many attempts lie between.
"""

from __future__ import annotations

import logging
import random
from enum import Enum

__all__ = ["Backoff", "LinkState", "LinkTracker"]


class Backoff:
    """Capped exponential backoff with jitter.

    Attempt n waits ``min(max_s, initial_s * factor**n)`` scaled by a random
    factor in ``[1 - jitter, 1]``, so PLCs that dropped together do not all
    reconnect in the same instant, and no wait exceeds ``max_s``.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.25,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        if factor < 1.0 or not 0.0 <= jitter < 1.0:
            raise ValueError(f"need factor >= 1 and 0 <= jitter < 1, got {factor}, {jitter}")
        self._initial = initial_s
        self._max = max_s
        self._factor = factor
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        return self._attempts

    def next_delay(self) -> float:
        # min() before the power would overflow: stop growing once capped.
        exponent = min(self._attempts, 64)
        capped = min(self._max, self._initial * self._factor**exponent)
        self._attempts += 1
        return capped * (1.0 - self._jitter * self._rng.random())

    def reset(self) -> None:
        self._attempts = 0


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
