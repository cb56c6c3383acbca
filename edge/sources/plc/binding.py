"""Protocol-neutral pieces shared by every PLC source (Modbus, OPC UA)."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Self

from edge.config.plc_maps import PlcMap, Protocol
from edge.errors import Problem

_log = logging.getLogger("edge.plc")


class SourceState(Enum):
    UNOPENED = "unopened"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class MachineBinding:
    """A machine read through a PLC connection with a plc_map.

    ``address_offset`` is added to every address of the map, so one map serves
    several identical machines behind one PLC; ``unit_id`` is the Modbus device id.
    """

    machine_id: str
    plc_map: PlcMap
    unit_id: int = 1
    address_offset: int = 0


class SourceLifecycle(ABC):
    """The lifecycle every PLC source shares: ``async with`` starts its one
    background task, leaving the block cancels it and closes the connection.
    A source runs once; a second ``async with`` raises RuntimeError."""

    _name: str
    _state: SourceState = SourceState.UNOPENED
    _task: asyncio.Task[None] | None = None

    @property
    def state(self) -> SourceState:
        return self._state

    @abstractmethod
    async def _run(self) -> None:
        """The source's loop (polling or following a subscription) until cancelled."""

    @abstractmethod
    async def _shutdown(self) -> None:
        """Close the connection after the loop was cancelled."""

    async def __aenter__(self) -> Self:
        if self._state is not SourceState.UNOPENED:
            raise RuntimeError(
                f"{self._name}: a {type(self).__name__} runs once (state {self._state.value})"
            )
        self._state = SourceState.RUNNING
        self._task = asyncio.create_task(self._run(), name=self._name)
        self._task.add_done_callback(self._on_task_done)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = SourceState.CLOSED
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._shutdown()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            _log.error("%s: source loop crashed", self._name, exc_info=task.exception())


def checked_bindings(
    bindings: Sequence[MachineBinding], protocol: Protocol, kind: str, problems: list[Problem]
) -> Iterator[tuple[str, MachineBinding]]:
    """(where, binding) of each binding a PLC source of ``protocol`` can read; what is
    wrong with the others (none at all, one bound twice, another protocol's map) is
    added to ``problems``."""
    seen: set[str] = set()
    if not bindings:
        problems.append(Problem("machines", "no machine is bound to this PLC"))
    for binding in bindings:
        where = f"machine {binding.machine_id}"
        if binding.machine_id in seen:
            problems.append(Problem(where, "bound twice to this PLC"))
        seen.add(binding.machine_id)
        plc_map = binding.plc_map
        if plc_map.protocol is not protocol:
            article = "an" if plc_map.protocol.value[0] in "aeiou" else "a"
            problems.append(
                Problem(
                    f"{where}.plc_map",
                    f"{plc_map.name!r} is {article} {plc_map.protocol.value} map, not {kind} map",
                )
            )
            continue
        yield where, binding
