"""Capped exponential backoff with jitter, for every reconnect loop (PLCs, MQTT, QMIB)."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


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
