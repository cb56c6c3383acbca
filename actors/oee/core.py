"""The machine core: one machine's state, stops, counts and KPI windows (OEE.md).

Pure and synchronous: no I/O, no wall clock. Time is float epoch seconds UTC,
always the samples' own timestamps (event time). An actor wraps one core per
machine; replay and the benchmarks drive it directly.

API
===

::

    core = MachineCore(params, calendar)          # calendar: actors.oee.calendar.ShiftCalendar
    core.apply(sample)                            # hot path: one Sample
    core.link_changed(up, ts)                     # PLC link down/up: time becomes unknown
    core.advance(ts)                              # event time moved without a sample
    core.commit(ts)                               # as advance, and nothing older will come
    core.set_order(order_id, ideal_cycle_s, ts)   # the order now running (None: no order)
    core.set_operator_reason(name, ts=..., stop_id=...)   # raises CommandError if refused
    core.add_rejects(count, ts)                   # rejects from a quality station
    core.drain_events() -> list[DomainEvent]      # actors.oee.events, since the last drain
    core.current_shift_kpis(now) / shift_kpis(key, now) / last_closed_shift_kpis(now)
    core.order_kpis(order_id, now) / core.unscheduled(now)  # KpiRecord / UnscheduledRecord
    core.snapshot() -> dict;  MachineCore.restore(params, calendar, snapshot)
    core.state / state_since / stop_reason / current_stop_id / counters / statistics()

Semantics (beyond OEE.md, decided for this project)
===================================================

Clock
    The core's clock starts at the first instant it is given (any call with a
    timestamp); time before it is not accounted at all. From then until the
    first sample the machine is ``unknown``, which inside planned production is
    downtime with the reason ``comm_loss`` but never a downtime event (the
    machine did not stop; we could not see it).

Samples
    A sample older than the last accepted one *of the same signal* is counted
    (``statistics().out_of_order``, a rate-limited ``out_of_order`` warning) and
    not applied. A sample with quality BAD is not applied at all. A sample older
    than the core's accounted time but in order for its signal (signals of one
    poll may arrive shuffled) takes effect at the accounted instant. While the
    link is down, samples are ignored (the next one after the link is back
    reveals whatever changed, e.g. the pieces made meanwhile).
    ``Sample.work_order_id`` is not used: the order comes through ``set_order``.

Running (OEE.md §3)
    The state source is the configured one, else the highest-priority signal
    role *seen so far* on this machine: ``running``, then ``state`` (PackML),
    then counts. The machine leaves ``unknown`` with the first sample of its
    deciding signal (with counts: any sample, and the machine is taken as
    running from there). With counts alone, the machine stops when no piece is
    counted for ``stop_after_s``; the stop is back-dated to last count + ideal
    cycle time, and running resumes at the next count. That stop is detected
    when event time passes the deadline (a later sample of any signal,
    ``advance``, or the end of a replay). Calendar boundaries inside that
    undecided gap are processed once it is decided, so the back-dating is exact;
    calls that need a decision earlier (``set_order``, ``link_changed``,
    ``commit``...) take the machine as running until then, and a later
    back-dated stop then starts no earlier than that instant.

Counts (OEE.md §5, details in :mod:`actors.oee.counters`)
    Deltas with the rollover/reset rule bounded by what the machine can make
    (``max_rate_factor`` x its ideal rate, the faster of the machine's and the
    order's ideal cycle), the first reading as baseline, the delta at the
    reading's timestamp. The roles that count as "mapped" are the ones *seen so
    far* on this machine (kept in snapshots). A reset emits a ``counter_reset``
    warning; a decrease that is neither a rollover nor a reset to near 0 is
    re-baselined (0 pieces, ``CounterRebaselined`` and a ``counter_rebaselined``
    warning); a step beyond the allowance is capped (``CounterJumpCapped`` and a
    ``counter_jump`` warning, the excess never counted); an unusable value
    (negative, not an integer, wider than ``counter_bits``) is an
    ``invalid_value`` (rate-limited).

Time the edge did not see (OEE.md §5)
    When the machine becomes ``unknown`` (link lost, or restored from a
    snapshot: the actor reports that as a link loss at the snapshot's time)
    while a counter has a baseline, the unknown time is kept as a *gap*: its
    segments, one calendar status each. The first reading of each counter
    after it reveals its delta; the ideal time of what all counters revealed
    (derived as the counts are, so good + reject is not counted twice), at most
    the whole gap, is credited as run time from the gap's end backwards:
    ``comm_loss`` shrinks in every window holding that time (closed windows
    emit ``WindowRevised``; in a break it stays planned stop time; outside
    every shift it moves to the unscheduled running time). The pieces stay at
    the revealing reading. Each credit emits ``GapRunCredited``; no state
    change is back-dated. The gap is settled when every counter has been read
    after it; until then the closed windows it touches are kept. A gap that
    crosses a shift end gives the earlier shift run time without the pieces:
    the later shift's performance may exceed 1.0 by that much, and only whole
    pieces are credited, so each gap may hide the cycle in progress at its end;
    neither is reported as a wrong ideal cycle time.

Stops and reasons (:mod:`actors.oee.stops`, :mod:`actors.oee.reasons`, :mod:`actors.oee.kpi`)
    Fault code > operator reason > PackML state name > ``unassigned``. Losing
    the link ends an open stop at that instant. Micro-stop or downtime event by
    the whole stop's length, applied when KPIs are computed, so a reason or a
    length known later re-attributes the stop's time in every window it touched.

Windows
    Per shift instance (from the calendar) and per order (from ``set_order`` to
    the next one). Time outside every shift goes to :meth:`unscheduled`. Breaks
    are planned stop time whatever the machine does; pieces counted in a break
    (or unscheduled) are outside PPT and so not in the window's counts, and are
    kept in ``KpiRecord.pieces_outside_ppt``. Pieces revealed while the machine
    is stopped count normally (a stopped machine makes nothing: the reading
    came late).

Revisions
    ``ShiftClosed`` / ``OrderWindowClosed`` carry the KPIs as known when the
    window ended (a stop still open is classified by its length so far). When a
    closed window's numbers change afterwards (a stop crossing its end ends and
    is classified by its whole length, or a stop's reason changes), the core
    emits ``WindowRevised`` with the new record. The core keeps the current and
    the last closed shift, the current and the last closed order, and any closed
    window the open stop touches, with their stops; reasons for older stops are
    refused with :class:`~edge.errors.CommandError`.

Queries
    KPI queries do not move event time: time not yet accounted is added on a
    copy, up to ``now`` but not past the next calendar boundary the core has
    not processed yet (``advance(now)`` first to move on).

Performance above 1.0
    A ``performance_above_1`` warning, once per window, when a window closes or
    a KPI query first sees it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from actors.errors import CommandError, SnapshotError
from actors.messages import Quality, Sample, Value
from actors.oee.counters import (
    EXTERNAL_REJECT,
    ROLE_NAMES,
    CounterChange,
    Tally,
    allowance,
    derive_counts,
    machine_step,
)
from actors.oee.events import (
    CounterJumpCapped,
    CounterRebaselined,
    DomainEvent,
    GapRunCredited,
    OrderWindowClosed,
    PiecesCounted,
    ShiftClosed,
    StateChanged,
    StopEnded,
    StopReasonChanged,
    StopStarted,
    Warning,
    WindowRevised,
)
from actors.oee.kpi import KpiRecord, UnscheduledRecord, compute_kpis
from actors.oee.params import MachineParams, StateSource
from actors.oee.reasons import ReasonTable
from actors.oee.state import PACKML_EXECUTE, MachineState
from actors.oee.stops import Stop, StopRecord, classify
from actors.oee.windows import (
    BREAK,
    ORDER,
    PRODUCTION,
    RUNNING,
    SHIFT,
    STOPPED,
    UNKNOWN,
    UNSCHEDULED,
    Window,
)

SNAPSHOT_VERSION = 1
_BAD = Quality.BAD
_STATES = (MachineState.RUNNING, MachineState.STOPPED, MachineState.UNKNOWN)
# Rate-limited warnings: the first at once, then at most one per this much event time.
WARNING_INTERVAL_S = 60.0


class ShiftInstanceLike(Protocol):
    """What the core needs of ``actors.oee.calendar.ShiftInstance``."""

    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    def in_break(self, ts: float) -> bool: ...


class CalendarLike(Protocol):
    """What the core needs of ``actors.oee.calendar.ShiftCalendar``."""

    def instance_at(self, ts: float) -> ShiftInstanceLike | None: ...
    def next_boundary(self, ts: float) -> float: ...


@dataclass(frozen=True, slots=True)
class CoreStatistics:
    out_of_order: int
    bad_quality: int
    invalid_values: int
    counter_resets: int
    counter_rollovers: int
    implausible_jumps: int  # capped deltas
    counter_rebaselines: int


_STATS = len(CoreStatistics.__dataclass_fields__)
# Segments of an unseen gap kept at most (each calendar boundary inside a gap makes
# one); older ones can no longer be credited.
MAX_GAP_SEGMENTS = 64


class _Gap:
    """Time the machine was ``unknown`` whose pieces are not all revealed yet (OEE.md §5).

    ``segments`` are ``[start, end, status, credited_s]``, oldest first, one calendar
    status each; ``credited_s`` of a segment is run time taken from its end.
    ``pending`` has a bit per counter role with a baseline not read since the gap
    began; ``open`` while the machine is still unknown.
    """

    __slots__ = ("credited_s", "open", "pending", "segments", "tally")

    def __init__(self, pending: int) -> None:
        self.segments: list[list[float]] = []
        self.tally = Tally()
        self.credited_s = 0.0
        self.pending = pending
        self.open = True

    def add(self, start: float, end: float, status: int) -> None:
        segments = self.segments
        if segments:
            last = segments[-1]
            if last[1] == start and last[2] == status and last[3] == 0.0:
                last[1] = end
                return
        segments.append([start, end, float(status), 0.0])
        if len(segments) > MAX_GAP_SEGMENTS:
            del segments[0]

    @property
    def unknown_s(self) -> float:
        return sum(end - start for start, end, _, _ in self.segments)

    def to_data(self) -> dict[str, Any]:
        return {
            "segments": [list(seg) for seg in self.segments],
            "tally": self.tally.to_data(),
            "credited_s": self.credited_s,
            "pending": self.pending,
            "open": self.open,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> _Gap:
        gap = cls(int(data["pending"]))
        gap.segments = [[float(v) for v in seg] for seg in data["segments"]]
        gap.tally = Tally.from_data(data["tally"])
        gap.credited_s = float(data["credited_s"])
        gap.open = bool(data["open"])
        return gap


class _Unscheduled:
    __slots__ = ("pieces", "running_s", "stopped_s", "stops", "unknown_s")

    def __init__(self) -> None:
        self.running_s = 0.0
        self.stopped_s = 0.0
        self.unknown_s = 0.0
        self.stops = 0
        self.pieces = Tally()


def _as_bool(value: Value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return value != 0
    return None


def _as_int(value: Value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class MachineCore:
    """One machine's OEE state machine. See the module docstring for the API and semantics."""

    __slots__ = (
        "_await_any",
        "_bits_span",
        "_boundary",
        "_calendar",
        "_closed_orders",
        "_closed_shifts",
        "_configured_source",
        "_counter_ts",
        "_counter_value",
        "_deadline",
        "_events",
        "_fault",
        "_gap",
        "_handlers",
        "_ideal",
        "_last_count_ts",
        "_last_ts",
        "_link_up",
        "_next_stop_id",
        "_order",
        "_order_ideal",
        "_origin",
        "_packml",
        "_rate_factor",
        "_reasons",
        "_roles_seen",
        "_running_value",
        "_seen_running",
        "_seen_state",
        "_seg_start",
        "_shift",
        "_source",
        "_state",
        "_state_since",
        "_stats",
        "_status",
        "_stop",
        "_stop_after",
        "_stops",
        "_unscheduled",
        "_warn_state",
        "_windows",
        "machine_id",
        "params",
    )

    def __init__(self, params: MachineParams, calendar: CalendarLike) -> None:
        self.params = params
        self.machine_id = params.machine_id
        self._calendar = calendar
        self._reasons = ReasonTable(params.reasons)
        self._ideal = params.ideal_cycle_s
        self._stop_after = params.effective_stop_after_s
        self._bits_span = 1 << params.counter_bits
        self._rate_factor = params.max_rate_factor
        self._configured_source = params.state_source
        # Clock: time is accounted up to _seg_start; _boundary is the next calendar
        # change; _deadline is when the hot path must look at time (boundary or the
        # counts-only stop deadline); -inf until the clock starts.
        self._origin: float | None = None
        self._seg_start = -math.inf
        self._boundary = math.inf
        self._deadline = -math.inf
        self._status = UNSCHEDULED
        # Machine state.
        self._state = UNKNOWN
        self._state_since: float | None = None
        self._link_up = True
        self._source = params.state_source or StateSource.COUNTS
        self._seen_running = False
        self._seen_state = False
        self._roles_seen = 0
        self._running_value: bool | None = None
        self._packml: int | None = None
        self._fault = 0
        self._last_count_ts = -math.inf
        self._counter_value: list[int | None] = [None, None, None]
        self._counter_ts: list[float | None] = [None, None, None]
        self._gap: _Gap | None = None
        self._last_ts: dict[str, float] = {}
        self._handlers: dict[str, Callable[[Value, float], None]] = {}
        self._await_any = self._source is StateSource.COUNTS
        # Stops and windows.
        self._next_stop_id = 1
        self._stop: Stop | None = None
        self._stops: dict[int, Stop] = {}
        self._shift: Window | None = None
        self._closed_shifts: dict[str, Window] = {}
        self._order: Window | None = None
        self._order_ideal: float | None = None
        self._closed_orders: dict[str, Window] = {}
        self._windows: tuple[Window, ...] = ()
        self._unscheduled = _Unscheduled()
        self._events: list[DomainEvent] = []
        self._stats = [0] * _STATS  # see CoreStatistics, same order
        self._warn_state: dict[str, list[float]] = {}  # kind -> [last emitted ts, suppressed]
        self._install_handlers()

    # ------------------------------------------------------------------ hot path

    def apply(self, sample: Sample) -> None:
        """Apply one sample (event time ``sample.ts``)."""
        ts = sample.ts
        signal = sample.signal
        last_ts = self._last_ts
        previous = last_ts.get(signal)
        if previous is not None and ts < previous:
            self._out_of_order(signal, ts, previous)
            return
        if sample.quality is _BAD:
            self._stats[1] += 1
            return
        last_ts[signal] = ts
        if ts >= self._deadline:
            self._advance(ts)
        if self._await_any:
            self._wake(signal, ts)
        handler = self._handlers.get(signal)
        if handler is not None:
            handler(sample.value, ts)

    # ------------------------------------------------------------------ other inputs

    def link_changed(self, up: bool, ts: float) -> None:
        """The PLC link went down (time becomes ``unknown``, an open stop ends) or came back."""
        if up == self._link_up:
            return
        t = self._commit(ts)
        if not up:
            self._account(t)
            if self._stop is not None:
                self._end_stop(t)
            self._set_state(UNKNOWN, t)
            self._open_gap()
            self._link_up = False
            self._handlers = {}
            self._await_any = False
        else:
            self._link_up = True
            self._install_handlers()
            self._await_any = self._state == UNKNOWN and self._source is StateSource.COUNTS
        self._update_deadline()

    def advance(self, ts: float) -> None:
        """Event time is now ``ts`` without a sample: boundaries, counts-only stop detection."""
        if ts >= self._deadline:
            self._advance(ts)

    def commit(self, ts: float) -> None:
        """As :meth:`advance`, and settle everything up to ``ts`` (e.g. the end of a replay).

        A counts-only machine whose stop deadline has not passed is taken as
        running up to ``ts``.
        """
        self._commit(ts)
        self._account(max(ts, self._seg_start))

    def set_order(self, order_id: str | None, ideal_cycle_s: float | None, ts: float) -> None:
        """The order now made on this machine (``None``: none) and its ideal cycle time.

        A different order closes the previous order's window (``OrderWindowClosed``);
        the same order again only updates the ideal cycle time.
        """
        if ideal_cycle_s is not None and not ideal_cycle_s > 0:
            raise CommandError(f"ideal_cycle_s must be > 0, got {ideal_cycle_s!r}")
        t = self._commit(ts)
        current = self._order
        if current is not None and current.key == order_id:
            self._order_ideal = ideal_cycle_s
            return
        self._account(t)
        if current is not None:
            current.end = t
            self._order = None
            self._keep_closed(self._closed_orders, current)
            record = self._kpis(current, t)
            self._events.append(OrderWindowClosed(self.machine_id, t, current.key, record))
            self._check_performance(current, record, t)
        if order_id is not None:
            self._order = Window(ORDER, order_id, order_id, t)
        self._order_ideal = ideal_cycle_s if order_id is not None else None
        self._rebuild_windows()
        self._prune()

    def set_operator_reason(
        self, reason_name: str, ts: float | None = None, stop_id: int | None = None
    ) -> None:
        """An operator's reason for a stop: by id, else the stop at ``ts``, else the open one.

        Applies to the whole stop, also after it ended, and re-attributes its time
        in every window it touched (a planned reason moves it out of PPT).
        """
        name = reason_name.strip() if isinstance(reason_name, str) else ""
        if not name:
            raise CommandError("reason must be a non-empty name")
        stop = self._find_stop(ts, stop_id)
        stop.operator_reason = name
        self._re_resolve(stop, self._event_time())

    def add_rejects(self, count: int, ts: float) -> None:
        """Rejects found by a quality station for this machine's pieces."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise CommandError(f"reject count must be a non-negative integer, got {count!r}")
        if count:
            self._commit(ts)
            self._pieces(EXTERNAL_REJECT, count, ts)

    def drain_events(self) -> list[DomainEvent]:
        """Events emitted since the last drain, oldest first (not part of a snapshot)."""
        events = self._events
        if not events:
            return []
        self._events = []
        return events

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> MachineState:
        return _STATES[self._state]

    @property
    def state_since(self) -> float | None:
        return self._state_since

    @property
    def stop_reason(self) -> str | None:
        """The open stop's reason, ``None`` when not stopped."""
        return self._stop.reason if self._stop is not None else None

    @property
    def current_stop_id(self) -> int | None:
        return self._stop.id if self._stop is not None else None

    @property
    def current_order_id(self) -> str | None:
        """The order this machine is making now (``set_order``), ``None`` when none."""
        return self._order.key if self._order is not None else None

    @property
    def counters(self) -> dict[str, int]:
        """The last raw PLC counter readings by role."""
        return {
            ROLE_NAMES[role]: value
            for role, value in enumerate(self._counter_value)
            if value is not None
        }

    def statistics(self) -> CoreStatistics:
        return CoreStatistics(*self._stats)

    def current_shift_kpis(self, now: float) -> KpiRecord | None:
        """KPIs of the current shift instance up to ``now`` (no side effect on time).

        ``now`` is clipped to the next calendar boundary the core has not processed.
        """
        return self._kpis(self._shift, now) if self._shift is not None else None

    def shift_kpis(self, key: str, now: float | None = None) -> KpiRecord | None:
        """KPIs of a retained shift instance (current or closed) by its key."""
        if self._shift is not None and self._shift.key == key:
            window: Window | None = self._shift
        else:
            window = self._closed_shifts.get(key)
        if window is None:
            return None
        return self._kpis(window, self._event_time() if now is None else now)

    def last_closed_shift_kpis(self, now: float | None = None) -> KpiRecord | None:
        if not self._closed_shifts:
            return None
        window = next(reversed(self._closed_shifts.values()))
        return self._kpis(window, self._event_time() if now is None else now)

    def order_kpis(self, order_id: str, now: float) -> KpiRecord | None:
        """KPIs of the current order's span, or of a retained closed order."""
        if self._order is not None and self._order.key == order_id:
            return self._kpis(self._order, now)
        window = self._closed_orders.get(order_id)
        return self._kpis(window, now) if window is not None else None

    def shift_stops(self, now: float) -> list[StopRecord]:
        """The stops with time in the current shift instance, oldest first, the open
        one included (as of ``now``); empty outside every shift."""
        window = self._shift
        if window is None:
            return []
        ids = set(window.slices)
        if self._stop is not None:
            ids.add(self._stop.id)
        micro_stop_s = self.params.micro_stop_s
        return [
            self._stops[sid].record(max(now, self._stops[sid].start), micro_stop_s)
            for sid in sorted(ids)
            if sid in self._stops
        ]

    def retained_shift_keys(self) -> list[str]:
        """Keys of the closed shift instances still kept, oldest first."""
        return list(self._closed_shifts)

    def unscheduled(self, now: float | None = None) -> UnscheduledRecord:
        """Time and pieces outside every shift since the clock started, up to ``now``.

        Without ``now``: up to the time the core has accounted (its last change).
        """
        u = self._unscheduled
        times = [u.running_s, u.stopped_s, u.unknown_s]
        stops = u.stops
        if now is not None and self._status == UNSCHEDULED:
            pending = min(now, self._boundary) - self._seg_start
            if pending > 0:
                times[self._state] += pending  # RUNNING, STOPPED, UNKNOWN are 0, 1, 2
                stop = self._stop
                if stop is not None and not stop.unscheduled:
                    stops += 1
        total, good, reject, _ = derive_counts(u.pieces, self._roles_seen)
        return UnscheduledRecord(
            self.machine_id, times[0], times[1], times[2], stops, total, good, reject
        )

    # ------------------------------------------------------------------ signal handlers

    def _install_handlers(self) -> None:
        self._handlers = {
            "running": self._on_running,
            "state": self._on_state,
            "fault_code": self._on_fault,
            "total_count": self._on_total,
            "good_count": self._on_good,
            "reject_count": self._on_reject,
        }

    def _wake(self, signal: str, ts: float) -> None:
        """First sample after ``unknown`` for a counts-decided machine: it is running."""
        if self._configured_source is None and signal in ("running", "state"):
            return  # that sample decides the source and the state itself
        self._await_any = False
        self._go_running(ts)

    def _on_running(self, value: Value, ts: float) -> None:
        running = _as_bool(value)
        if running is None:
            self._invalid("running", value, ts)
            return
        self._running_value = running
        if not self._seen_running:
            self._seen_running = True
            if self._configured_source is None:
                self._switch_source(StateSource.RUNNING_SIGNAL, ts)
        if self._source is StateSource.RUNNING_SIGNAL:
            self._drive(running, ts)

    def _on_state(self, value: Value, ts: float) -> None:
        code = _as_int(value)
        if code is None:
            self._invalid("state", value, ts)
            return
        self._packml = code
        if not self._seen_state:
            self._seen_state = True
            if self._configured_source is None and self._source is StateSource.COUNTS:
                self._switch_source(StateSource.PACKML_STATE, ts)
        if self._source is StateSource.PACKML_STATE:
            self._drive(code == PACKML_EXECUTE, ts)
        stop = self._stop
        if stop is not None and stop.state_code is None and code != PACKML_EXECUTE:
            stop.state_code = code
            self._re_resolve(stop, ts)

    def _on_fault(self, value: Value, ts: float) -> None:
        code = _as_int(value)
        if code is None:
            self._invalid("fault_code", value, ts)
            return
        self._fault = code
        stop = self._stop
        if stop is not None and stop.fault_code is None and code != 0:
            stop.fault_code = code
            self._re_resolve(stop, ts)

    def _on_total(self, value: Value, ts: float) -> None:
        self._on_counter(0, value, ts)

    def _on_good(self, value: Value, ts: float) -> None:
        self._on_counter(1, value, ts)

    def _on_reject(self, value: Value, ts: float) -> None:
        self._on_counter(2, value, ts)

    def _on_counter(self, role: int, value: Value, ts: float) -> None:
        reading = value if type(value) is int else _as_int(value)
        if reading is None or reading < 0 or reading >= self._bits_span:
            self._invalid(ROLE_NAMES[role], value, ts)
            return
        self._roles_seen |= 1 << role
        values = self._counter_value
        old = values[role]
        values[role] = reading
        old_ts = self._counter_ts[role]
        self._counter_ts[role] = ts
        if old is None or reading == old:
            if self._gap is not None:
                self._gap_read(role, 0, ts)
            return
        delta = reading - old
        if delta < 0 or delta > self._rate_factor:  # else within any allowance
            elapsed = ts - old_ts if old_ts is not None else 0.0
            delta = self._checked_delta(role, old, reading, ts, elapsed)
        if delta:
            self._pieces(role, delta, ts)
        if self._gap is not None:
            self._gap_read(role, delta, ts)

    def _checked_delta(self, role: int, old: int, reading: int, ts: float, elapsed: float) -> int:
        """The pieces of a reading that is a decrease or a large step (actors.oee.counters)."""
        ideal = self._ideal if self._order_ideal is None else min(self._ideal, self._order_ideal)
        limit = allowance(elapsed, ideal, self._rate_factor)
        counted, change, excess = machine_step(old, reading, self.params.counter_bits, limit)
        if change is CounterChange.NORMAL:
            return counted
        name = ROLE_NAMES[role]
        events = self._events
        if change is CounterChange.ROLLOVER:
            self._stats[4] += 1
        elif change is CounterChange.RESET:
            self._stats[3] += 1
            events.append(
                Warning(
                    self.machine_id,
                    ts,
                    "counter_reset",
                    f"{name} went from {old} to {reading}: taken as a PLC counter reset, "
                    f"{counted} pieces counted",
                )
            )
        elif change is CounterChange.REBASELINE:
            self._stats[6] += 1
            events.append(
                CounterRebaselined(self.machine_id, ts, name, old, reading, elapsed, limit)
            )
            events.append(
                Warning(
                    self.machine_id,
                    ts,
                    "counter_rebaselined",
                    f"{name} went from {old} to {reading}: neither a rollover nor a reset "
                    f"to near 0 (at most {limit:.0f} pieces in {elapsed:.1f} s); "
                    "re-baselined, 0 pieces counted",
                )
            )
        else:
            self._stats[5] += 1
            delta = counted + excess
            events.append(
                CounterJumpCapped(
                    self.machine_id, ts, name, old, reading, delta, counted, excess, elapsed
                )
            )
            events.append(
                Warning(
                    self.machine_id,
                    ts,
                    "counter_jump",
                    f"{name} jumped by {delta} ({old} -> {reading}) in {elapsed:.3f} s, more "
                    f"than {self._rate_factor:g} x the ideal rate allows: {counted} counted, "
                    f"{excess} not counted; check the PLC counter",
                )
            )
        return counted

    def _pieces(self, role: int, count: int, ts: float) -> None:
        if self._source is StateSource.COUNTS and role != EXTERNAL_REJECT:
            if self._state == STOPPED:
                self._go_running(ts)
            elif self._state == RUNNING:
                if ts >= self._boundary:
                    self._cross_until(ts)  # the count proves it ran up to here
                if ts > self._last_count_ts:
                    self._last_count_ts = ts
                    self._deadline = ts + self._stop_after
        if ts >= self._boundary:
            self._cross_until(ts)
            self._update_deadline()
        ideal = self._order_ideal or self._ideal
        status = self._status
        for window in self._windows:
            window.add_pieces(status, role, count, ideal)
        if status == UNSCHEDULED:
            self._unscheduled.pieces.add(role, count, ideal)
        order = self._order
        self._events.append(
            PiecesCounted(
                self.machine_id, ts, ROLE_NAMES[role], count, order.key if order else None
            )
        )

    # ------------------------------------------------------------------ state machine

    def _switch_source(self, source: StateSource, ts: float) -> None:
        self._commit(ts)
        self._source = source
        self._await_any = False
        self._update_deadline()

    def _drive(self, running: bool, ts: float) -> None:
        state = self._state
        if running:
            if state != RUNNING:
                self._go_running(ts)
        elif state != STOPPED:
            self._go_stopped(ts)

    def _go_running(self, ts: float) -> None:
        t = self._commit(ts)
        self._account(t)
        if self._stop is not None:
            self._end_stop(t)
        self._await_any = False
        self._set_state(RUNNING, t)
        if self._source is StateSource.COUNTS:
            self._last_count_ts = t
        self._update_deadline()

    def _go_stopped(self, ts: float) -> None:
        self._stop_at(self._commit(ts))

    def _stop_at(self, t: float) -> None:
        """Start a stop at ``t``; calendar boundaries up to ``t`` are already processed."""
        self._account(t)
        stop = Stop(self._next_stop_id, t)
        self._next_stop_id += 1
        if self._fault:
            stop.fault_code = self._fault
        packml = self._packml
        if packml is not None and packml != PACKML_EXECUTE:
            stop.state_code = packml
        stop.reason, stop.category = self._reasons.resolve(
            stop.fault_code, stop.operator_reason, stop.state_code
        )
        self._stops[stop.id] = stop
        self._stop = stop
        self._await_any = False
        self._set_state(STOPPED, t)
        self._events.append(StopStarted(self.machine_id, t, stop.id, stop.reason, stop.category))
        self._update_deadline()

    def _end_stop(self, t: float) -> None:
        """End the open stop at ``t`` (time already accounted up to ``t``)."""
        stop = self._stop
        assert stop is not None
        stop.end = t
        self._stop = None
        duration = stop.length(t)
        kind = classify(duration, stop.category, self.params.micro_stop_s)
        self._events.append(
            StopEnded(
                self.machine_id,
                t,
                stop.id,
                stop.start,
                t,
                duration,
                kind,
                stop.reason,
                stop.category,
            )
        )
        self._revise_closed_windows(stop, t)
        if stop.refs == 0:
            self._stops.pop(stop.id, None)
        self._prune()

    def _set_state(self, state: int, t: float) -> None:
        previous = self._state
        if previous == state:
            return
        self._state = state
        self._state_since = t
        self._events.append(StateChanged(self.machine_id, t, _STATES[state], _STATES[previous]))
        if previous == UNKNOWN and self._gap is not None and self._gap.open:
            self._gap.open = False
            if self._status == PRODUCTION:
                # Only whole pieces are credited: the cycle in progress at the gap's
                # end is run time nobody can prove, which shows as a surplus later.
                ideal = self._order_ideal or self._ideal
                for window in self._windows:
                    window.perf_slack_s += ideal
            if not self._gap.pending:
                self._drop_gap()

    def _re_resolve(self, stop: Stop, ts: float) -> None:
        reason, category = self._reasons.resolve(
            stop.fault_code, stop.operator_reason, stop.state_code
        )
        if reason == stop.reason and category is stop.category:
            return
        previous_reason, previous_category = stop.reason, stop.category
        stop.reason, stop.category = reason, category
        self._events.append(
            StopReasonChanged(
                self.machine_id,
                ts,
                stop.id,
                reason,
                category,
                previous_reason,
                previous_category,
                stop.start,
                stop.end,
            )
        )
        self._revise_closed_windows(stop, ts)

    def _find_stop(self, ts: float | None, stop_id: int | None) -> Stop:
        if stop_id is not None:
            stop = self._stops.get(stop_id)
            if stop is None:
                raise CommandError(
                    f"stop {stop_id} of {self.machine_id} is unknown or too old: reasons can be "
                    "entered for stops of the current and the last closed shift and open orders"
                )
            return stop
        if ts is None:
            if self._stop is None:
                raise CommandError(f"{self.machine_id} is not stopped: give the stop's time or id")
            return self._stop
        for stop in reversed(self._stops.values()):
            end = stop.end
            if stop.start <= ts and (end is None or ts < end or ts == stop.start):
                return stop
        raise CommandError(
            f"no stop of {self.machine_id} kept at ts={ts}: reasons can be entered for stops of "
            "the current and the last closed shift and open orders"
        )

    # ------------------------------------------------------------------ time

    def _event_time(self) -> float:
        """The latest event time seen (not tracked on the hot path: computed when needed)."""
        if self._origin is None:
            return 0.0
        return max(self._seg_start, max(self._last_ts.values(), default=self._seg_start))

    def _start_clock(self, ts: float) -> None:
        self._origin = ts
        self._seg_start = ts
        instance = self._calendar.instance_at(ts)
        if instance is not None:
            self._shift = Window(SHIFT, instance.key, instance.name, ts)
            self._rebuild_windows()
        self._status = self._status_at(instance, ts)
        self._boundary = self._next_boundary(ts)

    def _advance(self, ts: float) -> None:
        if self._origin is None:
            self._start_clock(ts)
        elif self._state == RUNNING and self._source is StateSource.COUNTS:
            limit = self._last_count_ts + self._stop_after
            if ts <= limit:
                return  # undecided: calendar boundaries wait for the next count or the deadline
            start = min(self._last_count_ts + self._ideal, limit)
            start = max(start, self._seg_start)
            self._cross_until(start)
            self._stop_at(start)
        self._cross_until(ts)
        self._update_deadline()

    def _commit(self, ts: float) -> float:
        """Process time up to ``ts`` (an undecided gap counts as running); the effective instant."""
        if ts >= self._deadline:
            self._advance(ts)
        if ts >= self._boundary:
            self._cross_until(ts)
            self._update_deadline()
        return ts if ts > self._seg_start else self._seg_start

    def _update_deadline(self) -> None:
        if self._state == RUNNING and self._source is StateSource.COUNTS:
            self._deadline = self._last_count_ts + self._stop_after
        else:
            self._deadline = self._boundary

    def _next_boundary(self, ts: float) -> float:
        boundary = self._calendar.next_boundary(ts)
        if not boundary > ts:
            raise RuntimeError(f"calendar.next_boundary({ts}) returned {boundary}, not later")
        return boundary

    @staticmethod
    def _status_at(instance: ShiftInstanceLike | None, ts: float) -> int:
        if instance is None:
            return UNSCHEDULED
        return BREAK if instance.in_break(ts) else PRODUCTION

    def _cross_until(self, ts: float) -> None:
        while self._boundary <= ts:
            self._cross(self._boundary)

    def _cross(self, boundary: float) -> None:
        self._account(boundary)
        instance = self._calendar.instance_at(boundary)
        current = self._shift
        if current is not None and (instance is None or instance.key != current.key):
            self._close_shift(current, boundary)
            current = None
        if instance is not None and current is None:
            self._shift = Window(SHIFT, instance.key, instance.name, boundary)
            self._rebuild_windows()
        self._status = self._status_at(instance, boundary)
        self._boundary = self._next_boundary(boundary)

    def _close_shift(self, window: Window, t: float) -> None:
        window.end = t
        self._shift = None
        self._keep_closed(self._closed_shifts, window)
        self._rebuild_windows()
        record = self._kpis(window, t)
        self._events.append(ShiftClosed(self.machine_id, t, record))
        self._check_performance(window, record, t)
        self._prune()

    def _rebuild_windows(self) -> None:
        self._windows = tuple(w for w in (self._shift, self._order) if w is not None)

    def _account(self, t: float) -> None:
        """Give the time from ``_seg_start`` to ``t`` to the active windows."""
        duration = t - self._seg_start
        if not duration > 0:
            return
        self._seg_start = t
        status, state, stop = self._status, self._state, self._stop
        for window in self._windows:
            window.add_time(duration, t, status, state, stop)
        if state == UNKNOWN:
            gap = self._gap
            if gap is not None and gap.open:
                gap.add(t - duration, t, status)
        if status == UNSCHEDULED:
            u = self._unscheduled
            if state == RUNNING:
                u.running_s += duration
            elif state == UNKNOWN:
                u.unknown_s += duration
            else:
                u.stopped_s += duration
                if stop is not None and not stop.unscheduled:
                    stop.unscheduled = True
                    u.stops += 1

    # ------------------------------------------------------------------ unseen gaps

    def _open_gap(self) -> None:
        """The machine became unknown: its counters' next readings may reveal pieces."""
        pending = 0
        for role, value in enumerate(self._counter_value):
            if value is not None:
                pending |= 1 << role
        if not pending:
            return  # no baseline: nothing can be revealed
        gap = self._gap
        if gap is None:
            self._gap = _Gap(pending)
        else:  # the previous gap is not settled yet: they become one
            gap.open = True
            gap.pending |= pending

    def _gap_read(self, role: int, counted: int, ts: float) -> None:
        """A reading of ``role`` after the gap; ``counted`` pieces it revealed."""
        gap = self._gap
        assert gap is not None
        bit = 1 << role
        if not gap.pending & bit:
            return
        gap.pending &= ~bit
        if counted:
            if gap.open:
                # Still unknown (the state signal has not come): the gap ends here.
                self._account(max(ts, self._seg_start))
            gap.tally.add(role, counted, self._order_ideal or self._ideal)
            self._credit_gap(gap, ts)
        if not gap.pending and not gap.open:
            self._drop_gap()

    def _drop_gap(self) -> None:
        self._gap = None
        self._prune()

    def _credit_gap(self, gap: _Gap, ts: float) -> None:
        """Turn the ideal time of the pieces revealed into run time, from the gap's end back."""
        unknown = gap.unknown_s
        target = min(derive_counts(gap.tally, self._roles_seen)[3], unknown)
        remaining = target - gap.credited_s
        if not remaining > 0:
            return
        revised: list[Window] = []
        # Run time each window holding the pieces got: the rest went to earlier windows.
        current = {id(window): 0.0 for window in self._windows}
        increment = remaining
        for segment in reversed(gap.segments):
            start, end, status, credited = segment
            free = end - start - credited
            if free <= 0:
                continue
            take = min(free, remaining)
            high = end - credited
            segment[3] = credited + take
            self._credit_interval(high - take, high, int(status), revised, current)
            remaining -= take
            if remaining <= 0:
                break
        gap.credited_s = target
        if self._status == PRODUCTION:
            for window in self._windows:
                window.perf_slack_s += increment - current[id(window)]
        segments = gap.segments
        pieces = derive_counts(gap.tally, self._roles_seen)[0]
        self._events.append(
            GapRunCredited(
                self.machine_id, ts, segments[0][0], segments[-1][1], unknown, target, pieces
            )
        )
        for window in revised:
            record = compute_kpis(window, self._stops, self.params, self._roles_seen, ts)
            self._events.append(WindowRevised(self.machine_id, ts, record))

    def _credit_interval(
        self,
        low: float,
        high: float,
        status: int,
        revised: list[Window],
        current: dict[int, float],
    ) -> None:
        """``low..high`` was running, not unknown, in every window that holds it.

        ``revised`` collects the closed windows changed; ``current`` adds up the run
        time credited to each current window (by ``id``)."""
        if status == PRODUCTION:
            for window in self._retained_windows():
                until = window.end if window.end is not None else window.last
                overlap = min(high, until) - max(low, window.start)
                if overlap > 0:
                    window.unknown_s = max(window.unknown_s - overlap, 0.0)
                    window.run_s += overlap
                    if window.end is not None and window not in revised:
                        revised.append(window)
                    if id(window) in current:
                        current[id(window)] += overlap
        elif status == UNSCHEDULED:
            u = self._unscheduled
            seconds = min(high - low, u.unknown_s)
            u.unknown_s -= seconds
            u.running_s += seconds
        # In a break the time is planned stop time whatever the machine did.

    def _retained_windows(self) -> Iterator[Window]:
        yield from self._windows
        yield from self._closed_windows()

    def _gap_touches(self, window: Window) -> bool:
        """The open gap may still credit time of this (closed) window."""
        gap = self._gap
        if gap is None or window.end is None:
            return False
        return any(
            status == PRODUCTION and start < window.end and end - credited > window.start
            for start, end, status, credited in gap.segments
            if end - start > credited
        )

    # ------------------------------------------------------------------ windows

    def _kpis(self, window: Window, now: float) -> KpiRecord:
        view = window
        if window.end is None and now > self._seg_start:
            # What-if: the not yet accounted time up to now, on a copy.
            end = min(now, self._boundary)
            if end > self._seg_start:
                view = window.copy()
                view.add_time(end - self._seg_start, end, self._status, self._state, self._stop)
            now = end
        record = compute_kpis(view, self._stops, self.params, self._roles_seen, now)
        if window.end is None:
            self._check_performance(window, record, now)
        return record

    def _check_performance(self, window: Window, record: KpiRecord, ts: float) -> None:
        if window.perf_warned or record.performance is None or record.performance <= 1.0:
            return
        # A window may hold one piece more than its run time allows: the piece in
        # progress when it began. Only a surplus beyond that piece says the ideal
        # cycle time is wrong; otherwise every short window would cry wolf.
        surplus_s = (record.performance - 1.0) * record.run_s
        # What unseen gaps explain is no evidence of a wrong ideal cycle time either.
        slack_s = max(self.params.ideal_cycle_s, self._order_ideal or 0.0) + window.perf_slack_s
        if surplus_s <= slack_s:
            return
        window.perf_warned = True
        self._events.append(
            Warning(
                self.machine_id,
                ts,
                "performance_above_1",
                f"performance {record.performance:.3f} > 1.0 in {window.kind} {window.key}: "
                "the ideal cycle time is probably wrong",
            )
        )

    def _closed_windows(self) -> Iterator[Window]:
        yield from self._closed_shifts.values()
        yield from self._closed_orders.values()

    def _revise_closed_windows(self, stop: Stop, ts: float) -> None:
        for window in list(self._closed_windows()):
            if stop.id in window.slices:
                record = compute_kpis(window, self._stops, self.params, self._roles_seen, ts)
                self._events.append(WindowRevised(self.machine_id, ts, record))

    def _prune(self) -> None:
        """Drop closed windows no longer needed (not the last, not touched by the open stop)."""
        stop = self._stop
        for kept in (self._closed_shifts, self._closed_orders):
            if len(kept) <= 1:
                continue
            last_key = next(reversed(kept))
            for key in [k for k in kept if k != last_key]:
                window = kept[key]
                if stop is not None and stop.id in window.slices:
                    continue
                if self._gap_touches(window):
                    continue
                del kept[key]
                self._release(window)

    def _keep_closed(self, kept: dict[str, Window], window: Window) -> None:
        """Keep a window that just closed, as the newest (an order may run again later)."""
        older = kept.pop(window.key, None)
        if older is not None and older is not window:
            self._release(older)
        kept[window.key] = window

    def _release(self, window: Window) -> None:
        stops = self._stops
        for stop_id in window.slices:
            stop = stops.get(stop_id)
            if stop is None:
                continue
            stop.refs -= 1
            if stop.refs <= 0 and stop.end is not None:
                del stops[stop_id]

    # ------------------------------------------------------------------ warnings

    def _out_of_order(self, signal: str, ts: float, previous: float) -> None:
        self._stats[0] += 1
        self._limited_warning(
            "out_of_order",
            previous,
            f"sample of {signal} at {ts} is older than the last one accepted ({previous}); "
            "not applied",
        )

    def _invalid(self, signal: str, value: Value, ts: float) -> None:
        self._stats[2] += 1
        self._limited_warning("invalid_value", ts, f"{signal}: unusable value {value!r}; ignored")

    def _limited_warning(self, kind: str, ts: float, message: str) -> None:
        entry = self._warn_state.get(kind)
        if entry is None:
            self._warn_state[kind] = [ts, 0.0]
        elif ts >= entry[0] + WARNING_INTERVAL_S:
            if entry[1]:
                message += f" ({int(entry[1])} more like it since the last warning)"
            entry[0], entry[1] = ts, 0.0
        else:
            entry[1] += 1
            return
        self._events.append(Warning(self.machine_id, ts, kind, message))

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as plain data (JSON/msgpack-able).

        Events not yet drained are not part of it: drain before snapshotting.
        """

        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None

        u = self._unscheduled
        return {
            "version": SNAPSHOT_VERSION,
            "machine_id": self.machine_id,
            "origin": self._origin,
            "seg_start": finite(self._seg_start),
            "boundary": finite(self._boundary),
            "status": self._status,
            "state": self._state,
            "state_since": self._state_since,
            "link_up": self._link_up,
            "source": self._source.value,
            "seen_running": self._seen_running,
            "seen_state": self._seen_state,
            "roles_seen": self._roles_seen,
            "running_value": self._running_value,
            "packml": self._packml,
            "fault": self._fault,
            "last_count_ts": finite(self._last_count_ts),
            "counter_value": list(self._counter_value),
            "counter_ts": list(self._counter_ts),
            "last_ts": dict(self._last_ts),
            "await_any": self._await_any,
            "next_stop_id": self._next_stop_id,
            "stop": self._stop.id if self._stop is not None else None,
            "stops": [stop.to_data() for stop in self._stops.values()],
            "shift": self._shift.to_data() if self._shift is not None else None,
            "closed_shifts": [w.to_data() for w in self._closed_shifts.values()],
            "order": self._order.to_data() if self._order is not None else None,
            "order_ideal": self._order_ideal,
            "closed_orders": [w.to_data() for w in self._closed_orders.values()],
            "unscheduled": {
                "running_s": u.running_s,
                "stopped_s": u.stopped_s,
                "unknown_s": u.unknown_s,
                "stops": u.stops,
                "pieces": u.pieces.to_data(),
            },
            "stats": list(self._stats),
            "gap": self._gap.to_data() if self._gap is not None else None,
            "warn_state": {k: list(v) for k, v in self._warn_state.items()},
        }

    @classmethod
    def restore(
        cls, params: MachineParams, calendar: CalendarLike, snapshot: dict[str, Any]
    ) -> MachineCore:
        """A core that continues exactly where :meth:`snapshot` was taken."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"machine snapshot version {snapshot.get('version')!r} is not "
                f"{SNAPSHOT_VERSION}: cannot restore {params.machine_id}"
            )
        if snapshot.get("machine_id") != params.machine_id:
            raise SnapshotError(
                f"snapshot of machine {snapshot.get('machine_id')!r} "
                f"cannot restore {params.machine_id!r}"
            )
        try:
            core = cls(params, calendar)
            s = snapshot
            core._origin = s["origin"]
            core._seg_start = -math.inf if s["seg_start"] is None else float(s["seg_start"])
            core._boundary = math.inf if s["boundary"] is None else float(s["boundary"])
            core._status = int(s["status"])
            core._state = int(s["state"])
            core._state_since = s["state_since"]
            core._link_up = bool(s["link_up"])
            if params.state_source is None:
                core._source = StateSource(s["source"])
            core._seen_running = bool(s["seen_running"])
            core._seen_state = bool(s["seen_state"])
            core._roles_seen = int(s["roles_seen"])
            core._running_value = s["running_value"]
            core._packml = s["packml"]
            core._fault = int(s["fault"])
            core._last_count_ts = (
                -math.inf if s["last_count_ts"] is None else float(s["last_count_ts"])
            )
            core._counter_value = list(s["counter_value"])
            core._counter_ts = list(s["counter_ts"])
            core._last_ts = {str(k): float(v) for k, v in s["last_ts"].items()}
            core._await_any = bool(s["await_any"])
            core._next_stop_id = int(s["next_stop_id"])
            core._stops = {int(d["id"]): Stop.from_data(d) for d in s["stops"]}
            core._stop = core._stops[int(s["stop"])] if s["stop"] is not None else None
            core._shift = Window.from_data(s["shift"]) if s["shift"] is not None else None
            core._closed_shifts = {
                w.key: w for w in (Window.from_data(d) for d in s["closed_shifts"])
            }
            core._order = Window.from_data(s["order"]) if s["order"] is not None else None
            core._order_ideal = s["order_ideal"]
            core._closed_orders = {
                w.key: w for w in (Window.from_data(d) for d in s["closed_orders"])
            }
            u = s["unscheduled"]
            core._unscheduled.running_s = float(u["running_s"])
            core._unscheduled.stopped_s = float(u["stopped_s"])
            core._unscheduled.unknown_s = float(u["unknown_s"])
            core._unscheduled.stops = int(u["stops"])
            core._unscheduled.pieces = Tally.from_data(u["pieces"])
            stats = [int(v) for v in s["stats"]][:_STATS]
            core._stats = stats + [0] * (_STATS - len(stats))  # older snapshots: fewer
            gap = s.get("gap")  # absent from snapshots of earlier releases
            core._gap = _Gap.from_data(gap) if gap is not None else None
            core._warn_state = {str(k): [float(x) for x in v] for k, v in s["warn_state"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(
                f"machine snapshot of {params.machine_id} is damaged: {exc!r}"
            ) from exc
        if not core._link_up:
            core._handlers = {}
        core._rebuild_windows()
        if core._origin is not None:
            core._update_deadline()
        return core
