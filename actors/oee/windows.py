"""Time and piece accumulators for one KPI window: a shift instance or an order's span.

The core splits time at every state change and calendar boundary, so each
segment it hands a window has one machine state and one calendar status:

``PRODUCTION``
    scheduled and not in a break: running time, ``unknown`` time (``comm_loss``)
    and each stop's time kept *by stop id* (its classification and reason can
    still change, see :mod:`actors.oee.stops`);
``BREAK``
    scheduled, inside a planned break: all of it is planned stop time, whatever
    the machine does;
``UNSCHEDULED``
    outside every shift (only order windows see it): no KPI accumulates there.

Pieces counted in production time are inside PPT, also while the machine is
stopped: a delta revealed during a stop was made before it (a stopped machine
makes nothing; the reading just came late), so even a planned stop's reading
keeps its pieces in PPT. Pieces counted in a break or unscheduled time go to
``outside`` — kept, so nothing is silently lost, but outside PPT and therefore
not in the window's ``total_count`` (OEE.md §6).
"""

from __future__ import annotations

from typing import Any

from actors.oee.counters import Tally
from actors.oee.stops import Stop

PRODUCTION = 0
BREAK = 1
UNSCHEDULED = 2

RUNNING = 0
STOPPED = 1
UNKNOWN = 2

SHIFT = "shift"
ORDER = "order"


class Slice:
    """One stop's share of one window."""

    __slots__ = ("other_s", "prod_s")

    def __init__(self) -> None:
        self.prod_s = 0.0  # inside production time (scheduled, no break)
        self.other_s = 0.0  # inside a break or unscheduled time

    def copy(self) -> Slice:
        twin = Slice()
        twin.prod_s, twin.other_s = self.prod_s, self.other_s
        return twin


class Window:
    __slots__ = (
        "break_s",
        "end",
        "key",
        "kind",
        "last",
        "length_s",
        "name",
        "outside",
        "perf_slack_s",
        "perf_warned",
        "prod",
        "run_s",
        "scheduled_s",
        "slices",
        "start",
        "track_refs",
        "unknown_s",
    )

    def __init__(self, kind: str, key: str, name: str, start: float) -> None:
        self.kind = kind
        self.key = key
        self.name = name
        self.start = start
        self.end: float | None = None  # set when the window closes
        self.last = start  # time is accounted up to here
        self.length_s = 0.0
        self.scheduled_s = 0.0
        self.break_s = 0.0
        self.run_s = 0.0  # running, production time
        self.unknown_s = 0.0  # unknown, production time: comm_loss
        self.slices: dict[int, Slice] = {}
        self.prod = Tally()
        self.outside = Tally()
        self.perf_warned = False
        # Ideal seconds of performance surplus that an unseen gap explains: the cycle in
        # progress when it ended, and pieces revealed here whose run time was credited
        # to an earlier window (core: time the edge did not see).
        self.perf_slack_s = 0.0
        self.track_refs = True  # False on what-if copies: they must not pin stops

    @property
    def closed(self) -> bool:
        return self.end is not None

    def slice_for(self, stop: Stop) -> Slice:
        piece = self.slices.get(stop.id)
        if piece is None:
            piece = self.slices[stop.id] = Slice()
            if self.track_refs:
                stop.refs += 1
        return piece

    def add_time(
        self, duration: float, until: float, status: int, state: int, stop: Stop | None
    ) -> None:
        self.length_s += duration
        self.last = until
        if status == PRODUCTION:
            self.scheduled_s += duration
            if state == RUNNING:
                self.run_s += duration
            elif state == UNKNOWN:
                self.unknown_s += duration
            elif stop is not None:
                self.slice_for(stop).prod_s += duration
            return
        if status == BREAK:
            self.scheduled_s += duration
            self.break_s += duration
        if state == STOPPED and stop is not None:
            self.slice_for(stop).other_s += duration

    def add_pieces(self, status: int, role: int, count: int, ideal: float) -> None:
        (self.prod if status == PRODUCTION else self.outside).add(role, count, ideal)

    def copy(self) -> Window:
        """A copy for what-if accounting (KPI queries); stops are shared, refs untouched."""
        twin = Window(self.kind, self.key, self.name, self.start)
        twin.end, twin.last = self.end, self.last
        twin.length_s, twin.scheduled_s, twin.break_s = (
            self.length_s,
            self.scheduled_s,
            self.break_s,
        )
        twin.run_s, twin.unknown_s = self.run_s, self.unknown_s
        twin.slices = {sid: piece.copy() for sid, piece in self.slices.items()}
        twin.prod, twin.outside = self.prod.copy(), self.outside.copy()
        twin.perf_warned = self.perf_warned
        twin.perf_slack_s = self.perf_slack_s
        twin.track_refs = False
        return twin

    def to_data(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "last": self.last,
            "length_s": self.length_s,
            "scheduled_s": self.scheduled_s,
            "break_s": self.break_s,
            "run_s": self.run_s,
            "unknown_s": self.unknown_s,
            "slices": [[sid, piece.prod_s, piece.other_s] for sid, piece in self.slices.items()],
            "prod": self.prod.to_data(),
            "outside": self.outside.to_data(),
            "perf_warned": self.perf_warned,
            "perf_slack_s": self.perf_slack_s,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Window:
        window = cls(str(data["kind"]), str(data["key"]), str(data["name"]), float(data["start"]))
        window.end = None if data["end"] is None else float(data["end"])
        window.last = float(data["last"])
        window.length_s = float(data["length_s"])
        window.scheduled_s = float(data["scheduled_s"])
        window.break_s = float(data["break_s"])
        window.run_s = float(data["run_s"])
        window.unknown_s = float(data["unknown_s"])
        for sid, prod_s, other_s in data["slices"]:
            piece = Slice()
            piece.prod_s, piece.other_s = float(prod_s), float(other_s)
            window.slices[int(sid)] = piece
        window.prod = Tally.from_data(data["prod"])
        window.outside = Tally.from_data(data["outside"])
        window.perf_warned = bool(data["perf_warned"])
        window.perf_slack_s = float(data.get("perf_slack_s", 0.0))  # absent before this release
        return window
