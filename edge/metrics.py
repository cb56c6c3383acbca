"""Prometheus metrics of one line, and its health and readiness.

:class:`LineMetrics` is the collector and the readiness check; the HTTP
component of edge.web serves them on ``[metrics] host:port`` (default
127.0.0.1:9712, a port no well-known exporter uses) when ``[metrics] enabled``,
and on the line display's address. Endpoints:

- ``/metrics``: the text exposition format (0.0.4), or OpenMetrics when the
  scraper asks for it, gzipped when it accepts that. Each scrape asks every
  machine actor for its status as of the scrape time (``GetStatus(now)``), so
  the KPIs are the engine's own, never a second computation;
- ``/healthz``: 200 while the service is starting or running and its
  supervisor has not given up (that it answers at all shows the event loop
  runs), 503 otherwise;
- ``/readyz``: 200 when the service is running, its supervisor and every
  machine actor are running, every PLC source is polling and every check a
  component reports is "ok" (named checks from ``health_checks()``: ``opcua
  server``, ``metrics endpoint``...; or a ``ready`` attribute); 503 otherwise. A
  JSON body names each check by what it checks. A PLC whose link is down does
  not make the edge unready: its values go Bad and everything else keeps
  serving (``edge_plc_link_up`` shows it).

Naming: one prefix ``edge_``, base units (seconds, bytes, ratios 0..1),
``_total`` only on counters, labels only ``line``, ``machine``, ``station``,
``plc`` — never an order id — with two documented exceptions:
``edge_build_info`` carries ``version``, ``python`` and ``event_loop`` (an
info metric), and ``edge_machine_shift_downtime_by_reason_seconds`` carries
``reason``, bounded to the machine's reason table, ``comm_loss``,
``unassigned`` and the PackML state names; any other reason (a raw fault code
missing from the table, a free-text operator entry) is summed into
``reason="other"``, so a misbehaving PLC cannot grow the series count.

Per machine (labels ``line``, ``machine``)
==========================================

From the engine's status at scrape time (the current shift instance; a ratio
whose denominator is zero has no sample, OEE.md §6 — never 0, never 1; outside
every shift the ``shift`` metrics have no sample):

========================================================  =====  ===========================
``edge_machine_state``                                    gauge  0 unknown, 1 running, 2 stopped
``edge_machine_state_since_timestamp_seconds``            gauge  event time of the last change
``edge_machine_shift_start_timestamp_seconds``            gauge  start of the current shift
``edge_machine_shift_updated_timestamp_seconds``          gauge  event time the KPIs are as of
``edge_machine_shift_{availability,performance,quality,oee,teep}_ratio``  gauge  OEE.md §6
``edge_machine_shift_{scheduled,planned_stop,planned_production,run,downtime,micro_stop}_seconds``
                                                          gauge  OEE.md §6
``edge_machine_shift_{mtbf,mttr}_seconds``                gauge  OEE.md §6
``edge_machine_shift_downtime_events``                    gauge  downtime events in the shift
``edge_machine_shift_micro_stops``                        gauge  micro-stops in the shift
``edge_machine_shift_{pieces,good_pieces,reject_pieces}`` gauge  counts in the shift's PPT
``edge_machine_shift_downtime_by_reason_seconds``         gauge  ``reason`` label, see above
========================================================  =====  ===========================

Counted from the engine's events since the service started (a restart starts
them at 0 again, which ``rate()`` handles):

- ``edge_machine_pieces_total``, ``edge_machine_good_pieces_total``,
  ``edge_machine_reject_pieces_total``: counter deltas, total/good/reject
  derived from the roles seen as in OEE.md §5 (``good + reject == total``);
- ``edge_machine_planned_stops_total`` / ``edge_machine_unplanned_stops_total``
  and ``..._stop_seconds_total``: stops that ended, by reason category (the
  category when the stop ended), with their whole length;
- ``edge_machine_downtime_events_total`` / ``edge_machine_downtime_seconds_total``,
  ``edge_machine_micro_stops_total`` / ``edge_machine_micro_stop_seconds_total``:
  unplanned stops that ended, by their classification (OEE.md §4);
- ``edge_machine_warnings_total``: warning events (out of order, counter reset...).

Runtime (label ``line``; ``machine`` or ``plc`` where named)
============================================================

- ``edge_actor_mailbox_depth{machine}`` (gauge), ``edge_actor_messages_total{machine}``,
  ``edge_actor_restarts_total{machine}``: each machine actor (supervisor statistics);
  ``station`` instead of ``machine`` for a quality station's actor;
- ``edge_actors`` (gauge), ``edge_actors_mailbox_depth`` (gauge, all actors),
  ``edge_actors_restarts_total`` (every actor ever supervised, work orders included);
- ``edge_plc_link_up{plc}``, ``edge_plc_consecutive_failures{plc}`` (gauges),
  ``edge_plc_polls_total``, ``edge_plc_requests_total``, ``edge_plc_errors_total``
  (failed polls / lost connections), ``edge_plc_data_errors_total``,
  ``edge_plc_skipped_polls_total``; OPC UA PLCs: ``edge_plc_connects_total``,
  ``edge_plc_notifications_total``, ``edge_plc_stale_values_total``,
  ``edge_plc_monitored_items`` — each present when the source's
  ``statistics()`` record has the field;
- ``edge_plc_poll_lateness_seconds{plc}`` (histogram): how late each Modbus poll
  started after its slot on the poll grid (the poll-cycle jitter).
- ``edge_plc_poll_duration_seconds{plc}`` (histogram): Modbus poll latency, all
  block reads of one poll; the source observes every successful poll into its
  own histogram, so each poll is counted exactly once;
- ``edge_events_published_total``: domain events on the event bus;
- ``edge_ready`` (gauge 1/0, as ``/readyz``), ``edge_build_info``, and the
  process collector's ``edge_process_*`` (CPU seconds, resident memory, fds...).

Components (labels ``line``)
============================

The metrics of the servers and connectors that other components run come from
the components on ``service.components``, by duck typing: a component that
implements :class:`MetricsSource` (``metric_values()``) or whose
``statistics()`` record has fields with these names (a nested record's fields
count as ``<field>_<subfield>``: ``outbox=OutboxStatistics(depth=...)`` gives
``outbox_depth``). A metric appears only when a component provides it.

=============================  ======================================  =======
field                          metric                                  type
=============================  ======================================  =======
``opcua_sessions``             ``edge_opcua_sessions``                 gauge
``opcua_subscriptions``        ``edge_opcua_subscriptions``            gauge
``opcua_nodes``                ``edge_opcua_nodes``                    gauge
``mqtt_connected``             ``edge_mqtt_connected`` (1/0)           gauge
``mqtt_published_batches``     ``edge_mqtt_published_batches_total``   counter
``mqtt_published_events``      ``edge_mqtt_published_events_total``    counter
``mqtt_reconnects``            ``edge_mqtt_reconnects_total``          counter
``mqtt_commands_accepted``     ``edge_mqtt_commands_accepted_total``   counter
``mqtt_commands_rejected``     ``edge_mqtt_commands_rejected_total``   counter
``outbox_depth``               ``edge_outbox_depth_events``            gauge
``outbox_oldest_age_s``        ``edge_outbox_oldest_age_seconds``      gauge
``outbox_size_bytes``          ``edge_outbox_size_bytes``              gauge
``outbox_appended``            ``edge_outbox_appended_events_total``   counter
``outbox_dropped``             ``edge_outbox_dropped_events_total``    counter
``outbox_rejected``            ``edge_outbox_rejected_events_total``   counter
``qmib_requests_succeeded``    ``edge_qmib_requests_succeeded_total``  counter
``qmib_requests_failed``       ``edge_qmib_requests_failed_total``     counter
``qmib_requests_rejected``     ``edge_qmib_requests_rejected_total``   counter
``qmib_request_retries``       ``edge_qmib_request_retries_total``     counter
=============================  ======================================  =======

(QMIB: succeeded = 2xx; rejected = 4xx, not retried; failed = gave up after
retries on 5xx or connection errors.) When two components provide the same
field, the first one on ``service.components`` wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from actors import loop as actor_loop
from actors.machine import GetStatus, MachineStatus
from actors.oee.counters import EXTERNAL_REJECT, ROLE_INDEX, Tally, derive_counts
from actors.oee.events import PiecesCounted, StopEnded, Warning
from actors.oee.kpi import KpiRecord
from actors.oee.params import ReasonCategory
from actors.oee.reasons import COMM_LOSS, UNASSIGNED
from actors.oee.state import PACKML_STATE_NAMES, MachineState
from actors.oee.stops import StopKind
from edge import __version__
from edge.errors import ActorError, EdgeError
from edge.event_bus import BusEvent
from edge.histogram import HistogramSnapshot
from edge.logs import OutageLog

if TYPE_CHECKING:
    from edge.service import LineService

__all__ = [
    "COMPONENT_METRICS",
    "ComponentMetric",
    "LineMetrics",
    "MetricsSource",
    "Readiness",
]

log = logging.getLogger("edge.metrics")

PREFIX: Final = "edge"
OTHER_REASON: Final = "other"
STATUS_ASK_TIMEOUT_S: Final = 2.0
# The classic text format every Prometheus 2.x and 3.x scrapes; our names and
# labels are all legacy-valid, so generate_latest's output is exactly that.
TEXT_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
STATE_CODES: Final = {MachineState.UNKNOWN: 0, MachineState.RUNNING: 1, MachineState.STOPPED: 2}


# ---------------------------------------------------------------------- component metrics


class MetricKind(enum.Enum):
    GAUGE = "gauge"
    COUNTER = "counter"


@dataclass(frozen=True, slots=True)
class ComponentMetric:
    name: str  # without the _total of a counter
    kind: MetricKind
    help: str


def _gauge(name: str, text: str) -> ComponentMetric:
    return ComponentMetric(name, MetricKind.GAUGE, text)


def _counter(name: str, text: str) -> ComponentMetric:
    return ComponentMetric(name, MetricKind.COUNTER, text)


COMPONENT_METRICS: Final[Mapping[str, ComponentMetric]] = {
    "opcua_sessions": _gauge("edge_opcua_sessions", "OPC UA client sessions on the line's server"),
    "opcua_subscriptions": _gauge("edge_opcua_subscriptions", "OPC UA subscriptions open"),
    "opcua_nodes": _gauge("edge_opcua_nodes", "Nodes in the line's OPC UA address space"),
    "mqtt_connected": _gauge("edge_mqtt_connected", "1 while connected to the MQTT broker"),
    "mqtt_published_batches": _counter(
        "edge_mqtt_published_batches", "Event batches the broker acknowledged"
    ),
    "mqtt_published_events": _counter(
        "edge_mqtt_published_events", "Events in batches the broker acknowledged"
    ),
    "mqtt_reconnects": _counter("edge_mqtt_reconnects", "Reconnects to the MQTT broker"),
    "mqtt_commands_accepted": _counter("edge_mqtt_commands_accepted", "MES commands accepted"),
    "mqtt_commands_rejected": _counter("edge_mqtt_commands_rejected", "MES commands rejected"),
    "outbox_depth": _gauge("edge_outbox_depth_events", "Events waiting in the outbox"),
    "outbox_oldest_age_s": _gauge(
        "edge_outbox_oldest_age_seconds", "Age of the oldest event waiting in the outbox"
    ),
    "outbox_size_bytes": _gauge("edge_outbox_size_bytes", "Size of the outbox database"),
    "outbox_appended": _counter("edge_outbox_appended_events", "Events appended to the outbox"),
    "outbox_dropped": _counter(
        "edge_outbox_dropped_events", "Events dropped by the outbox disk cap (drop-oldest)"
    ),
    "outbox_rejected": _counter(
        "edge_outbox_rejected_events", "Events refused by the outbox disk cap (reject-new)"
    ),
    "qmib_requests_succeeded": _counter(
        "edge_qmib_requests_succeeded", "QMIB requests answered 2xx"
    ),
    "qmib_requests_failed": _counter(
        "edge_qmib_requests_failed", "QMIB requests given up after retries (5xx, connection)"
    ),
    "qmib_requests_rejected": _counter(
        "edge_qmib_requests_rejected", "QMIB requests answered 4xx (not retried)"
    ),
    "qmib_request_retries": _counter("edge_qmib_request_retries", "QMIB request retries"),
}


@runtime_checkable
class MetricsSource(Protocol):
    """A component that reports values for :data:`COMPONENT_METRICS` keys itself."""

    def metric_values(self) -> Mapping[str, float | int | bool | None]: ...


def _flatten(record: object, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, object]]:
    """``(name, value)`` of a statistics record; nested records as ``<field>_<subfield>``."""
    if isinstance(record, Mapping):
        items: Iterable[tuple[Any, Any]] = record.items()
    elif dataclasses.is_dataclass(record) and not isinstance(record, type):
        items = ((f.name, getattr(record, f.name)) for f in dataclasses.fields(record))
    else:
        return
    for key, value in items:
        name = f"{prefix}{key}"
        if depth < 2 and (
            isinstance(value, Mapping)
            or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        ):
            yield from _flatten(value, f"{name}_", depth + 1)
        else:
            yield name, value


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def component_values(
    components: Sequence[object], on_error: Callable[[object, Exception], None] | None = None
) -> dict[str, float]:
    """Catalogue key -> value from the components that provide one (first one wins).

    A component whose ``metric_values()``/``statistics()`` raises is skipped
    (``on_error`` hears about it): one broken component must not fail the scrape.
    """
    values: dict[str, float] = {}
    for item in components:
        found: Iterable[tuple[str, object]]
        try:
            if isinstance(item, MetricsSource):
                found = list(item.metric_values().items())
            else:
                statistics = getattr(item, "statistics", None)
                if not callable(statistics):
                    continue
                found = list(_flatten(statistics()))
        except Exception as exc:
            if on_error is not None:
                on_error(item, exc)
            continue
        for key, value in found:
            number = _number(value)
            if key in COMPONENT_METRICS and key not in values and number is not None:
                values[key] = number
    return values


# ---------------------------------------------------------------------- event counters


class _MachineCounters:
    """What a machine's events add up to since the service started."""

    __slots__ = (
        "downtime_events",
        "downtime_s",
        "exported",
        "micro_s",
        "micro_stops",
        "planned_s",
        "planned_stops",
        "roles_seen",
        "tally",
        "unplanned_s",
        "unplanned_stops",
        "warnings",
    )

    def __init__(self) -> None:
        self.tally = Tally()
        self.roles_seen = 0
        self.exported = [0, 0, 0]  # the counters may only grow: the highest value exported
        self.planned_stops = 0
        self.planned_s = 0.0
        self.unplanned_stops = 0
        self.unplanned_s = 0.0
        self.downtime_events = 0
        self.downtime_s = 0.0
        self.micro_stops = 0
        self.micro_s = 0.0
        self.warnings = 0

    def pieces(self) -> tuple[int, int, int]:
        total, good, reject, _ = derive_counts(self.tally, self.roles_seen)
        # A newly seen role can re-derive a count lower than before (OEE.md §5
        # table); a Prometheus counter must not go back, so it holds its value.
        exported = self.exported
        for index, value in enumerate((total, good, reject)):
            exported[index] = max(exported[index], value)
        return exported[0], exported[1], exported[2]


