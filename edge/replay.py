"""``edge replay``: a hot-log trace through the machine cores, one JSON report out (OEE.md §7).

::

    {"machines": {"SMT01": {"shifts": [{"shift": "Day", "start": "...Z", "end": "...Z",
        "observed_start": "...Z", "observed_end": "...Z",
        "scheduled_s": ..., ..., "downtime_by_reason": {...}}, ...]}}}

- Every configured machine is reported, also one without samples (then its
  scheduled time is all ``comm_loss``: that is the truth of the trace).
- The trace's span runs from the first accepted line's timestamp to the latest
  accepted timestamp. Every machine's clock starts at the span's start, so a
  machine is ``unknown`` until its own first sample.
- One entry per shift instance overlapping the span (with a length), in time
  order, its KPIs clipped to the span. ``start``/``end`` are the instance's
  calendar bounds, so an entry always names its shift; ``observed_start`` /
  ``observed_end`` are the clipped span that ``scheduled_s`` measures. A stop
  still open at the end is classified by its length so far.
- A line with ``"sensor": "link"`` is not a signal but the PLC link of its
  machine: ``false`` (or 0) the link went down, ``true`` (or non-zero) it is back,
  exactly as the live PLC sources report it. The machine is ``unknown`` in
  between (``comm_loss``), and the first readings after it reveal what was made
  meanwhile (OEE.md §5, time the edge did not see; ``docs/engine.md``).
- Malformed lines (bad JSON, missing or non-numeric fields, a timestamp without
  a zone, an unknown machine, a sample older than the previous one of the same
  machine and sensor) are skipped and reported on ``err`` with their line
  numbers (the first :data:`MAX_REPORTED` of them, then a count); the core's
  warnings (counter resets, performance above 1...) are reported the same way.
  The report is still produced and the exit status is 0.
- A trace with no usable line at all (empty, or every line rejected) is a
  failure: no report, a summary on ``err`` saying why, exit status
  :data:`EXIT_NO_DATA`.
- A ``sensor`` that is neither a signal role nor a process value any machine
  maps (``"Running"`` for ``running``) is still taken as a process value, as
  the trace format says, but warned about once per name, with the nearest
  known name.

Streaming: lines are parsed and applied one at a time; what stays in memory
is the machine cores (closed windows are dropped as they settle) and one small
record per shift instance.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TextIO

from actors.messages import SIGNAL_ROLES
from actors.oee.calendar import ShiftCalendar
from actors.oee.core import MachineCore
from actors.oee.events import DomainEvent, ShiftClosed, Warning, WindowRevised
from actors.oee.kpi import KpiRecord
from edge.config import LineConfig
from edge.errors import EdgeError, TraceError
from edge.plc.maps import load_plc_map
from edge.trace import TraceParser

MAX_REPORTED = 20
# The trace "sensor" that carries a machine's PLC link state instead of a signal.
LINK_SENSOR = "link"
# sysexits.h EX_DATAERR: the input was read, but nothing in it could be used.
EXIT_NO_DATA = 65

REPORT_FIELDS = (
    "scheduled_s",
    "planned_stop_s",
    "planned_production_s",
    "run_s",
    "downtime_s",
    "downtime_events",
    "micro_stops",
    "micro_stop_s",
    "total_count",
    "good_count",
    "reject_count",
    "availability",
    "performance",
    "quality",
    "oee",
    "teep",
    "mtbf_s",
    "mttr_s",
)


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC with a ``Z`` (fractions of a second only when there are some)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def shift_entry(record: KpiRecord, calendar: ShiftCalendar) -> dict[str, Any]:
    """One ``shifts`` entry of the report, keys in OEE.md §7 order.

    ``record`` covers the observed part of the shift instance; the calendar gives
    the instance's own bounds.
    """
    instance = calendar.instance_by_key(record.key)
    start, end = (record.start, record.end) if instance is None else (instance.start, instance.end)
    entry: dict[str, Any] = {
        "shift": record.name,
        "start": iso_utc(start),
        "end": iso_utc(end),
        "observed_start": iso_utc(record.start),
        "observed_end": iso_utc(record.end),
    }
    for name in REPORT_FIELDS:
        entry[name] = getattr(record, name)
    entry["downtime_by_reason"] = dict(record.downtime_by_reason)
    return entry


class _Notes:
    """Capped messages to ``err``: the first few verbatim, then only counted."""

    __slots__ = ("count", "err", "label")

    def __init__(self, err: TextIO | None, label: str) -> None:
        self.err = err
        self.label = label
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if self.err is not None and self.count <= MAX_REPORTED:
            self.err.write(message + "\n")

    def summary(self) -> None:
        if self.err is not None and self.count > MAX_REPORTED:
            self.err.write(f"... {self.count - MAX_REPORTED} more {self.label} not shown\n")


class ShiftRecords:
    """The final KPI record of every shift instance of one core, from its events.

    ``ShiftClosed`` gives a record, ``WindowRevised`` replaces it (the stop
    crossing the shift's end ended, or a stop's reason changed); at the end a
    record with a stop still open is recomputed at the end of the span, and
    the current shift is added.
    """

    __slots__ = ("core", "records")

    def __init__(self, core: MachineCore) -> None:
        self.core = core
        self.records: dict[str, KpiRecord] = {}  # shift key -> record, in time order

    def pump(self) -> list[DomainEvent]:
        """Drain the core's events, keep what concerns shifts; the events, for the caller."""
        events = self.core.drain_events()
        for event in events:
            if isinstance(event, ShiftClosed) or (
                isinstance(event, WindowRevised)
                and event.kpis.window == "shift"
                and event.kpis.key in self.records
            ):
                self.records[event.kpis.key] = event.kpis
        return events

    def finish(self, end: float) -> tuple[list[KpiRecord], list[DomainEvent]]:
        """Settle the core at ``end``: every shift's record with a length, and the last events."""
        core = self.core
        core.commit(end)
        events = self.pump()
        records: list[KpiRecord] = []
        for key, record in self.records.items():
            final = core.shift_kpis(key, end) if record.open_stop else None
            records.append(final or record)
        current = core.current_shift_kpis(end)
        if current is not None:
            records.append(current)
        events += self.pump()
        return [r for r in records if r.end > r.start], events


