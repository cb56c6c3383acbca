"""What a component of the line sees of it: :class:`LineContext`.

A component (the OPC UA server, the MQTT forwarder, QMIB, the line display and
metrics, the order runtime...) is built by a :data:`ComponentFactory` from a
``LineContext`` and lives as an async context manager while the line runs. The
context is the whole of what it may use: the config, the event and sample
buses, the machine actors, the supervisor (to add actors of its own), the state
database and its cut (what a restart restores), the PLC sources' statistics and
the other components (for figures they publish). The line service
(:mod:`edge.runtime.service`) implements it; nothing below the service imports
the service.

Imports run one way (checked in ``make lint``)::

    edge.cli, edge.bench ─► edge.runtime, edge.ingest
      ─► edge.serve | edge.forward | edge.orders     (the components)
      ─► edge.context                                 (this module)
      ─► edge.sources | edge.state                    (PLC sources; state.db)
      ─► edge.config, edge.errors, edge.commands, edge.event_bus, edge.wire, ...
      ─► actors                                       (the domain, pure)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from actors.actor import ActorRef
from actors.machine import MachineMessage, MachineStatus
from actors.messages import LinkChanged, Sample
from actors.oee.calendar import ShiftCalendar
from actors.supervisor import Supervisor
from edge.commands import LineCommands
from edge.config import LineConfig
from edge.event_bus import BusEvent, EventBus
from edge.sources.plc.binding import MachineBinding
from edge.sources.plc.delivery import SampleSink
from edge.state.cut import CutSources
from edge.state.outbox import Outbox, OutboxWriter
from edge.state.store import StateStore

__all__ = ["AfterSources", "Component", "ComponentFactory", "LineContext", "ServiceState"]


class ServiceState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class LineContext(Protocol):
    """The line as its components see it (implemented by the line service)."""

    @property
    def config(self) -> LineConfig: ...

    @property
    def calendar(self) -> ShiftCalendar: ...

    @property
    def bus(self) -> EventBus[BusEvent]:
        """Every domain event of the line, as published."""

    @property
    def samples(self) -> EventBus[Sample | LinkChanged]:
        """Every batch the PLC sources deliver, process values too."""

    # Set by the component that implements the line's commands (the order runtime).
    commands: LineCommands | None

    @property
    def state(self) -> ServiceState: ...

    @property
    def started_at(self) -> float | None:
        """When the line was up (epoch seconds), None before."""

    @property
    def supervisor(self) -> Supervisor:
        """The line's supervisor, for components that add actors (work orders)."""

    @property
    def cuts(self) -> CutSources:
        """Where a component registers its part of the line's state (edge.state.cut)."""

    @property
    def store(self) -> StateStore:
        """The state database, and what it restored at start."""

    @property
    def outbox(self) -> Outbox:
        """The event streams for the MES and QMIB in the state database."""

    @property
    def writer(self) -> OutboxWriter:
        """Commits the line's state with its events."""

    @property
    def sources(self) -> Sequence[Any]:
        """The running PLC sources (each has ``plc_id`` and ``statistics()``)."""

    @property
    def components(self) -> Sequence[Any]:
        """The running components, in start order (read, by duck typing, for the
        figures and health checks they publish)."""

    def machine_ref(self, machine_id: str) -> ActorRef[MachineMessage, Any]: ...

    async def machine_statuses(self) -> list[MachineStatus]: ...

    def attach_bindings(
        self, plc_id: str, bindings: Sequence[MachineBinding], sink: SampleSink
    ) -> None:
        """More points to read on a PLC's connection, delivered to ``sink`` (while
        the component starts, before the PLC sources are built)."""

    async def persist_now(self) -> None:
        """Commit the line's state now (returns once it is durable)."""


# A part of the line started after the actors and before the PLC sources (so it
# sees every event from the first sample on), stopped in reverse order.
ComponentFactory = Callable[[LineContext], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True, slots=True)
class AfterSources:
    """A component that takes long to start (the OPC UA server builds thousands of
    nodes), started after the PLC sources so counting does not wait for it.

    It may not attach bindings (the sources are built); everything published on
    ``bus`` and ``samples`` while it starts is replayed to the consumers it
    subscribes, in order, once it is up."""

    factory: ComponentFactory


Component = ComponentFactory | AfterSources