class _EventCounters:
    """Event bus consumer: cheap per event, read at scrape time."""

    def __init__(self, machine_ids: Iterable[str]) -> None:
        self.machines = {machine_id: _MachineCounters() for machine_id in machine_ids}

    def consume(self, events: Sequence[BusEvent]) -> None:
        machines = self.machines
        for event in events:
            counters = machines.get(getattr(event, "machine_id", ""))
            if counters is None:
                continue
            kind = type(event)
            if kind is PiecesCounted:
                assert isinstance(event, PiecesCounted)
                role = ROLE_INDEX.get(event.role)
                if role is None:
                    counters.tally.pieces[EXTERNAL_REJECT] += event.count
                else:
                    counters.tally.pieces[role] += event.count
                    counters.roles_seen |= 1 << role
            elif kind is StopEnded:
                assert isinstance(event, StopEnded)
                self._stop_ended(counters, event)
            elif kind is Warning:
                counters.warnings += 1

    @staticmethod
    def _stop_ended(counters: _MachineCounters, event: StopEnded) -> None:
        seconds = max(event.duration_s, 0.0)
        if event.category is ReasonCategory.PLANNED:
            counters.planned_stops += 1
            counters.planned_s += seconds
            return
        counters.unplanned_stops += 1
        counters.unplanned_s += seconds
        if event.kind is StopKind.DOWNTIME:
            counters.downtime_events += 1
            counters.downtime_s += seconds
        elif event.kind is StopKind.MICRO_STOP:
            counters.micro_stops += 1
            counters.micro_s += seconds