class Replay:
    """Feeds trace lines to one :class:`MachineCore` per configured machine."""

    def __init__(self, config: LineConfig, err: TextIO | None = None) -> None:
        calendar = self.calendar = ShiftCalendar(config.calendar)
        self.cores: dict[str, MachineCore] = {
            machine.id: MachineCore(machine.params, calendar) for machine in config.machines
        }
        self._shifts = {mid: ShiftRecords(core) for mid, core in self.cores.items()}
        self._parser = TraceParser()
        self._last_seen: dict[tuple[str, str], float] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.lines = 0
        self.accepted = 0
        self.malformed = _Notes(err, "malformed lines")
        self.warnings = _Notes(err, "warnings")
        self._err = err
        self._state_signals = {
            m.id: m.params.state_source.value
            for m in config.machines
            if m.params.state_source is not None and m.params.state_source.value in SIGNAL_ROLES
        }
        self._known_signals = SIGNAL_ROLES | _process_value_names(config)
        self._unknown_signals: set[str] = set()

    def feed(self, line: str | bytes, number: int) -> None:
        """One trace line (``number`` counts from 1, for messages)."""
        self.lines += 1
        if not line or line.isspace():
            return
        try:
            sample = self._parser.parse(line)
        except TraceError as exc:
            self.malformed.add(f"line {number}: {exc}")
            return
        machine_id = sample.machine_id
        core = self.cores.get(machine_id)
        if core is None:
            self.malformed.add(f"line {number}: unknown machine {machine_id!r}")
            return
        ts = sample.ts
        key = (machine_id, sample.signal)
        previous = self._last_seen.get(key)
        if previous is not None and ts < previous:
            self.malformed.add(
                f"line {number}: out of order: {machine_id}/{sample.signal} at "
                f"{iso_utc(ts)} is older than its previous sample ({iso_utc(previous)})"
            )
            return
        self._last_seen[key] = ts
        self.accepted += 1
        if sample.signal not in self._known_signals and sample.signal != LINK_SENSOR:
            self._unknown_signal(sample.signal, number)
        last = self.last_ts
        if last is None:
            self.first_ts = self.last_ts = ts
            for other_id, other in self.cores.items():
                other.advance(ts)
                self._note(other_id, self._shifts[other_id].pump())
        elif ts > last:
            self.last_ts = ts
        if sample.signal == LINK_SENSOR:
            core.link_changed(bool(sample.value), ts)
        else:
            core.apply(sample)
        self._note(machine_id, self._shifts[machine_id].pump())

    def _unknown_signal(self, signal: str, number: int) -> None:
        """Warn once about a sensor name that is probably a typo of a known one.

        Without plc_maps a line declares no process values, so any other name is
        a legitimate process value, unless it is close to a signal role.
        """
        if signal in self._unknown_signals:
            return
        self._unknown_signals.add(signal)
        role = _close_role(signal)
        if role is None and self._known_signals == SIGNAL_ROLES:
            return
        nearest = (
            [role]
            if role
            else difflib.get_close_matches(signal, sorted(self._known_signals), n=1, cutoff=0.6)
        )
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        self.warnings.add(
            f"warning: line {number}: sensor {signal!r} is no signal role "
            f"({', '.join(sorted(SIGNAL_ROLES))}) and no process value of the line's "
            f"plc_maps; taken as a process value{hint}"
        )

    def _note(self, machine_id: str, events: list[DomainEvent]) -> None:
        for event in events:
            if isinstance(event, Warning):
                self.warnings.add(f"warning: {machine_id}: {event.message}")

    def report(self) -> dict[str, Any]:
        """Settle every machine at the end of the span and build the report."""
        machines: dict[str, Any] = {}
        end = self.last_ts
        for machine_id, signal in self._state_signals.items():
            if (machine_id, signal) not in self._last_seen:
                self.warnings.add(
                    f"warning: {machine_id}: its state_source is {signal!r} but the trace has "
                    f"no {signal!r} sample for it, so all its time is unknown (comm_loss)"
                )
        for machine_id, shifts in self._shifts.items():
            records: list[KpiRecord] = []
            if end is not None:
                records, events = shifts.finish(end)
                self._note(machine_id, events)
            machines[machine_id] = {"shifts": [shift_entry(r, self.calendar) for r in records]}
        self.malformed.summary()
        self.warnings.summary()
        if self._err is not None and self.malformed.count:
            self._err.write(
                f"replay: {self.malformed.count} malformed line(s) skipped "
                f"of {self.lines}; report produced from the rest\n"
            )
        return {"machines": machines}


