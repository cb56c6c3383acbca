"""QualityStationActor: one quality station's core behind a mailbox.

It takes the station's PLC samples (from the order runtime's own PLC source
for the station), manual inspections, dispositions, alarm acknowledgements and
the order now made on its machine; it publishes the core's events to the
event bus after every message, and, when the station feeds the machine's
reject count, adds its failed pieces to the machine (``AddRejects``) right
after publishing the inspection.

A crash restart continues from the last snapshot (the runtime's) like a
machine: counter readings persist, so PLC pieces are neither lost nor doubled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.actor import Actor
from actors.messages import LinkChanged, Sample
from actors.quality.core import QualityStationCore
from actors.quality.events import InspectionRecorded, QualityEvent
from actors.quality.params import Disposition, StationParams

QualityEventSink = Callable[[Sequence[QualityEvent]], None]
# Synchronous: the handler publishes and hands the rejects on in one step, never
# awaiting in between, so a cut of the line finds them in one place (actors.actor).
RejectSink = Callable[[int, float], None]

# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class StationSamples:
    """Samples of this station from one poll, in the order they were read."""

    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class SetStationOrder:
    order_id: str | None


@dataclass(frozen=True, slots=True)
class RecordInspection:
    """Ask: a manual inspection entry; refusal comes back as CommandError."""

    passed: int
    failed: int
    ts: float
    disposition: Disposition | str | None = None
    reason_code: str = ""
    measurements: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dispose:
    """Ask: pending failed pieces get a disposition; replies with the order id (or None)."""

    count: int
    disposition: Disposition | str
    reason_code: str
    ts: float
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AcknowledgeAlarm:
    """Ask: replies True, or False if it was already acknowledged; unknown: CommandError."""

    alarm_id: str
    ts: float
    user: str


@dataclass(frozen=True, slots=True)
class GetOrderQuality:
    """Ask: this station's quality summary for one order (plain data)."""

    order_id: str


@dataclass(frozen=True, slots=True)
class ForgetOrder:
    order_id: str


@dataclass(frozen=True, slots=True)
class GetStationStatus:
    """Ask: a :class:`~actors.quality.core.StationStatus`."""


@dataclass(frozen=True, slots=True)
class GetCharts:
    """Ask: the station's charts (a list of :class:`~actors.quality.core.ChartView`)."""


StationMessage = (
    StationSamples
    | LinkChanged
    | SetStationOrder
    | RecordInspection
    | Dispose
    | AcknowledgeAlarm
    | GetOrderQuality
    | ForgetOrder
    | GetStationStatus
    | GetCharts
)


# ----------------------------------------------------------------------------- actor


# Asks that change nothing: a replay skips them.
_QUERIES = (GetOrderQuality, GetStationStatus, GetCharts)


def _discard_events(events: Sequence[QualityEvent]) -> None:
    """A replay's event sink: its events were published the first time."""


def _discard_rejects(count: int, ts: float) -> None:
    """A replay's reject sink: the machine had them the first time."""


class QualityStationActor(Actor[StationMessage, Any]):
    # A crash restart keeps the counts and inspections handled since the last
    # snapshot, so none is published (or handed to the machine) twice.
    replays_messages = True

    def __init__(
        self,
        params: StationParams,
        publish: QualityEventSink,
        add_rejects: RejectSink,
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        self.params = params
        self.publish = publish
        self.add_rejects = add_rejects
        self.core = QualityStationCore(params)
        self.link_up: bool | None = None
        if snapshot is not None:
            self.restore(snapshot)

    def snapshot(self) -> dict[str, Any]:
        return self.core.snapshot()

    def restore(self, snapshot: object) -> None:
        if isinstance(snapshot, dict):
            self.core = QualityStationCore.restore(self.params, snapshot)

    def replay(self, snapshot: object | None, messages: Sequence[StationMessage]) -> object | None:
        if not isinstance(snapshot, dict):
            return snapshot
        again = QualityStationActor(self.params, _discard_events, _discard_rejects, snapshot)
        for message in messages:
            if not isinstance(message, _QUERIES):
                again._apply(message)
                again._flush()
        return again.snapshot()

    async def handle(self, message: StationMessage) -> Any:
        try:
            return self._apply(message)
        finally:
            self._flush()

    def _apply(self, message: StationMessage) -> Any:
        core = self.core
        reply: Any = None
        match message:
            case StationSamples(samples=samples):
                for sample in samples:
                    core.apply(sample)
            case LinkChanged(up=up):
                self.link_up = up
            case SetStationOrder(order_id=order_id):
                core.set_order(order_id)
            case RecordInspection():
                core.record_inspection(
                    message.passed,
                    message.failed,
                    message.ts,
                    disposition=message.disposition,
                    reason_code=message.reason_code,
                    measurements=message.measurements,
                )
            case Dispose():
                reply = core.dispose(
                    message.count,
                    message.disposition,
                    message.reason_code,
                    message.ts,
                    order_id=message.order_id,
                )
            case AcknowledgeAlarm(alarm_id=alarm_id, ts=ts, user=user):
                reply = core.acknowledge(alarm_id, ts, user)
            case GetOrderQuality(order_id=order_id):
                reply = core.order_quality(order_id)
            case ForgetOrder(order_id=order_id):
                core.forget_order(order_id)
            case GetStationStatus():
                reply = core.status()
            case GetCharts():
                reply = core.charts()
        return reply

    def _flush(self) -> None:
        events = self.core.drain_events()
        if not events:
            return
        self.publish(events)
        if self.params.feeds_machine_rejects:
            for event in events:
                if isinstance(event, InspectionRecorded) and event.failed:
                    self.add_rejects(event.failed, event.ts)
