"""Small actors and messages the runtime tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from actors.actor import Actor


@dataclass(frozen=True, slots=True)
class Put:
    """Record ``value``; a ``(key, value)`` tuple coalesces on ``key``."""

    value: object


@dataclass(frozen=True, slots=True)
class Get:
    """Reply with everything recorded so far, as a tuple."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Block the handler until ``gate`` is set; ``entered`` says it got there."""

    gate: asyncio.Event
    entered: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Boom:
    """Raise ``error`` from the handler."""

    error: Exception


Message = Put | Get | Hold | Boom


class Recorder(Actor[Message, object]):
    """Records values; its snapshot is the tuple of values, so restarts can be checked."""

    def __init__(self, log: list[tuple[str, object]] | None = None, label: str = "") -> None:
        self.seen: list[object] = []
        self.log = log if log is not None else []
        self.label = label
        self.failures: list[BaseException] = []
        self.snapshots_taken = 0

    async def handle(self, message: Message) -> object:
        match message:
            case Put(value):
                self.seen.append(value)
                return None
            case Get():
                return tuple(self.seen)
            case Hold(gate, entered):
                entered.set()
                await gate.wait()
                return None
            case Boom(error):
                raise error
        raise AssertionError(f"unexpected message {message!r}")

    async def on_start(self) -> None:
        self.log.append(("on_start", self.label))

    async def on_stop(self) -> None:
        self.log.append(("on_stop", (self.label, tuple(self.seen))))

    def on_failure(self, exc: BaseException) -> None:
        self.failures.append(exc)

    def snapshot(self) -> object | None:
        self.snapshots_taken += 1
        return tuple(self.seen)

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        self.seen = list(snapshot)
        self.log.append(("restore", (self.label, snapshot)))

    def coalesce_key(self, message: Message) -> Hashable | None:
        if isinstance(message, Put) and isinstance(message.value, tuple):
            key: Hashable = message.value[0]
            return key
        return None


class Factory:
    """A child spec factory that keeps every instance it made, in order."""

    def __init__(self, make: Callable[[], Recorder]) -> None:
        self._make = make
        self.instances: list[Recorder] = []

    def __call__(self) -> Recorder:
        instance = self._make()
        self.instances.append(instance)
        return instance


async def eventually(predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Wait until ``predicate()`` holds; fail the test after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        # Polling on purpose: the tests observe the runtime from outside, without hooks.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def settle(rounds: int = 10) -> None:
    """Let every ready task run a few steps (nothing here sleeps on a timer)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