def _close_role(signal: str) -> str | None:
    """The signal role ``signal`` is probably a misspelling of, if any."""
    folded = signal.casefold().replace("-", "_").replace(" ", "_")
    if folded in SIGNAL_ROLES:
        return folded
    match = difflib.get_close_matches(folded, sorted(SIGNAL_ROLES), n=1, cutoff=0.8)
    return match[0] if match else None


def _process_value_names(config: LineConfig) -> frozenset[str]:
    """The process values the line's plc_maps name (a map that cannot be read names none)."""
    names: set[str] = set()
    for machine in config.machines:
        if machine.plc_map is None:
            continue
        try:
            plc_map = load_plc_map(machine.plc_map, config.plc_map_dirs)
        except EdgeError:
            continue
        names.update(signal.name for signal in plc_map.process_values)
    return frozenset(names)


def replay_lines(
    lines: Iterable[str | bytes], config: LineConfig, err: TextIO | None = None
) -> dict[str, Any]:
    """The §7 report for trace lines (an iterable, consumed once, streaming).

    Raises :class:`~edge.errors.TraceError` when not one line was usable.
    """
    replay = Replay(config, err)
    for number, line in enumerate(lines, start=1):
        replay.feed(line, number)
    if replay.accepted == 0:
        replay.malformed.summary()
        if replay.lines == 0 or replay.malformed.count == 0:
            raise TraceError("the trace has no samples: no report")
        raise TraceError(
            f"all {replay.malformed.count} non-blank line(s) of the trace were rejected "
            "(see above): no report"
        )
    return replay.report()


def run_replay(trace_path: str, config: LineConfig, out: TextIO, err: TextIO) -> int:
    """``edge replay TRACE --config LINE.toml``: the report on ``out``; the exit status.

    ``trace_path`` ``"-"`` reads standard input.
    """
    try:
        if trace_path == "-":
            report = replay_lines(sys.stdin.buffer, config, err)
        else:
            stream: IO[bytes]
            with Path(trace_path).open("rb") as stream:
                report = replay_lines(stream, config, err)
    except OSError as exc:
        err.write(f"edge replay: cannot read {trace_path}: {exc.strerror or exc}\n")
        return 1
    except TraceError as exc:
        err.write(f"edge replay: {trace_path}: {exc}\n")
        return EXIT_NO_DATA
    json.dump(report, out, indent=2)
    out.write("\n")
    return 0
