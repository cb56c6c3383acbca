"""What the line display shows over time that the machine core does not keep by the hour.

The core keeps every stop of the current shift (with its reason and class, which
may still change) and the shift's KPIs; the display also shows the pieces counted
per hour and the spans a machine was ``unknown`` (link lost, edge down). This
module collects both from the event bus, as the events say them, for the last
:data:`RETAIN_S` seconds, and is saved with the line's snapshot
(a state source of its cut, edge.state.cut), so a restart keeps the shift's earlier hours.

Hours are local wall-clock hours of the line's calendar time zone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from actors.oee.counters import EXTERNAL_REJECT, ROLE_INDEX, Tally, derive_counts
from actors.oee.events import PiecesCounted, StateChanged
from actors.oee.state import MachineState

__all__ = ["LEGACY_SNAPSHOT_KEY", "MACHINE_KEY_PREFIX", "RETAIN_S", "HourCounts", "LineHistory"]

RETAIN_S = 36 * 3600.0  # a shift and the one before it, whatever the calendar
MAX_SPANS = 2_000  # unknown spans kept per machine (a flapping link stays bounded)
# The line's cut saves each machine's history under its own key, only when it
# changed: a commit (many a second) never re-encodes the whole line's hours.
MACHINE_KEY_PREFIX = "web/history/"
LEGACY_SNAPSHOT_KEY = "web/history"  # the whole line in one key (earlier releases)


@dataclass(frozen=True, slots=True)
class HourCounts:
    start: float  # the local hour's first instant (UTC epoch seconds)
    total: int
    good: int
    reject: int


class _Machine:
    __slots__ = ("hours", "roles", "spans", "unknown_since")

    def __init__(self) -> None:
        self.hours: dict[float, Tally] = {}
        self.roles = 0  # counter roles seen (derive_counts needs them)
        self.spans: list[tuple[float, float]] = []  # closed unknown spans
        self.unknown_since: float | None = None


class LineHistory:
    """Bus consumer: hourly piece counts and unknown spans per machine."""

    def __init__(self, machine_ids: Sequence[str], timezone: str) -> None:
        self._tz = ZoneInfo(timezone)
        self._machines = {m: _Machine() for m in machine_ids}
        self._changed: set[str] = set()  # machines changed since changed_snapshots()

    # -- events -------------------------------------------------------------------

    def consume(self, events: Sequence[object]) -> None:
        machines = self._machines
        for event in events:
            kind = type(event)
            if kind is PiecesCounted:
                assert isinstance(event, PiecesCounted)
                machine = machines.get(event.machine_id)
                if machine is None:
                    continue
                hour = self.hour_of(event.ts)
                tally = machine.hours.get(hour)
                if tally is None:
                    tally = machine.hours[hour] = Tally()
                    self._prune(machine, event.ts)
                self._changed.add(event.machine_id)
                role = ROLE_INDEX.get(event.role)
                if role is None:
                    tally.pieces[EXTERNAL_REJECT] += event.count
                else:
                    tally.pieces[role] += event.count
                    machine.roles |= 1 << role
            elif kind is StateChanged:
                assert isinstance(event, StateChanged)
                machine = machines.get(event.machine_id)
                if machine is None:
                    continue
                if event.state is MachineState.UNKNOWN:
                    if machine.unknown_since is None:
                        machine.unknown_since = event.ts
                        self._changed.add(event.machine_id)
                elif machine.unknown_since is not None:
                    if event.ts > machine.unknown_since:
                        machine.spans.append((machine.unknown_since, event.ts))
                        del machine.spans[:-MAX_SPANS]
                    machine.unknown_since = None
                    self._changed.add(event.machine_id)

    def hour_of(self, ts: float) -> float:
        local = datetime.fromtimestamp(ts, self._tz)
        return local.replace(minute=0, second=0, microsecond=0).timestamp()

    def _prune(self, machine: _Machine, now: float) -> None:
        horizon = now - RETAIN_S
        for hour in [h for h in machine.hours if h < horizon]:
            del machine.hours[hour]
        machine.spans = [s for s in machine.spans if s[1] >= horizon]

    # -- queries ------------------------------------------------------------------

    def hourly(self, machine_id: str, start: float, end: float) -> list[HourCounts]:
        """Pieces per local hour from ``start`` to ``end``, every hour listed (0 when none)."""
        machine = self._machines.get(machine_id)
        if machine is None or not end > start:
            return []
        hours: list[HourCounts] = []
        hour = self.hour_of(start)
        while hour < end:
            tally = machine.hours.get(hour)
            if tally is None:
                hours.append(HourCounts(hour, 0, 0, 0))
            else:
                total, good, reject, _ = derive_counts(tally, machine.roles)
                hours.append(HourCounts(hour, total, good, reject))
            # The next local hour (DST: an hour of 30 or 90 min in some zones is kept whole).
            hour = self.hour_of(hour + 3600.0 + 60.0)
        return hours

    def unknown_spans(self, machine_id: str, start: float, end: float) -> list[tuple[float, float]]:
        """Spans ``unknown`` inside ``[start, end]`` (the open one up to ``end``), oldest first."""
        machine = self._machines.get(machine_id)
        if machine is None:
            return []
        spans = list(machine.spans)
        if machine.unknown_since is not None:
            spans.append((machine.unknown_since, math.inf))
        return [(max(a, start), min(b, end)) for a, b in spans if b > start and a < end]

    # -- persistence --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every machine's history, by machine id."""
        return {machine_id: _machine_data(m) for machine_id, m in self._machines.items()}

    def changed_snapshots(self) -> dict[str, dict[str, Any]]:
        """The history of each machine changed since the last call, by machine id."""
        changed, self._changed = self._changed, set()
        return {m: _machine_data(self._machines[m]) for m in changed if m in self._machines}

    def touch_all(self) -> None:
        """Every machine counts as changed (to be saved again in full)."""
        self._changed.update(self._machines)

    def restore(self, data: object) -> None:
        """Continue from a snapshot; machines no longer configured are dropped."""
        if not isinstance(data, dict):
            return
        for machine_id, saved in data.items():
            self.restore_machine(machine_id, saved)

    def restore_machine(self, machine_id: str, saved: object) -> None:
        """Continue one machine from its snapshot; ignored when it is no longer configured."""
        machine = self._machines.get(machine_id)
        if machine is not None and isinstance(saved, dict):
            machine.hours = {float(h): Tally.from_data(t) for h, t in saved.get("hours", [])}
            machine.roles = int(saved.get("roles", 0))
            machine.spans = [(float(a), float(b)) for a, b in saved.get("spans", [])]
            since = saved.get("unknown_since")
            machine.unknown_since = None if since is None else float(since)


def _machine_data(m: _Machine) -> dict[str, Any]:
    return {
        "hours": [[hour, tally.to_data()] for hour, tally in m.hours.items()],
        "roles": m.roles,
        "spans": [list(span) for span in m.spans],
        "unknown_since": m.unknown_since,
    }
