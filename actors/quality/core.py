"""The quality station core: inspection results, dispositions, SPC and alarms (pure).

::

    core = QualityStationCore(params)
    core.apply(sample)                              # PLC: pass/fail counters, measurements
    core.record_inspection(passed, failed, ts, ...) # manual entry (raises CommandError)
    core.dispose(count, disposition, reason_code, ts, order_id=...)
    core.set_order(order_id)                        # the order now made on the station's machine
    core.acknowledge(alarm_id, ts, user)
    core.order_quality(order_id) -> dict            # the batch record's quality summary part
    core.forget_order(order_id)
    core.status() -> StationStatus
    core.drain_events() -> list[QualityEvent]
    core.snapshot() -> dict;  QualityStationCore.restore(params, snapshot)

Inspection results
    From the PLC: the station's ``pass_signal`` and ``fail_signal`` are piece
    counters read like a machine's (OEE.md §5: the first reading is the
    baseline, rollover and reset by the same rule, the last reading persisted so
    a restart neither loses nor doubles pieces). Each delta is an inspection
    result at the reading's timestamp; failures get the station's
    ``plc_disposition`` (``pending`` by default). From a command: passed and
    failed counts with an optional disposition and reason code, and measured
    values per characteristic.

Dispositions
    Failed pieces are ``pending`` until a disposition command moves them to
    ``scrap``, ``rework`` or ``reuse`` with a reason code (from the station's
    ``reason_codes`` when it lists any). Dispositions never change OEE counts:
    OEE quality is first-pass yield, so a failed piece is a reject whatever
    happens to it later (oee.com: good count is pieces made right the first
    time); reworked pieces are reported as the order's rework quantity.

Rejects and the machine (the double-counting rule, docs/orders-and-quality.md)
    Every failure is attributed to the order running on the station's machine.
    When ``feeds_machine_rejects`` is set, the actor also adds the failures to
    the machine's reject count; when it is not, the machine's own PLC counters
    already hold them and the station only reports them.

SPC
    Every GOOD sample of a characteristic's signal is one measurement (the PLC
    source delivers changes only: a value equal to the previous one is not a
    new measurement). Measurements go into the characteristic's
    :class:`~actors.spc.Chart`; a broken run rule is an :class:`SpcViolation`
    event and an alarm. One alarm per characteristic, chart and rule stays
    active until acknowledged; further violations of it meanwhile count into
    it instead of raising new alarms.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.errors import CommandError
from actors.messages import Quality, Sample
from actors.oee.counters import counter_delta
from actors.quality.events import (
    AlarmAcknowledged,
    InspectionRecorded,
    QualityEvent,
    RejectsDisposed,
    SpcLimitsSet,
    SpcViolation,
)
from actors.quality.params import DISPOSED, CharacteristicParams, Disposition, StationParams

if TYPE_CHECKING:
    from actors.spc import Chart, RuleHit

__all__ = ["Alarm", "QualityStationCore", "StationStatus"]

NO_ORDER = ""
# Acknowledged alarms kept so that a repeated acknowledgement is answered, not refused.
_KEEP_ACKNOWLEDGED = 100


@dataclass(frozen=True, slots=True)
class Alarm:
    alarm_id: str
    station_id: str
    characteristic: str
    chart: str
    rule: int
    description: str
    first_ts: float
    last_ts: float
    count: int
    last_value: float
    acknowledged: bool = False
    acknowledged_ts: float | None = None
    acknowledged_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alarm:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class StationStatus:
    station_id: str
    machine_id: str
    order_id: str | None
    inspected: int
    passed: int
    failed: int
    pending: int
    dispositions: dict[str, int]
    limits: dict[str, dict[str, Any] | None]  # characteristic -> limits (None while warming up)
    capability: dict[str, dict[str, Any]]  # characteristic -> recent capability
    active_alarms: tuple[Alarm, ...]


PLOTTED_POINTS = 100  # points each chart keeps for the line display (and its snapshot)


@dataclass(frozen=True, slots=True)
class PlottedPoint:
    """One point of a characteristic's chart as plotted: a value (I-MR) or a subgroup
    mean (X̄-R) with its range, and the rules it broke (``x``: rule numbers on the
    X chart; ``range_out``: the range beyond its limits)."""

    index: int  # the chart's point number, from 1
    ts: float
    value: float
    range: float | None
    rules: tuple[int, ...]
    range_out: bool

    def as_list(self) -> list[Any]:
        return [self.index, self.ts, self.value, self.range, list(self.rules), self.range_out]

    @classmethod
    def from_list(cls, data: list[Any]) -> PlottedPoint:
        index, ts, value, spread, rules, range_out = data
        return cls(
            int(index),
            float(ts),
            float(value),
            None if spread is None else float(spread),
            tuple(int(r) for r in rules),
            bool(range_out),
        )


@dataclass(frozen=True, slots=True)
class ChartView:
    """A characteristic's chart for display: its limits (None while warming up), the
    specification limits and the last :data:`PLOTTED_POINTS` points, oldest first."""

    characteristic: str
    unit: str
    subgroup_size: int
    limits: dict[str, Any] | None
    lsl: float | None
    usl: float | None
    points: tuple[PlottedPoint, ...]


class _Tally:
    """Inspection counts of one order (or of no order) at one station."""

    __slots__ = ("dispositions", "failed", "passed", "pending")

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.pending = 0
        # disposition -> reason code -> pieces
        self.dispositions: dict[str, dict[str, int]] = {d.value: {} for d in DISPOSED}

    def dispose(self, disposition: Disposition, reason: str, count: int) -> None:
        by_reason = self.dispositions[disposition.value]
        by_reason[reason] = by_reason.get(reason, 0) + count

    def to_data(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "pending": self.pending,
            "dispositions": {d: dict(r) for d, r in self.dispositions.items()},
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> _Tally:
        tally = cls()
        tally.passed = int(data["passed"])
        tally.failed = int(data["failed"])
        tally.pending = int(data["pending"])
        for name, reasons in data["dispositions"].items():
            tally.dispositions[name] = {str(k): int(v) for k, v in reasons.items()}
        return tally


class _Stats:
    """Running statistics of one characteristic within one order (Welford)."""

    __slots__ = ("last", "m2", "maximum", "mean", "minimum", "n", "r_n", "r_sum", "violations")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.last: float | None = None
        self.r_sum = 0.0  # moving ranges (I-MR) or subgroup ranges (X̄-R) inside the order
        self.r_n = 0
        self.violations = 0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    def to_data(self) -> list[float | None]:
        return [
            self.n,
            self.mean,
            self.m2,
            self.minimum if self.n else None,
            self.maximum if self.n else None,
            self.last,
            self.r_sum,
            self.r_n,
            self.violations,
        ]

    @classmethod
    def from_data(cls, data: list[Any]) -> _Stats:
        stats = cls()
        n, mean, m2, lo, hi, last, r_sum, r_n, violations = data
        stats.n, stats.mean, stats.m2 = int(n), float(mean), float(m2)
        stats.minimum = float(lo) if lo is not None else math.inf
        stats.maximum = float(hi) if hi is not None else -math.inf
        stats.last = float(last) if last is not None else None
        stats.r_sum, stats.r_n, stats.violations = float(r_sum), int(r_n), int(violations)
        return stats


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CommandError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _check_ts(ts: object) -> float:
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise CommandError(f"ts must be a finite epoch time, got {ts!r}")
    return float(ts)


class QualityStationCore:
    def __init__(self, params: StationParams) -> None:
        self.params = params
        self._specs: dict[str, CharacteristicParams] = {c.name: c for c in params.characteristics}
        self._charts: dict[str, Chart] = {
            c.name: self._new_chart(c) for c in params.characteristics
        }
        self._by_signal: dict[str, str] = {
            c.signal: c.name for c in params.characteristics if c.signal is not None
        }
        self._readings: dict[str, int] = {}  # pass/fail signal -> last raw reading
        self.order_id: str | None = None
        self._total = _Tally()
        self._orders: dict[str, _Tally] = {}
        self._stats: dict[str, dict[str, _Stats]] = {}  # order -> characteristic -> stats
        self._alarms: OrderedDict[str, Alarm] = OrderedDict()
        self._active: dict[tuple[str, str, int], str] = {}  # (characteristic, chart, rule) -> id
        self._alarm_seq = 0
        self._events: list[QualityEvent] = []
        self._plotted: dict[str, deque[PlottedPoint]] = {
            name: deque(maxlen=PLOTTED_POINTS) for name in self._charts
        }

    @staticmethod
    def _new_chart(spec: CharacteristicParams) -> Chart:
        # numpy (~12 MB and 0.1 s to import) only on a line with a quality station.
        from actors.spc import Chart  # noqa: PLC0415

        return Chart(
            subgroup_size=spec.subgroup_size,
            limits=spec.baseline_limits(),
            warmup=spec.warmup,
            rules=spec.rules,
        )

    # ------------------------------------------------------------------ inputs

    def apply(self, sample: Sample) -> None:
        """One PLC sample of the station (roles and unknown signals are ignored)."""
        if sample.quality is not Quality.GOOD or sample.value is None:
            return
        signal = sample.signal
        params = self.params
        if signal in (params.pass_signal, params.fail_signal):
            delta = self._counter(signal, sample.value)
            if delta:
                if signal == params.pass_signal:
                    self._inspected(delta, 0, sample.ts, params.plc_disposition, "", source="plc")
                else:
                    reason = "" if params.plc_disposition is Disposition.PENDING else "plc"
                    self._inspected(
                        0, delta, sample.ts, params.plc_disposition, reason, source="plc"
                    )
            return
        name = self._by_signal.get(signal)
        value = sample.value
        if name is None or isinstance(value, (bool, str)):
            return
        if math.isfinite(value):
            self._measure(name, float(value), sample.ts)

    def _counter(self, signal: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return 0
        if value >= 1 << self.params.counter_bits:
            return 0
        old = self._readings.get(signal)
        self._readings[signal] = value
        if old is None:
            return 0  # the first reading is the baseline (OEE.md §5)
        delta, _change = counter_delta(old, value, self.params.counter_bits)
        return delta

    def record_inspection(
        self,
        passed: int,
        failed: int,
        ts: float,
        *,
        disposition: Disposition | str | None = None,
        reason_code: str = "",
        measurements: dict[str, list[float]] | None = None,
    ) -> None:
        """A manual inspection entry; validated whole before anything changes."""
        passed = _check_count("passed", passed)
        failed = _check_count("failed", failed)
        ts = _check_ts(ts)
        chosen = self._disposition(disposition)
        reason = self._reason(chosen, reason_code, failed)
        values: dict[str, list[float]] = {}
        for name, raw in (measurements or {}).items():
            if name not in self._specs:
                known = ", ".join(sorted(self._specs)) or "none configured"
                raise CommandError(
                    f"measurements: station {self.params.station_id!r} has no characteristic "
                    f"{name!r} (known: {known})"
                )
            items = raw if isinstance(raw, (list, tuple)) else [raw]
            checked: list[float] = []
            for item in items:
                if (
                    isinstance(item, bool)
                    or not isinstance(item, (int, float))
                    or not math.isfinite(item)
                ):
                    raise CommandError(
                        f"measurements.{name}: values must be finite numbers, got {item!r}"
                    )
                checked.append(float(item))
            values[name] = checked
        if passed == 0 and failed == 0 and not values:
            raise CommandError("an inspection needs passed, failed or measurements")
        if passed or failed:
            self._inspected(passed, failed, ts, chosen, reason, source="manual")
        for name, series in values.items():
            for value in series:
                self._measure(name, value, ts)

    def dispose(
        self,
        count: int,
        disposition: Disposition | str,
        reason_code: str,
        ts: float,
        *,
        order_id: str | None = None,
    ) -> str | None:
        """Move ``count`` pending failed pieces of ``order_id`` (default: the current
        order, else pieces of no order) to a disposition. Returns the order id."""
        count = _check_count("count", count)
        ts = _check_ts(ts)
        if count == 0:
            raise CommandError("count must be at least 1")
        chosen = self._disposition(disposition)
        if chosen is Disposition.PENDING:
            raise CommandError("disposition must be one of scrap, rework, reuse")
        reason = self._reason(chosen, reason_code, count)
        key = order_id if order_id is not None else (self.order_id or NO_ORDER)
        tally = self._orders.get(key)
        pending = tally.pending if tally is not None else 0
        if count > pending:
            whose = f"order {key!r}" if key else "no order"
            raise CommandError(
                f"count {count} exceeds the {pending} pending failed pieces of {whose} "
                f"at station {self.params.station_id!r}"
            )
        assert tally is not None
        tally.pending -= count
        tally.dispose(chosen, reason, count)
        self._total.pending -= count
        self._total.dispose(chosen, reason, count)
        order = key or None
        self._events.append(
            RejectsDisposed(
                self.params.machine_id,
                ts,
                self.params.station_id,
                order,
                count,
                chosen.value,
                reason,
            )
        )
        return order

    def set_order(self, order_id: str | None) -> None:
        self.order_id = order_id

    def acknowledge(self, alarm_id: str, ts: float, user: str) -> bool:
        """Acknowledge an alarm; False if it was already acknowledged. Unknown: CommandError."""
        alarm = self._alarms.get(alarm_id)
        if alarm is None:
            raise CommandError(
                f"alarm_id {alarm_id!r}: no such alarm at station {self.params.station_id!r}"
            )
        if alarm.acknowledged:
            return False
        done = Alarm(
            **{
                **alarm.as_dict(),
                "acknowledged": True,
                "acknowledged_ts": ts,
                "acknowledged_by": user,
            }
        )
        self._alarms[alarm_id] = done
        self._alarms.move_to_end(alarm_id)
        key = (alarm.characteristic, alarm.chart, alarm.rule)
        if self._active.get(key) == alarm_id:
            del self._active[key]
        self._events.append(
            AlarmAcknowledged(self.params.machine_id, ts, self.params.station_id, alarm_id, user)
        )
        self._prune_alarms()
        return True

    def forget_order(self, order_id: str) -> None:
        """The order's batch record is out: drop its per-order tallies."""
        self._orders.pop(order_id, None)
        self._stats.pop(order_id, None)

    # ------------------------------------------------------------------ helpers

    def _disposition(self, value: Disposition | str | None) -> Disposition:
        if value is None:
            return Disposition.PENDING
        if isinstance(value, Disposition):
            return value
        try:
            return Disposition(value)
        except ValueError:
            raise CommandError(
                f"disposition must be one of pending, scrap, rework, reuse, got {value!r}"
            ) from None

    def _reason(self, disposition: Disposition, reason_code: object, count: int) -> str:
        if not isinstance(reason_code, str):
            raise CommandError(f"reason_code must be a string, got {reason_code!r}")
        code = reason_code.strip()
        if disposition is Disposition.PENDING or count == 0:
            return code
        if not code:
            raise CommandError(f"reason_code is required for disposition {disposition.value!r}")
        allowed = self.params.reason_codes
        if allowed and code not in allowed:
            raise CommandError(
                f"reason_code {code!r} is not one of station {self.params.station_id!r}'s "
                f"reason codes: {', '.join(allowed)}"
            )
        return code

    def _tally(self) -> _Tally:
        key = self.order_id or NO_ORDER
        tally = self._orders.get(key)
        if tally is None:
            tally = self._orders[key] = _Tally()
        return tally

    def _inspected(
        self,
        passed: int,
        failed: int,
        ts: float,
        disposition: Disposition,
        reason: str,
        *,
        source: str,
    ) -> None:
        for tally in (self._total, self._tally()):
            tally.passed += passed
            tally.failed += failed
            if failed:
                if disposition is Disposition.PENDING:
                    tally.pending += failed
                else:
                    tally.dispose(disposition, reason, failed)
        params = self.params
        self._events.append(
            InspectionRecorded(
                params.machine_id,
                ts,
                params.station_id,
                self.order_id,
                passed,
                failed,
                disposition.value if failed else "",
                reason if failed else "",
                source,
                params.feeds_machine_rejects,
            )
        )

    def _measure(self, name: str, value: float, ts: float) -> None:
        chart = self._charts[name]
        point, hits, limits_set = chart.add(value)
        if point is not None:
            self._plotted[name].append(
                PlottedPoint(
                    chart.points,
                    ts,
                    point.value,
                    point.range,
                    tuple(h.rule for h in hits if h.chart == "x"),
                    any(h.chart == "range" for h in hits),
                )
            )
        order_stats = self._stats.setdefault(self.order_id or NO_ORDER, {})
        stats = order_stats.get(name)
        if stats is None:
            stats = order_stats[name] = _Stats()
        if chart.subgroup_size == 1 and stats.last is not None:
            stats.r_sum += abs(value - stats.last)
            stats.r_n += 1
        elif chart.subgroup_size > 1 and point is not None and point.range is not None:
            stats.r_sum += point.range
            stats.r_n += 1
        stats.last = value
        stats.add(value)
        params = self.params
        if limits_set and chart.limits is not None:
            self._events.append(
                SpcLimitsSet(params.machine_id, ts, params.station_id, name, chart.limits.as_dict())
            )
        for hit in hits:
            stats.violations += 1
            alarm_id, new = self._raise_alarm(name, hit, ts)
            self._events.append(
                SpcViolation(
                    params.machine_id,
                    ts,
                    params.station_id,
                    self.order_id,
                    name,
                    hit.chart,
                    hit.rule,
                    hit.value,
                    hit.description,
                    alarm_id,
                    new,
                )
            )

    def _raise_alarm(self, name: str, hit: RuleHit, ts: float) -> tuple[str, bool]:
        chart, rule, description, value = hit.chart, hit.rule, hit.description, hit.value
        key = (name, chart, rule)
        active = self._active.get(key)
        if active is not None:
            alarm = self._alarms[active]
            self._alarms[active] = Alarm(
                **{
                    **alarm.as_dict(),
                    "last_ts": ts,
                    "count": alarm.count + 1,
                    "last_value": value,
                }
            )
            return active, False
        self._alarm_seq += 1
        alarm_id = f"spc/{self.params.station_id}/{name}/{self._alarm_seq}"
        self._alarms[alarm_id] = Alarm(
            alarm_id=alarm_id,
            station_id=self.params.station_id,
            characteristic=name,
            chart=chart,
            rule=rule,
            description=f"{name} ({'range' if chart == 'range' else 'value'}): {description}",
            first_ts=ts,
            last_ts=ts,
            count=1,
            last_value=value,
        )
        self._active[key] = alarm_id
        return alarm_id, True

    def _prune_alarms(self) -> None:
        acknowledged = [a for a, alarm in self._alarms.items() if alarm.acknowledged]
        for alarm_id in acknowledged[: max(0, len(acknowledged) - _KEEP_ACKNOWLEDGED)]:
            del self._alarms[alarm_id]

    # ------------------------------------------------------------------ queries

    def drain_events(self) -> list[QualityEvent]:
        events, self._events = self._events, []
        return events

    @property
    def active_alarms(self) -> tuple[Alarm, ...]:
        return tuple(a for a in self._alarms.values() if not a.acknowledged)

    def alarm(self, alarm_id: str) -> Alarm | None:
        return self._alarms.get(alarm_id)

    def status(self) -> StationStatus:
        total = self._total
        return StationStatus(
            station_id=self.params.station_id,
            machine_id=self.params.machine_id,
            order_id=self.order_id,
            inspected=total.passed + total.failed,
            passed=total.passed,
            failed=total.failed,
            pending=total.pending,
            dispositions={d: sum(r.values()) for d, r in total.dispositions.items()},
            limits={
                name: chart.limits.as_dict() if chart.limits is not None else None
                for name, chart in self._charts.items()
            },
            capability={
                name: chart.capability(self._specs[name].lsl, self._specs[name].usl).as_dict()
                for name, chart in self._charts.items()
            },
            active_alarms=self.active_alarms,
        )

    def charts(self) -> list[ChartView]:
        """Every characteristic's chart, in config order."""
        views = []
        for name, chart in self._charts.items():
            spec = self._specs[name]
            views.append(
                ChartView(
                    name,
                    spec.unit,
                    chart.subgroup_size,
                    chart.limits.as_dict() if chart.limits is not None else None,
                    spec.lsl,
                    spec.usl,
                    tuple(self._plotted[name]),
                )
            )
        return views

    def order_quality(self, order_id: str) -> dict[str, Any]:
        """This station's part of an order's quality summary (plain data)."""
        tally = self._orders.get(order_id) or _Tally()
        params = self.params
        characteristics: dict[str, Any] = {}
        for name, spec in self._specs.items():
            stats = self._stats.get(order_id, {}).get(name) or _Stats()
            characteristics[name] = self._summary(spec, stats)
        return {
            "station_id": params.station_id,
            "machine_id": params.machine_id,
            "feeds_machine_rejects": params.feeds_machine_rejects,
            "inspected": tally.passed + tally.failed,
            "passed": tally.passed,
            "failed": tally.failed,
            "pending": tally.pending,
            "scrap": sum(tally.dispositions[Disposition.SCRAP.value].values()),
            "rework": sum(tally.dispositions[Disposition.REWORK.value].values()),
            "reuse": sum(tally.dispositions[Disposition.REUSE.value].values()),
            "by_reason": {d: dict(r) for d, r in tally.dispositions.items()},
            "characteristics": characteristics,
        }

    def _summary(self, spec: CharacteristicParams, stats: _Stats) -> dict[str, Any]:
        from actors.spc import CONSTANTS, capability  # noqa: PLC0415 - as in _new_chart

        n = stats.n
        stdev = math.sqrt(stats.m2 / (n - 1)) if n > 1 else None
        sigma_within: float | None = None
        if stats.r_n:
            d2 = CONSTANTS[2 if spec.subgroup_size == 1 else spec.subgroup_size].d2
            sigma_within = (stats.r_sum / stats.r_n) / d2
        cp = cpk = None
        if n and sigma_within:
            cp, cpk = capability(stats.mean, sigma_within, spec.lsl, spec.usl)
        limits = self._charts[spec.name].limits
        return {
            "unit": spec.unit,
            "lsl": spec.lsl,
            "usl": spec.usl,
            "n": n,
            "mean": stats.mean if n else None,
            "min": stats.minimum if n else None,
            "max": stats.maximum if n else None,
            "stdev": stdev,
            "sigma_within": sigma_within,
            "cp": cp,
            "cpk": cpk,
            "violations": stats.violations,
            "limits": limits.as_dict() if limits is not None else None,
        }

    # ------------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        return {
            "station_id": self.params.station_id,
            "readings": dict(self._readings),
            "order_id": self.order_id,
            "total": self._total.to_data(),
            "orders": {k: t.to_data() for k, t in self._orders.items()},
            "stats": {
                order: {name: s.to_data() for name, s in chars.items()}
                for order, chars in self._stats.items()
            },
            "charts": {name: chart.snapshot() for name, chart in self._charts.items()},
            "alarms": [a.as_dict() for a in self._alarms.values()],
            "alarm_seq": self._alarm_seq,
            "plotted": {name: [p.as_list() for p in q] for name, q in self._plotted.items()},
        }

    @classmethod
    def restore(cls, params: StationParams, data: dict[str, Any]) -> QualityStationCore:
        """Continue from a snapshot; characteristics no longer configured are dropped."""
        core = cls(params)
        core._readings = {
            str(k): int(v) for k, v in data.get("readings", {}).items() if k in params.signals
        }
        core.order_id = data.get("order_id")
        core._total = _Tally.from_data(data["total"])
        core._orders = {k: _Tally.from_data(v) for k, v in data.get("orders", {}).items()}
        core._stats = {
            order: {name: _Stats.from_data(s) for name, s in chars.items() if name in core._specs}
            for order, chars in data.get("stats", {}).items()
        }
        for name, saved in data.get("charts", {}).items():
            if name in core._charts:
                core._charts[name].restore(saved, keep_limits=core._specs[name].baseline_limits())
        for item in data.get("alarms", []):
            alarm = Alarm.from_dict(item)
            core._alarms[alarm.alarm_id] = alarm
            if not alarm.acknowledged:
                core._active[(alarm.characteristic, alarm.chart, alarm.rule)] = alarm.alarm_id
        core._alarm_seq = int(data.get("alarm_seq", 0))
        for name, points in data.get("plotted", {}).items():
            if name in core._plotted:
                core._plotted[name].extend(PlottedPoint.from_list(p) for p in points)
        return core
