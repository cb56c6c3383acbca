"""One machine's variables: what the actor reports, what its PLC delivers, and
what the values are worth while the PLC link is down.

Values come from three places:

- :meth:`MachineView.apply_status`: a ``MachineStatus`` asked from the actor
  (state, stop, the current and the last closed shift's KPIs);
- :meth:`MachineView.on_event`: domain events from the bus (the open stop's id,
  the order counts, link loss seen as a state change to ``unknown``);
- :meth:`MachineView.on_sample`: process values and the PackML state code,
  sampled from the machine's PLC.

While the link is down, the *live* values (PLC-derived: counts, process values,
the PackML state) carry ``UncertainLastUsableValue`` with their last good value,
or ``BadCommunicationError`` when there never was one, stamped with the time of
the loss. KPIs stay Good: the edge keeps computing them, with the outage
accounted as ``comm_loss`` (OEE.md §3). State shows ``unknown``, which is the
truth the core tells.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from operator import attrgetter

from asyncua import ua

from actors.machine import MachineStatus
from actors.messages import Quality, Sample
from actors.oee.events import (
    DomainEvent,
    OrderWindowClosed,
    PiecesCounted,
    StateChanged,
    StopEnded,
    StopReasonChanged,
    StopStarted,
)
from actors.oee.kpi import KpiRecord
from actors.oee.params import Reason, ReasonCategory
from actors.oee.state import MachineState, packml_state_name
from edge.config.plc_maps import DataType, PlcMap, SignalDef
from edge.serve.opcua.address_space import VarHandle
from edge.serve.opcua.alarms import AlarmBook, Condition
from edge.serve.opcua.companions import (
    IDENTIFICATION,
    ITEM_STATE,
    PACKML,
    Companions,
    Identification,
)
from edge.serve.opcua.model import OEE_WINDOW_MEMBERS, Var, Vt
from edge.serve.opcua.uaids import StatusCodes, ua_time
from edge.serve.opcua.writer import GOOD, LiveValueWriter, ValueCell, deferred_value

# No window yet (no shift closed since the edge has known the machine): every member.
NO_WINDOW = StatusCodes.BadWaitingForInitialData
# A ratio with a zero denominator inside a window (OEE.md §6: null, never 0 or 1): a
# Good NaN - the window exists and its ratio is simply undefined.
UNDEFINED = float("nan")
UNCERTAIN_LAST = StatusCodes.UncertainLastUsableValue
BAD_COMMUNICATION = StatusCodes.BadCommunicationError

_LIVE = frozenset(
    {
        "PackMLState",
        "OEE.TotalCount",
        "OEE.GoodCount",
        "OEE.RejectCount",
        "Order.TotalCount",
        "Order.GoodCount",
        "Order.RejectCount",
    }
)

_VARIANT = {
    DataType.BOOL: Vt.Boolean,
    DataType.INT16: Vt.Int16,
    DataType.UINT16: Vt.UInt16,
    DataType.INT32: Vt.Int32,
    DataType.UINT32: Vt.UInt32,
    DataType.INT64: Vt.Int64,
    DataType.UINT64: Vt.UInt64,
    DataType.FLOAT32: Vt.Float,
    DataType.FLOAT64: Vt.Double,
}

_QUALITY = {
    Quality.GOOD: StatusCodes.Good,
    Quality.UNCERTAIN: StatusCodes.Uncertain,
    Quality.BAD: StatusCodes.Bad,
}


def process_variable(signal: SignalDef) -> Var:
    """A process value's variable: a scaled value is a Double, else the PLC's type; an
    EURange where the plc_map gives both limits."""
    vtype = Vt.Double if signal.is_scaled else _VARIANT[signal.data_type]
    description = signal.description or f"Process value {signal.name} from the PLC"
    limits = (
        (float(signal.minimum), float(signal.maximum))
        if signal.minimum is not None and signal.maximum is not None
        else None
    )
    return Var(signal.name, vtype, description, signal.unit, range=limits)


def _coerce(vtype: ua.VariantType, value: object) -> object | None:
    """The Python value a Variant of ``vtype`` needs, or None when it cannot be one."""
    if value is None or isinstance(value, str):
        return None
    if vtype is Vt.Boolean:
        return bool(value)
    if not isinstance(value, int | float):
        return None
    if vtype in (Vt.Float, Vt.Double):
        return float(value)
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value)


# A variable of a machine as staging needs it: its name under the machine, its
# writer cell, and whether it is live (degraded while the PLC link is down).
_Node = tuple[str, ValueCell, bool]


def _time_of(field: str) -> Callable[[KpiRecord], object]:
    read = attrgetter(field)
    return lambda kpis: ua_time(read(kpis))


# ``OeeWindowType`` member name -> how a KpiRecord gives its value.
_WINDOW_FIELDS: dict[str, Callable[[KpiRecord], object]] = {
    "Name": attrgetter("name"),
    "Start": _time_of("start"),
    "End": _time_of("end"),
    "Closed": attrgetter("closed"),
    "ScheduledTime": attrgetter("scheduled_s"),
    "PlannedStopTime": attrgetter("planned_stop_s"),
    "PlannedProductionTime": attrgetter("planned_production_s"),
    "RunTime": attrgetter("run_s"),
    "Downtime": attrgetter("downtime_s"),
    "DowntimeEvents": attrgetter("downtime_events"),
    "MicroStops": attrgetter("micro_stops"),
    "MicroStopTime": attrgetter("micro_stop_s"),
    "TotalCount": attrgetter("total_count"),
    "GoodCount": attrgetter("good_count"),
    "RejectCount": attrgetter("reject_count"),
    "Availability": attrgetter("availability"),
    "Performance": attrgetter("performance"),
    "Quality": attrgetter("quality"),
    "OEE": attrgetter("oee"),
    "TEEP": attrgetter("teep"),
    "MTBF": attrgetter("mtbf_s"),
    "MTTR": attrgetter("mttr_s"),
}


def window_value(kpis: KpiRecord | None, member: str) -> tuple[object, int]:
    """(value, status) of one ``OeeWindowType`` member for a KpiRecord (None: no window)."""
    if kpis is None:
        return None, NO_WINDOW
    value = _WINDOW_FIELDS[member](kpis)
    return (value if value is not None else UNDEFINED, GOOD)


class _Window:
    """The members of one ``OeeWindowType`` instance of a machine (OEE, LastShift).

    A member somebody watches is staged with every KPI refresh; one nobody watches
    (most of them, most of the time: a line has ~45 KPI values a machine, refreshed
    every second) gets a recipe that reads the window's newest KPIs when a client
    reads it, so a refresh of an unwatched machine builds no value at all.
    """

    __slots__ = ("_kpis", "_members", "_server_ts", "_ts", "_writer")

    def __init__(self, members: tuple[tuple[str, _Node], ...], writer: LiveValueWriter) -> None:
        self._writer = writer
        self._kpis: KpiRecord | None = None
        self._ts: float | None = None
        self._server_ts = 0.0
        # (member, node, recipe): live members (counts) keep their own staging, which
        # knows what a value is worth while the link is down.
        self._members: tuple[tuple[str, _Node, Callable[[], ua.DataValue] | None], ...] = tuple(
            (
                member,
                node,
                None if node[2] else partial(self._data_value, member, node[1].handle),
            )
            for member, node in members
            if member in _WINDOW_FIELDS
        )

    def put(
        self,
        kpis: KpiRecord | None,
        ts: float,
        stage: Callable[[_Node, object, float | None, int], None],
    ) -> None:
        self._kpis, self._ts, self._server_ts = kpis, ts, time.time()
        defer = self._writer.defer_cell
        for member, node, recipe in self._members:
            if recipe is None or not defer(node[1], recipe):
                value, status = window_value(kpis, member)
                stage(node, value, ts, status)

    def _data_value(self, member: str, handle: VarHandle) -> ua.DataValue:
        value, status = window_value(self._kpis, member)
        return deferred_value(handle, value, status, self._ts, self._server_ts)


@dataclass(slots=True)
class _OrderTally:
    """A machine's pieces for the order it makes now, summed from PiecesCounted."""

    order_id: str
    by_role: dict[str, int]

    def counts(self, mapped_roles: frozenset[str]) -> tuple[int, int, int]:
        """(total, good, reject), derived like the core does (OEE.md §5)."""
        roles = mapped_roles or frozenset(self.by_role)
        total = self.by_role.get("total_count", 0)
        good = self.by_role.get("good_count", 0)
        reject = self.by_role.get("reject_count", 0)
        external = self.by_role.get("quality_station_reject", 0)
        if "good_count" in roles and "reject_count" in roles:
            return good + reject, good, reject
        if "total_count" in roles:
            if "good_count" in roles:
                return total, good, total - good
            if "reject_count" in roles:
                return total, total - reject, reject
            return total, total - external, external
        if "good_count" in roles:
            return good + external, good, external
        return reject, 0, reject