# ---------------------------------------------------------------------- readiness


@dataclass(frozen=True, slots=True)
class Readiness:
    """``/readyz``: ready when every check says ``ok``."""

    ready: bool
    checks: Mapping[str, str]

    def as_json(self) -> bytes:
        return json.dumps({"ready": self.ready, "checks": dict(self.checks)}, indent=1).encode()


def component_checks(item: object) -> dict[str, str]:
    """A component's named checks for ``/readyz``, each "ok" or why not: its
    ``health_checks()`` (name -> "ok" or the reason), else its ``ready`` (a bool
    attribute or method), named by its ``health_name`` or its class; none when it
    says nothing."""
    name = str(getattr(item, "health_name", "") or f"component {type(item).__name__}")
    try:
        checks = getattr(item, "health_checks", None)
        if callable(checks):
            return {str(k): str(v) for k, v in checks().items()}
        ready = getattr(item, "ready", None)
        if ready is None:
            return {}
        if callable(ready):
            ready = ready()
    except Exception as exc:
        return {name: f"readiness check failed: {exc!r}"}
    return {name: "ok" if ready else "not ready"}


# ---------------------------------------------------------------------- the collector


class _Families:
    """Metric families of one scrape, created on first use, in a stable order."""

    def __init__(self, line: str) -> None:
        self.line = line
        self._families: dict[str, Metric] = {}

    def gauge(self, name: str, text: str, value: float, **labels: str) -> None:
        family = self._families.get(name)
        if family is None:
            family = GaugeMetricFamily(name, text, labels=["line", *labels])
            self._families[name] = family
        assert isinstance(family, GaugeMetricFamily)
        family.add_metric([self.line, *labels.values()], value)

    def counter(self, name: str, text: str, value: float, **labels: str) -> None:
        family = self._families.get(name)
        if family is None:
            family = CounterMetricFamily(name, text, labels=["line", *labels])
            self._families[name] = family
        assert isinstance(family, CounterMetricFamily)
        family.add_metric([self.line, *labels.values()], value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


_SHIFT_SECONDS: Final = (
    ("scheduled_s", "scheduled", "Scheduled time of the current shift so far"),
    ("planned_stop_s", "planned_stop", "Planned stop time (breaks, planned reasons)"),
    ("planned_production_s", "planned_production", "Planned production time (PPT)"),
    ("run_s", "run", "Run time: PPT minus downtime"),
    ("downtime_s", "downtime", "Unplanned downtime inside PPT (incl. comm_loss)"),
    ("micro_stop_s", "micro_stop", "Micro-stop time inside PPT"),
    ("mtbf_s", "mtbf", "Mean time between failures: run time per downtime event"),
    ("mttr_s", "mttr", "Mean time to repair: downtime-event time per event"),
)
_SHIFT_RATIOS: Final = ("availability", "performance", "quality", "oee", "teep")
_SHIFT_COUNTS: Final = (
    ("total_count", "edge_machine_shift_pieces", "Pieces counted in the current shift's PPT"),
    ("good_count", "edge_machine_shift_good_pieces", "Good pieces in the current shift's PPT"),
    ("reject_count", "edge_machine_shift_reject_pieces", "Rejects in the current shift's PPT"),
    ("downtime_events", "edge_machine_shift_downtime_events", "Downtime events in the shift"),
    ("micro_stops", "edge_machine_shift_micro_stops", "Micro-stops in the shift"),
)
_PLC_FIELDS: Final = (
    ("link_up", "edge_plc_link_up", MetricKind.GAUGE, "1 while the PLC link is up"),
    ("consecutive_failures", "edge_plc_consecutive_failures", MetricKind.GAUGE,
     "Failed attempts since the link was last up"),
    ("polls", "edge_plc_polls", MetricKind.COUNTER, "Poll attempts, failed ones included"),
    ("requests", "edge_plc_requests", MetricKind.COUNTER, "Read requests sent to the PLC"),
    ("errors", "edge_plc_errors", MetricKind.COUNTER,
     "Failed polls and lost connections (timeouts, refused, broken link)"),
    ("data_errors", "edge_plc_data_errors", MetricKind.COUNTER,
     "Values that could not be decoded or were answered with an exception"),
    ("skipped_polls", "edge_plc_skipped_polls", MetricKind.COUNTER,
     "Poll slots skipped because a poll overran its interval"),
    ("connects", "edge_plc_connects", MetricKind.COUNTER, "Connection attempts"),
    ("notifications", "edge_plc_notifications", MetricKind.COUNTER,
     "Data change notifications received"),
    ("stale", "edge_plc_stale_values", MetricKind.COUNTER,
     "Values older than the one already delivered, dropped"),
    ("monitored_items", "edge_plc_monitored_items", MetricKind.GAUGE,
     "Items the PLC's OPC UA server monitors for us"),
)  # fmt: skip


class LineMetrics(Collector):
    """The line's metrics registry; :meth:`render` refreshes and formats a scrape."""

    def __init__(self, service: LineService) -> None:
        self._service = service
        config = service.config
        self.line = config.line.id
        self._machine_ids = tuple(m.id for m in config.machines)
        self._station_ids = frozenset(
            str(getattr(s, "id", s)) for s in getattr(config, "stations", ()) or ()
        )
        builtin = {COMM_LOSS, UNASSIGNED, *PACKML_STATE_NAMES.values()}
        self._reasons = {
            m.id: frozenset(builtin | {r.name for r in m.params.reasons}) for m in config.machines
        }
        self.events = _EventCounters(self._machine_ids)
        self._statuses: dict[str, MachineStatus] = {}
        self._restarts_seen: dict[str, int] = {}
        self._restarts_total = 0
        self._refresh_lock = asyncio.Lock()
        self._status_outage = OutageLog(log, "machine status for metrics", line=self.line)
        self._component_outages: dict[int, OutageLog] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace=PREFIX, registry=self.registry)
        self.registry.register(self)

    # -- refreshing ---------------------------------------------------------------

    async def refresh(self, now: float | None = None) -> None:
        """Ask every machine actor for its status as of ``now`` (default: the wall clock)."""
        async with self._refresh_lock:
            at = time.time() if now is None else now
            replies = await asyncio.gather(*(self._status(m, at) for m in self._machine_ids))
            self._statuses = {s.machine_id: s for s in replies if s is not None}
            missing = [m for m, s in zip(self._machine_ids, replies, strict=True) if s is None]
            if missing:
                self._status_outage.failed(f"no status from {', '.join(missing)}")
            elif self._status_outage.is_down:
                self._status_outage.recovered()

    async def _status(self, machine_id: str, now: float) -> MachineStatus | None:
        try:
            status: MachineStatus = await self._service.machine_ref(machine_id).ask(
                GetStatus(now), timeout=STATUS_ASK_TIMEOUT_S
            )
        except ActorError:
            return None
        return status

    async def render(self, now: float | None = None) -> bytes:
        await self.refresh(now)
        return generate_latest(self.registry)

    def statuses(self) -> Mapping[str, MachineStatus]:
        """The statuses of the last refresh (what the last scrape showed)."""
        return dict(self._statuses)

    # -- readiness ----------------------------------------------------------------

    def readiness(self) -> Readiness:
        service = self._service
        checks: dict[str, str] = {}
        state = service.state.value
        checks["service"] = "ok" if state == "running" else f"service is {state}"
        try:
            supervisor = service.supervisor.state.value
        except EdgeError as exc:
            supervisor = str(exc)
        checks["supervisor"] = "ok" if supervisor == "running" else f"supervisor is {supervisor}"
        down = []
        for machine_id in self._machine_ids:
            try:
                actor_state = service.machine_ref(machine_id).state.value
            except KeyError:
                actor_state = "missing"
            if actor_state != "running":
                down.append(f"{machine_id} {actor_state}")
        checks["machine actors"] = "ok" if not down else "not running: " + ", ".join(down)
        # Sources start after the components; until then the service check fails.
        idle = [
            str(getattr(source, "plc_id", "?"))
            for source in service.sources
            if getattr(getattr(source, "state", None), "value", "running") != "running"
        ]
        checks["plc sources"] = "ok" if not idle else "not polling: " + ", ".join(idle)
        for item in service.components:
            checks.update(component_checks(item))
        return Readiness(all(v == "ok" for v in checks.values()), checks)

    def alive(self) -> bool:
        service = self._service
        if service.state.value not in ("starting", "running"):
            return False
        try:
            return service.supervisor.escalation is None
        except EdgeError:
            return False

    # -- collection (prometheus_client calls this from generate_latest) --------------

    def collect(self) -> Iterator[Metric]:
        f = _Families(self.line)
        self._collect_build(f)
        self._collect_machines(f)
        self._collect_event_counters(f)
        self._collect_actors(f)
        self._collect_plcs(f)
        self._collect_components(f)
        yield from f
        yield from self._collect_poll_durations()

    def _collect_build(self, f: _Families) -> None:
        try:
            loop_kind = actor_loop.loop_kind(asyncio.get_running_loop())
        except RuntimeError:
            loop_kind = "none"
        f.gauge(
            "edge_build_info",
            "Version of the edge software (value 1)",
            1.0,
            version=__version__,
            python=platform.python_version(),
            event_loop=loop_kind,
        )
        f.gauge("edge_ready", "1 when /readyz answers ready", float(self.readiness().ready))
        f.counter(
            "edge_events_published",
            "Domain events published on the event bus",
            float(self._service.bus.published),
        )

    def _collect_machines(self, f: _Families) -> None:
        for machine_id in self._machine_ids:
            status = self._statuses.get(machine_id)
            if status is None:
                continue
            f.gauge(
                "edge_machine_state",
                "Machine state: 0 unknown, 1 running, 2 stopped",
                float(STATE_CODES[status.state]),
                machine=machine_id,
            )
            if status.state_since is not None:
                f.gauge(
                    "edge_machine_state_since_timestamp_seconds",
                    "Event time the machine entered its current state",
                    status.state_since,
                    machine=machine_id,
                )
            if status.current_shift is not None:
                self._collect_shift(f, machine_id, status.current_shift)

    def _collect_shift(self, f: _Families, machine_id: str, k: KpiRecord) -> None:
        f.gauge(
            "edge_machine_shift_start_timestamp_seconds",
            "Start of the current shift instance",
            k.start,
            machine=machine_id,
        )
        f.gauge(
            "edge_machine_shift_updated_timestamp_seconds",
            "Event time the current shift's KPIs are computed up to",
            k.end,
            machine=machine_id,
        )
        for ratio in _SHIFT_RATIOS:
            value = getattr(k, ratio)
            if value is not None:
                f.gauge(
                    f"edge_machine_shift_{ratio}_ratio",
                    f"Current shift's {ratio} (OEE.md §6); no sample while undefined",
                    value,
                    machine=machine_id,
                )
        for field_name, stem, text in _SHIFT_SECONDS:
            value = getattr(k, field_name)
            if value is not None:
                f.gauge(
                    f"edge_machine_shift_{stem}_seconds", text, float(value), machine=machine_id
                )
        for field_name, name, text in _SHIFT_COUNTS:
            f.gauge(name, text, float(getattr(k, field_name)), machine=machine_id)
        known = self._reasons[machine_id]
        by_reason: dict[str, float] = {}
        for reason, seconds in k.downtime_by_reason.items():
            label = reason if reason in known else OTHER_REASON
            by_reason[label] = by_reason.get(label, 0.0) + seconds
        for reason, seconds in sorted(by_reason.items()):
            f.gauge(
                "edge_machine_shift_downtime_by_reason_seconds",
                "Current shift's downtime by stop reason (unknown reasons as 'other')",
                seconds,
                machine=machine_id,
                reason=reason,
            )

    def _collect_event_counters(self, f: _Families) -> None:
        for machine_id, c in self.events.machines.items():
            total, good, reject = c.pieces()
            m = machine_id
            f.counter("edge_machine_pieces", "Pieces counted since start", total, machine=m)
            f.counter("edge_machine_good_pieces", "Good pieces since start", good, machine=m)
            f.counter("edge_machine_reject_pieces", "Rejects since start", reject, machine=m)
            for category, stops, seconds in (
                ("planned", c.planned_stops, c.planned_s),
                ("unplanned", c.unplanned_stops, c.unplanned_s),
            ):
                f.counter(
                    f"edge_machine_{category}_stops",
                    f"Ended stops with a {category} reason",
                    stops,
                    machine=m,
                )
                f.counter(
                    f"edge_machine_{category}_stop_seconds",
                    f"Length of ended stops with a {category} reason",
                    seconds,
                    machine=m,
                )
            f.counter(
                "edge_machine_downtime_events",
                "Ended downtime events",
                c.downtime_events,
                machine=m,
            )
            f.counter(
                "edge_machine_downtime_seconds",
                "Length of ended downtime events",
                c.downtime_s,
                machine=m,
            )
            f.counter("edge_machine_micro_stops", "Ended micro-stops", c.micro_stops, machine=m)
            f.counter(
                "edge_machine_micro_stop_seconds",
                "Length of ended micro-stops",
                c.micro_s,
                machine=m,
            )
            f.counter("edge_machine_warnings", "Warning events", c.warnings, machine=m)

    def _collect_actors(self, f: _Families) -> None:
        try:
            stats = self._service.supervisor.statistics()
        except EdgeError:
            return
        machines = set(self._machine_ids)
        depth_all = 0
        for s in stats:
            depth_all += s.mailbox_depth
            previous = self._restarts_seen.get(s.name, 0)
            if s.restarts > previous:
                self._restarts_total += s.restarts - previous
            self._restarts_seen[s.name] = max(previous, s.restarts)
            if s.name in machines:
                labels = {"machine": s.name}
            elif s.name in self._station_ids:
                labels = {"station": s.name}
            else:
                continue  # work orders and helpers: counted in the edge_actors_* totals only
            f.gauge("edge_actor_mailbox_depth", "Messages waiting", s.mailbox_depth, **labels)
            f.counter("edge_actor_messages", "Messages handled", s.messages_handled, **labels)
            f.counter("edge_actor_restarts", "Restarts by the supervisor", s.restarts, **labels)
        f.gauge("edge_actors", "Actors under the line's supervisor", float(len(stats)))
        f.gauge("edge_actors_mailbox_depth", "Messages waiting, all actors", float(depth_all))
        f.counter(
            "edge_actors_restarts",
            "Restarts of every actor ever supervised",
            float(self._restarts_total),
        )

    def _collect_plcs(self, f: _Families) -> None:
        for source in self._service.sources:
            stats = source.statistics()
            plc = str(getattr(stats, "plc_id", getattr(source, "plc_id", "?")))
            for field_name, name, kind, text in _PLC_FIELDS:
                value = _number(getattr(stats, field_name, None))
                if value is None:
                    continue
                if kind is MetricKind.GAUGE:
                    f.gauge(name, text, value, plc=plc)
                else:
                    f.counter(name, text, value, plc=plc)

    def _component_failed(self, item: object, exc: Exception) -> None:
        outage = self._component_outages.get(id(item))
        if outage is None:
            name = type(item).__name__
            outage = OutageLog(log, f"metrics of component {name}", component=name)
            self._component_outages[id(item)] = outage
        outage.failed(repr(exc))

    def _collect_poll_durations(self) -> Iterator[Metric]:
        for field, name, text in (
            (
                "poll_latency",
                "edge_plc_poll_duration_seconds",
                "Modbus poll latency (all block reads of one poll), every successful poll",
            ),
            (
                "poll_lateness",
                "edge_plc_poll_lateness_seconds",
                "How late each Modbus poll started after its slot on the poll grid (jitter)",
            ),
        ):
            histograms = []
            for source in self._service.sources:
                stats = source.statistics()
                snapshot = getattr(stats, field, None)
                if isinstance(snapshot, HistogramSnapshot):
                    histograms.append((str(getattr(stats, "plc_id", "?")), snapshot))
            if not histograms:
                continue
            family = HistogramMetricFamily(name, text, labels=["line", "plc"])
            for plc, snapshot in histograms:
                family.add_metric([self.line, plc], snapshot.cumulative(), snapshot.sum)
            yield family

    def _collect_components(self, f: _Families) -> None:
        values = component_values(self._service.components, self._component_failed)
        for key, metric in COMPONENT_METRICS.items():
            value = values.get(key)
            if value is None:
                continue
            if metric.kind is MetricKind.GAUGE:
                f.gauge(metric.name, metric.help, value)
            else:
                f.counter(metric.name, metric.help, value)
