"""Domain events the machine core emits (drained with ``MachineCore.drain_events``).

Every event carries ``machine_id`` and ``ts`` (event time, float epoch seconds
UTC). Sequence numbers are not assigned here: the outbox numbers events when it
persists them. Events are only created when something happened, never per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.oee.kpi import KpiRecord
from actors.oee.params import ReasonCategory
from actors.oee.state import MachineState
from actors.oee.stops import StopKind


@dataclass(frozen=True, slots=True)
class PiecesCounted:
    """One counter delta (not one event per piece).

    ``role`` is ``total_count``, ``good_count``, ``reject_count`` or
    ``quality_station_reject`` (from ``add_rejects``).
    """

    machine_id: str
    ts: float
    role: str
    count: int
    order_id: str | None


@dataclass(frozen=True, slots=True)
class StateChanged:
    machine_id: str
    ts: float
    state: MachineState
    previous: MachineState


@dataclass(frozen=True, slots=True)
class StopStarted:
    machine_id: str
    ts: float
    stop_id: int
    reason: str
    category: ReasonCategory


@dataclass(frozen=True, slots=True)
class StopEnded:
    """A stop ended; ``kind`` is its classification by its whole length (OEE.md §4)."""

    machine_id: str
    ts: float
    stop_id: int
    start: float
    end: float
    duration_s: float
    kind: StopKind
    reason: str
    category: ReasonCategory

    @property
    def micro(self) -> bool:
        return self.kind is StopKind.MICRO_STOP

    @property
    def downtime(self) -> bool:
        return self.kind is StopKind.DOWNTIME


@dataclass(frozen=True, slots=True)
class StopReasonChanged:
    """A stop's reason changed (a fault code arrived, or an operator entry), maybe after it ended.

    KPIs of every window the stop touched change with it: re-read them.
    """

    machine_id: str
    ts: float
    stop_id: int
    reason: str
    category: ReasonCategory
    previous_reason: str
    previous_category: ReasonCategory
    stop_start: float
    stop_end: float | None


@dataclass(frozen=True, slots=True)
class ShiftClosed:
    """A shift instance ended; ``kpis`` as known at its end (an open stop by its length so far)."""

    machine_id: str
    ts: float
    kpis: KpiRecord


@dataclass(frozen=True, slots=True)
class OrderWindowClosed:
    """The order active on this machine changed; ``kpis`` for the order's span."""

    machine_id: str
    ts: float
    order_id: str
    kpis: KpiRecord


@dataclass(frozen=True, slots=True)
class WindowRevised:
    """A closed window's KPIs changed after it closed: the stop crossing its end ended
    (now classified by its whole length) or a stop's reason changed.
    ``kpis.window`` says whether it is a shift or an order.
    """

    machine_id: str
    ts: float
    kpis: KpiRecord


@dataclass(frozen=True, slots=True)
class GapRunCredited:
    """Pieces revealed after time the edge did not see prove the machine ran in it (OEE.md §5).

    ``running_s`` of the ``unknown_s`` seconds between ``gap_start`` and ``gap_end``
    (the time the machine was ``unknown``), taken from the gap's end backwards,
    are now run time instead of ``comm_loss``: ``running_s`` is the ideal time of
    the pieces revealed so far (``pieces`` of them), at most the whole gap. ``ts``
    is the revealing reading. Emitted again, with the new totals, when a later
    reading of another counter reveals more.
    """

    machine_id: str
    ts: float
    gap_start: float
    gap_end: float
    unknown_s: float
    running_s: float
    pieces: int


@dataclass(frozen=True, slots=True)
class CounterRebaselined:
    """A counter decreased, neither by a rollover nor by a reset to near 0: 0 pieces counted.

    ``new`` is the new baseline; ``allowance`` the most pieces the machine could
    have made in the ``elapsed_s`` since the previous reading (see
    :mod:`actors.oee.counters`).
    """

    machine_id: str
    ts: float
    role: str
    old: int
    new: int
    elapsed_s: float
    allowance: float


@dataclass(frozen=True, slots=True)
class CounterJumpCapped:
    """A counter advanced by more than the machine can make: ``counted`` of ``delta``
    pieces are counted, ``excess`` never are (see :mod:`actors.oee.counters`)."""

    machine_id: str
    ts: float
    role: str
    old: int
    new: int
    delta: int
    counted: int
    excess: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Warning:
    """Something a person should look at; ``kind`` is a stable machine-readable tag.

    An event, never raised (the name shadows the builtin only inside this module).

    Kinds: ``out_of_order``, ``invalid_value``, ``counter_reset``,
    ``counter_rebaselined``, ``counter_jump``, ``performance_above_1``.
    """

    machine_id: str
    ts: float
    kind: str
    message: str


DomainEvent = (
    PiecesCounted
    | StateChanged
    | StopStarted
    | StopEnded
    | StopReasonChanged
    | ShiftClosed
    | OrderWindowClosed
    | WindowRevised
    | GapRunCredited
    | CounterRebaselined
    | CounterJumpCapped
    | Warning
)
