"""MachineActor: one machine's OEE core behind a mailbox.

It consumes samples and link changes from the PLC sources, event-time ticks,
orders and operator reasons; it publishes the core's domain events to the
event bus after every message that produced some; and it answers queries for
the current KPIs.

Restart semantics (OEE.md §3, §5): after a restart from a snapshot, whether a
crash restart by the supervisor or a process restart from the state store, the
time between the snapshot and the next thing heard from the PLC is ``unknown``
(``comm_loss``): the edge was not watching. The restored actor asks its PLC
source for every current value (sources deliver only changes), so it leaves
``unknown`` with the next poll. Counters continue from the
snapshot's last readings, so pieces made meanwhile are counted once, at the
first reading after the restart.

Between two messages the actor has published every event its state implies
(each handler publishes at its end and never awaits), so a snapshot taken
then agrees with the events already on the bus: the line's state store
commits both in one transaction (edge.state.cut).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.actor import Actor
from actors.messages import LinkChanged, Sample
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.events import DomainEvent
from actors.oee.kpi import KpiRecord
from actors.oee.params import MachineParams
from actors.oee.state import MachineState

EventSink = Callable[[Sequence[DomainEvent]], None]

# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """Samples of one machine from one poll, in the order they were read."""

    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """Event time moved to ``ts`` (from the service clock): counts-only stop
    detection and shift closing do not wait for the next sample."""

    ts: float


@dataclass(frozen=True, slots=True)
class SetOrder:
    order_id: str | None
    ideal_cycle_s: float | None
    ts: float


@dataclass(frozen=True, slots=True)
class SetStopReason:
    """An operator reason for the stop with ``stop_id``, else the stop at ``ts``,
    else the open stop. Sent with ``ask``: a refusal comes back as CommandError."""

    reason: str
    ts: float | None = None
    stop_id: int | None = None


@dataclass(frozen=True, slots=True)
class AddRejects:
    count: int
    ts: float


@dataclass(frozen=True, slots=True)
class GetStatus:
    """Ask for a :class:`MachineStatus` as of event time ``now``."""

    now: float


@dataclass(frozen=True, slots=True)
class GetShiftStops:
    """Ask for the stops of the current shift instance as of event time ``now``
    (a list of :class:`~actors.oee.stops.StopRecord`, oldest first)."""

    now: float


@dataclass(frozen=True, slots=True)
class GetSnapshot:
    """Ask for the state to persist (plain data)."""


MachineMessage = (
    SampleBatch
    | Sample
    | LinkChanged
    | Tick
    | SetOrder
    | SetStopReason
    | AddRejects
    | GetStatus
    | GetShiftStops
    | GetSnapshot
)
# Asks that change nothing: a replay skips them.
_QUERIES = (GetStatus, GetShiftStops, GetSnapshot)


def _discard(events: Sequence[DomainEvent]) -> None:
    """The event sink of a replay: its events were published the first time."""


@dataclass(frozen=True, slots=True)
class MachineStatus:
    machine_id: str
    state: MachineState
    state_since: float | None
    stop_reason: str | None
    counters: dict[str, int]
    current_shift: KpiRecord | None
    last_closed_shift: KpiRecord | None
    current_order_id: str | None
    current_order: KpiRecord | None
    event_time: float | None


# ----------------------------------------------------------------------------- actor


class MachineActor(Actor[MachineMessage, Any]):
    # A quality station's rejects still queued when the line's state is cut are part
    # of it: the station already published them (actors.actor, "Cuts").
    kept_on_cut = (AddRejects,)
    read_only = _QUERIES
    # A crash restart continues from the pieces and stops it had already published,
    # not from the last snapshot (up to a second older): none is counted twice.
    replays_messages = True

    def __init__(
        self,
        params: MachineParams,
        calendar: ShiftCalendar,
        publish: EventSink,
        snapshot: dict[str, Any] | None = None,
        *,
        request_values: Callable[[str], None] | None = None,
    ) -> None:
        self.params = params
        self.calendar = calendar
        self.publish = publish
        # Asks the PLC source for every current value (it sends only changes).
        self.request_values = request_values
        self.core = MachineCore(params, calendar)
        self._event_time: float | None = None
        self._watching = True  # False after a restore until the PLC is heard again
        if snapshot is not None:
            self.restore(snapshot)

    # -- snapshot hooks (runtime restarts and the service's state store) ----------

    def snapshot(self) -> dict[str, Any]:
        self._flush()
        return {"core": self.core.snapshot(), "event_time": self._event_time}

    def restore(self, snapshot: object) -> None:
        if not isinstance(snapshot, dict):
            return
        self.core = MachineCore.restore(self.params, self.calendar, snapshot["core"])
        self._event_time = snapshot.get("event_time")
        if self._event_time is not None:
            self.core.link_changed(False, self._event_time)
            self._watching = False
            self._flush()
            if self.request_values is not None:
                self.request_values(self.params.machine_id)

    def replay(self, snapshot: object | None, messages: Sequence[MachineMessage]) -> object | None:
        if not isinstance(snapshot, dict):
            return snapshot
        # A fresh instance of the same machine, the core taken as it was (restore()
        # would also record a link outage and ask the PLC source for values).
        again = MachineActor(self.params, self.calendar, _discard)
        again.core = MachineCore.restore(self.params, self.calendar, snapshot["core"])
        again._event_time = snapshot.get("event_time")
        for message in messages:
            if not isinstance(message, _QUERIES):
                again._apply(message)
        return again.snapshot()

    # -- mailbox ------------------------------------------------------------------

    def coalesce_key(self, message: MachineMessage) -> Hashable | None:
        # Only the latest tick matters; samples and commands are never dropped.
        return "tick" if isinstance(message, Tick) else None

    async def handle(self, message: MachineMessage) -> Any:
        return self._apply(message)

    def answer_now(self, message: MachineMessage) -> Any:
        if not isinstance(message, _QUERIES):
            raise TypeError(f"MachineActor answers no {type(message).__name__} synchronously")
        reply = self._apply(message)
        # A warning the KPIs raised (performance above 1): published now, as after a message.
        self._flush()
        return reply

    def _apply(self, message: MachineMessage) -> Any:
        core = self.core
        match message:
            case SampleBatch(samples=samples):
                if samples:
                    self._resume(samples[0].ts)
                    apply = core.apply
                    for sample in samples:
                        apply(sample)
                    self._seen(samples[-1].ts)
            case Sample():
                self._resume(message.ts)
                core.apply(message)
                self._seen(message.ts)
            case LinkChanged(up=up, ts=ts):
                if up:
                    self._watching = True
                core.link_changed(up, ts)
                self._seen(ts)
            case Tick(ts=ts):
                core.advance(ts)
                self._seen(ts)
            case SetOrder(order_id=order_id, ideal_cycle_s=ideal, ts=ts):
                core.set_order(order_id, ideal, ts)
                self._seen(ts)
            case SetStopReason(reason=reason, ts=ts, stop_id=stop_id):
                core.set_operator_reason(reason, ts=ts, stop_id=stop_id)
            case AddRejects(count=count, ts=ts):
                core.add_rejects(count, ts)
                self._seen(ts)
            case GetStatus(now=now):
                self._flush()
                return self.status(now)
            case GetShiftStops(now=now):
                self._flush()
                return core.shift_stops(now)
            case GetSnapshot():
                return self.snapshot()
            case _:
                # A message nobody should send: a wiring bug. Crash loudly (a tell
                # restarts the actor from its snapshot; an ask gets the error).
                raise TypeError(f"MachineActor cannot handle {type(message).__name__}")
        self._flush()
        return None

    def status(self, now: float) -> MachineStatus:
        core = self.core
        order_id = core.current_order_id
        return MachineStatus(
            machine_id=self.params.machine_id,
            state=core.state,
            state_since=core.state_since,
            stop_reason=core.stop_reason,
            counters=core.counters,
            current_shift=core.current_shift_kpis(now),
            last_closed_shift=core.last_closed_shift_kpis(now),
            current_order_id=order_id,
            current_order=core.order_kpis(order_id, now) if order_id is not None else None,
            event_time=self._event_time,
        )

    # -- helpers ------------------------------------------------------------------

    def _resume(self, ts: float) -> None:
        """First sample after a restore: the PLC is visible again from ``ts``."""
        if not self._watching:
            self._watching = True
            self.core.link_changed(True, ts)

    def _seen(self, ts: float) -> None:
        if self._event_time is None or ts > self._event_time:
            self._event_time = ts

    def _flush(self) -> None:
        events = self.core.drain_events()
        if events:
            self.publish(events)