@dataclass(frozen=True, slots=True)
class MachineAlarms:
    """A machine's conditions (see :mod:`edge.serve.opcua.alarms`)."""

    book: AlarmBook
    fault: Condition | None  # None: its plc_map maps no fault code
    plc_link: Condition | None  # None: no PLC


class MachineView:
    """The variables of one machine object (``<line>.<machine>.*``)."""

    def __init__(
        self,
        machine_id: str,
        prefix: str,
        handles: Mapping[str, VarHandle],
        writer: LiveValueWriter,
        plc_map: PlcMap | None,
        *,
        companions: Companions | None = None,
        alarms: MachineAlarms | None = None,
        reasons: Iterable[Reason] = (),
    ) -> None:
        self.machine_id = machine_id
        self._companions = companions
        self._alarms = alarms
        self._reasons = {r.code: r for r in reasons if r.code is not None}
        self._state = MachineState.UNKNOWN
        self._stop_category = ReasonCategory.UNPLANNED
        self.prefix = prefix
        self._writer = writer
        self._handles = {
            text[len(prefix) + 1 :]: handle
            for text, handle in handles.items()
            if text.startswith(prefix + ".")
        }
        self._roles = frozenset(
            s.name for s in (plc_map.signals if plc_map else ()) if s.is_counter
        )
        self.process_signals = {
            s.name: s for s in (plc_map.signals if plc_map else ()) if s.role is None
        }
        self.down_since: float | None = None
        self._nodes: dict[str, _Node] = {}
        self._process_nodes: dict[str, _Node | None] = {}  # by the sample's signal
        self._current_window = _Window(self._window_handles("OEE"), writer)
        self._closed_window = _Window(self._window_handles("LastShift"), writer)
        self._last_closed: KpiRecord | None = None
        self._last_closed_staged = False
        # When the PLC source last said the link is up (None: it said down since).
        self._link_up_at: float | None = None
        self._last_good: dict[str, tuple[object, float | None]] = {}
        self._stop_id = 0
        self._tally: _OrderTally | None = None
        self.current_order = ""
        # The status pulled when read (see pull_status_with): asked when set.
        self._status_query: Callable[[], MachineStatus | None] | None = None
        self._status_stale = False
        self._status_applied = False
        self._cells_of_status: list[ValueCell] = []

    # -- the status, asked when read -----------------------------------------------

    def _status_cells(self) -> list[ValueCell]:
        """The cells :meth:`apply_status` stages (whatever its branches)."""
        names = ["State", "StateSince", "StopReason", "StopId", "EventTime"]
        names += [f"{ITEM_STATE}.CurrentState", f"{ITEM_STATE}.CurrentState.Id"]
        names += [f"{w}.{m.name}" for w in ("OEE", "LastShift") for m in OEE_WINDOW_MEMBERS]
        return [node[1] for node in map(self._node, names) if node is not None]

    def pull_status_with(self, query: Callable[[], MachineStatus | None]) -> None:
        """From now on, a status refresh of this machine while none of its status values
        is watched can be left to the first client that reads one (:meth:`status_stale`):
        ``query`` answers the machine's status synchronously then (None: not now)."""
        self._status_query = query
        self._cells_of_status = self._status_cells()
        for cell in self._cells_of_status:
            if cell.holder is not None:
                cell.holder.before_read = self._pull_status

    def status_watched(self) -> bool:
        """Whether a refresh must stage the status now: a client watches one of its
        values, or they cannot be pulled when read (never applied yet, no query)."""
        if self._status_query is None or not self._status_applied:
            return True
        return any(cell.holder is None or cell.holder.watched for cell in self._cells_of_status)

    def status_stale(self) -> None:
        """The status changed (or time moved its KPIs) and nobody watches it: it is
        asked and applied when a client reads one of its values, not before."""
        self._status_stale = True

    def _pull_status(self) -> None:
        if not self._status_stale or self._status_query is None:
            return
        self._status_stale = False  # a read while it is applied pulls nothing again
        status = self._status_query()
        if status is None:
            self._status_stale = True  # not answerable now: the values stay as last applied
            return
        self.apply_status(status, time.time())

    # -- staging -------------------------------------------------------------------

    def _is_live(self, name: str) -> bool:
        return name in _LIVE or name.startswith(("ProcessValues.", f"{PACKML}."))

    def stage(self, name: str, value: object, ts: float | None, status: int = GOOD) -> None:
        node = self._node(name)
        if node is not None:
            self._put(node, value, ts, status)

    def _node(self, name: str) -> _Node | None:
        node = self._nodes.get(name)
        if node is None:
            handle = self._handles.get(name)
            if handle is None:
                return None
            node = self._nodes[name] = (name, self._writer.cell(handle), self._is_live(name))
        return node

    def _put(self, node: _Node, value: object, ts: float | None, status: int) -> None:
        name, cell, live = node
        if live:
            if status == GOOD:
                # Kept even while the link counts as down: a sample that arrives then
                # (the link was only inferred down, from an actor not yet past a
                # restart) is what the value is when the link is seen up again.
                self._last_good[name] = (value, ts)
            if self.down_since is not None:
                self._stage_degraded(node)
                return
        self._writer.stage_cell(cell, value, ts, status)

    def _stage_degraded(self, node: _Node) -> None:
        name, cell, _live = node
        if name in self._last_good:
            value, _ts = self._last_good[name]
            self._writer.stage_cell(cell, value, self.down_since, UNCERTAIN_LAST)
        else:
            self._writer.stage_cell(cell, None, self.down_since, BAD_COMMUNICATION)

    def stage_many(self, values: Iterable[tuple[str, object, int]], ts: float | None) -> None:
        for name, value, status in values:
            self.stage(name, value, ts, status)

    # -- link ----------------------------------------------------------------------

    def link_seen(self, up: bool, ts: float) -> None:
        """The PLC source's own word on its link (it goes before any inference)."""
        if up:
            self._link_up_at = ts
            self.link_restored(ts)
        else:
            self._link_up_at = None
            self.link_lost(ts)
        self.link_alarm(not up, ts)

    def _unknown_since(self, ts: float) -> None:
        """The actor shows ``unknown`` since ``ts``: it is not watching the PLC (the
        link is down, or a restart is not yet confirmed by data) — unless the source
        said the link came up after that, and the actor has not yet seen the samples
        that followed (a status or event older than the link's return)."""
        if self._link_up_at is not None and ts <= self._link_up_at:
            return
        self.link_lost(ts)

    def link_lost(self, ts: float) -> None:
        """The PLC link is down since ``ts`` (idempotent; an earlier ``ts`` wins)."""
        if self.down_since is not None and ts >= self.down_since:
            return
        self.down_since = ts
        self.stage("PlcLinkUp", False, ts)
        for name in self._handles:
            node = self._node(name)
            if node is not None and node[2]:
                self._stage_degraded(node)

    def link_alarm(self, down: bool, ts: float) -> None:
        """The PLC source's own word on its link (never an inference from the
        actor's state, which is unknown after every start too): the PlcLinkAlarm."""
        alarms = self._alarms
        if alarms is None or alarms.plc_link is None:
            return
        message = (
            f"{self.machine_id}: PLC link lost" if down else f"{self.machine_id}: PLC link is back"
        )
        alarms.book.set_active(alarms.plc_link, down, ts, message, None)

    def link_restored(self, ts: float) -> None:
        if self.down_since is None:
            self.stage("PlcLinkUp", True, ts)
            return
        self.down_since = None
        self.stage("PlcLinkUp", True, ts)
        # Last good values are Good again, with the time they were sampled, until the
        # next sample or status replaces them.
        for name, (value, sampled) in list(self._last_good.items()):
            self.stage(name, value, sampled)

    # -- sources -------------------------------------------------------------------

    def apply_status(self, status: MachineStatus, now: float) -> None:
        self._status_stale = False
        self._status_applied = True
        ts = status.event_time if status.event_time is not None else now
        self.stage("State", status.state.value, status.state_since or ts)
        self._item_state(status.state, status.state_since or ts)
        if status.state_since is not None:
            self.stage("StateSince", ua_time(status.state_since), status.state_since)
        self.stage("StopReason", status.stop_reason or "", status.state_since or ts)
        if status.state is not MachineState.STOPPED:
            self._stop_id = 0
        self.stage("StopId", self._stop_id, status.state_since or ts)
        if status.event_time is not None:
            self.stage("EventTime", ua_time(status.event_time), status.event_time)
        # ~45 values a machine a second: those nobody watches not built at all (the
        # window's recipe reads them when a client does), and the last closed shift
        # only when it is another one.
        self._current_window.put(status.current_shift, ts, self._put)
        last = status.last_closed_shift
        if last != self._last_closed or not self._last_closed_staged:
            self._closed_window.put(last, ts, self._put)
            self._last_closed, self._last_closed_staged = last, True
        if status.state is MachineState.UNKNOWN and status.event_time is not None:
            self._unknown_since(status.state_since or status.event_time)
        elif status.state is not MachineState.UNKNOWN and self.down_since is not None:
            self.link_restored(status.state_since or ts)

    def _window_handles(self, prefix: str) -> tuple[tuple[str, _Node], ...]:
        """(member, node) of each OeeWindowType member of this machine under ``prefix``."""
        found = []
        for member in OEE_WINDOW_MEMBERS:
            node = self._node(f"{prefix}.{member.name}")
            if isinstance(member, Var) and node is not None:
                found.append((member.name, node))
        return tuple(found)

    def on_event(self, event: DomainEvent) -> None:
        if isinstance(event, PiecesCounted):
            self._count(event)
        elif isinstance(event, StateChanged):
            if event.state is MachineState.UNKNOWN:
                self._unknown_since(event.ts)
            elif event.previous is MachineState.UNKNOWN:
                self.link_restored(event.ts)
            self.stage("State", event.state.value, event.ts)
            self.stage("StateSince", ua_time(event.ts), event.ts)
            self._item_state(event.state, event.ts)
        elif isinstance(event, StopStarted):
            self._stop_id = event.stop_id
            self._stop_category = event.category
            self.stage("StopId", event.stop_id, event.ts)
            self.stage("StopReason", event.reason, event.ts)
            self._item_state(self._state, event.ts)
        elif isinstance(event, StopReasonChanged):
            if event.stop_id == self._stop_id:
                self._stop_category = event.category
                self._item_state(self._state, event.ts)
        elif isinstance(event, StopEnded):
            if self._stop_id == event.stop_id:
                self._stop_id = 0
                self.stage("StopId", 0, event.ts)
        elif isinstance(event, OrderWindowClosed) and event.order_id == self.current_order:
            self.set_current_order("", event.ts)

    def initialize(self, name: str, ts: float, identification: Identification) -> None:
        """Values known before any data: the name, the make, no order yet."""
        self.stage("Name", name, None)
        self.stage("PackMLState", "", None)
        self.stage("CurrentOrder", "", ts)
        self.stage("Order.OrderId", "", ts)
        self._stage_order_counts(ts)
        ident = f"{IDENTIFICATION}."
        self.stage(f"{ident}Manufacturer", ua.LocalizedText(identification.manufacturer), None)
        self.stage(f"{ident}SerialNumber", identification.serial_number, None)
        self.stage(f"{ident}ProductInstanceUri", identification.product_instance_uri, None)
        if identification.model:
            self.stage(f"{ident}Model", ua.LocalizedText(identification.model), None)
        if identification.year_of_construction is not None:
            self.stage(f"{ident}YearOfConstruction", identification.year_of_construction, None)
        if self._companions is not None:
            for path, states in self._companions.available_states().items():
                self.stage(path, states, None)
        self._item_state(MachineState.UNKNOWN, ts)

    def _item_state(self, state: MachineState, ts: float) -> None:
        """Machinery's MachineryItemState from the engine's state (see companions)."""
        self._state = state
        if self._companions is None:
            return
        if state is MachineState.RUNNING:
            name = "Executing"
        elif state is MachineState.STOPPED:
            planned = self._stop_category is ReasonCategory.PLANNED
            name = "OutOfService" if planned else "NotExecuting"
        else:
            name = "NotAvailable"
        state_id = self._companions.item_states[name]
        self.stage(f"{ITEM_STATE}.CurrentState", ua.LocalizedText(name), ts)
        self.stage(f"{ITEM_STATE}.CurrentState.Id", state_id, ts)

    def set_current_order(self, order_id: str, ts: float) -> None:
        if order_id == self.current_order:
            return
        self.current_order = order_id
        self._tally = _OrderTally(order_id, {}) if order_id else None
        self.stage("CurrentOrder", order_id, ts)
        self.stage("Order.OrderId", order_id, ts)
        self._stage_order_counts(ts)

    def _count(self, event: PiecesCounted) -> None:
        order_id = event.order_id or ""
        if order_id != self.current_order:
            self.set_current_order(order_id, event.ts)
        if self._tally is None:
            return
        tally = self._tally.by_role
        tally[event.role] = tally.get(event.role, 0) + event.count
        self._stage_order_counts(event.ts)

    def _stage_order_counts(self, ts: float) -> None:
        total, good, reject = self._tally.counts(self._roles) if self._tally else (0, 0, 0)
        self.stage("Order.TotalCount", total, ts)
        self.stage("Order.GoodCount", good, ts)
        self.stage("Order.RejectCount", reject, ts)

    def on_sample(self, sample: Sample) -> None:
        if sample.signal == "state":
            if isinstance(sample.value, int) and sample.quality is Quality.GOOD:
                name = packml_state_name(sample.value)
                self.stage("PackMLState", name, sample.ts)
                if self._companions is not None:
                    for path, text, state_id in self._companions.packml_values(name):
                        self.stage(path, text, sample.ts)
                        self.stage(f"{path}.Id", state_id, sample.ts)
            return
        if sample.signal == "fault_code":
            self._fault(sample)
            return
        process = self._process_nodes
        if sample.signal not in process:  # found once per signal
            signal = self.process_signals.get(sample.signal)
            process[sample.signal] = (
                self._node(f"ProcessValues.{signal.name}") if signal is not None else None
            )
        node = process[sample.signal]
        if node is None:
            return
        value = _coerce(node[1].handle.vtype, sample.value)
        if value is None:
            self._put(node, None, sample.ts, StatusCodes.BadTypeMismatch)
            return
        self._put(node, value, sample.ts, _QUALITY[sample.quality])

    def _fault(self, sample: Sample) -> None:
        alarms = self._alarms
        if alarms is None or alarms.fault is None:
            return
        code = sample.value
        if sample.quality is not Quality.GOOD or not isinstance(code, int):
            return
        reason = self._reasons.get(code)
        what = f"fault {code}: {reason.name}" if reason is not None else f"fault {code}"
        message = f"{self.machine_id} {what}" if code else f"{self.machine_id}: fault cleared"
        alarms.book.set_active(alarms.fault, code != 0, sample.ts, message, None)
