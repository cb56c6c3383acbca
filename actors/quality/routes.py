"""Where a line's quality stations sit: which machine each judges, what reaches it (pure).

::

    routes = StationRoutes([StationRoute(params, own_plc=False), ...])
    routes.of_machines(["M1"])        # the stations judging M1's pieces
    routes.machine_of("Q1")           # where Q1's rejects go when it feeds them
    routes.route_samples(batch)       # a machine's samples -> (station id, message), in order
    routes.for_alarm("spc/Q1/weight/3"), routes.check("Q1")   # CommandError when unknown
    routes.inspection(...), routes.disposal(...)  # a command as (station id, message)

A station reads its results either over a plc_map of its own (``own_plc``:
the edge's PLC connection delivers them to it directly) or from its machine's
samples: then every sample of the machine whose signal the station reads is
passed on, and a change of the machine's PLC link too.

Rejects (the double-counting rule, docs/orders-and-quality.md): a station with
``feeds_machine_rejects`` adds its failed pieces to :meth:`machine_of` its
station; one without it only reports them, its machine's PLC counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from actors.commands import check_event_ts, check_order_id
from actors.errors import CommandError
from actors.messages import LinkChanged, Sample
from actors.quality.actor import Dispose, RecordInspection, StationMessage, StationSamples
from actors.quality.params import Disposition, StationParams

__all__ = ["StationRoute", "StationRoutes"]


@dataclass(frozen=True, slots=True)
class StationRoute:
    params: StationParams
    own_plc: bool = False  # read over a plc_map of its own, not from its machine's samples


class StationRoutes:
    """The line's quality stations, in config order."""

    def __init__(self, routes: Iterable[StationRoute] = ()) -> None:
        self._params: dict[str, StationParams] = {}
        self._of_machine: dict[str, list[str]] = {}
        # machine id -> the stations reading its samples, with the signals each reads
        self._readers: dict[str, list[tuple[str, frozenset[str]]]] = {}
        for route in routes:
            params = route.params
            self._params[params.station_id] = params
            self._of_machine.setdefault(params.machine_id, []).append(params.station_id)
            if not route.own_plc and params.signals:
                self._readers.setdefault(params.machine_id, []).append(
                    (params.station_id, params.signals)
                )

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._params)

    def params(self, station_id: str) -> StationParams:
        return self._params[station_id]

    def machine_of(self, station_id: str) -> str:
        return self._params[station_id].machine_id

    def of_machines(self, machine_ids: Iterable[str]) -> tuple[str, ...]:
        """The stations judging these machines' pieces, machine by machine."""
        return tuple(s for m in machine_ids for s in self._of_machine.get(m, ()))

    @property
    def read_machine_samples(self) -> bool:
        """Some station reads its results from its machine's samples."""
        return bool(self._readers)

    def check(self, station_id: object) -> str:
        if not isinstance(station_id, str) or station_id not in self._params:
            known = ", ".join(sorted(self._params)) or "none configured"
            raise CommandError(f"station_id {station_id!r}: no such station (known: {known})")
        return station_id

    def for_alarm(self, alarm_id: object) -> str:
        """The station that raised ``alarm_id`` (``spc/<station>/<characteristic>/<n>``)."""
        parts = alarm_id.split("/") if isinstance(alarm_id, str) else []
        if len(parts) == 4 and parts[0] == "spc" and parts[1] in self._params:
            return parts[1]
        raise CommandError(f"alarm_id {alarm_id!r}: no such alarm")

    def route_samples(
        self, batch: Iterable[Sample | LinkChanged]
    ) -> list[tuple[str, StationMessage]]:
        """The messages for stations reading machine samples, in the batch's order: each
        station's samples up to a link change, then the change, then the rest."""
        readers_of = self._readers
        out: list[tuple[str, StationMessage]] = []
        groups: dict[str, list[Sample]] = {}
        for item in batch:
            readers = readers_of.get(item.machine_id)
            if not readers:
                continue
            if isinstance(item, Sample):
                for station_id, signals in readers:
                    if item.signal in signals:
                        groups.setdefault(station_id, []).append(item)
                continue
            for station_id, _ in readers:
                samples = groups.pop(station_id, None)
                if samples:
                    out.append((station_id, StationSamples(tuple(samples))))
                out.append((station_id, item))
        for station_id, samples in groups.items():
            out.append((station_id, StationSamples(tuple(samples))))
        return out

    # -- commands ---------------------------------------------------------------------

    def inspection(
        self,
        station_id: object,
        *,
        passed: int,
        failed: int,
        measurements: object,
        disposition: Disposition | str | None,
        reason_code: str,
        ts: object,
        now: float,
    ) -> tuple[str, RecordInspection]:
        """A manual inspection entry; its counts are checked by the station's core."""
        station = self.check(station_id)
        if measurements is not None and not isinstance(measurements, Mapping):
            raise CommandError("measurements must map characteristic names to values")
        values: dict[str, list[float]] = {
            str(name): list(v) if isinstance(v, (list, tuple)) else [cast(float, v)]
            for name, v in cast(Mapping[object, Sequence[float]], measurements or {}).items()
        }
        at = check_event_ts(ts, now)
        return station, RecordInspection(passed, failed, at, disposition, reason_code, values)

    def disposal(
        self,
        station_id: object,
        *,
        count: int,
        disposition: Disposition | str,
        reason_code: str,
        order_id: str | None,
        ts: object,
        now: float,
    ) -> tuple[str, Dispose]:
        """Pending failures get a disposition; the station's core checks count and reason."""
        station = self.check(station_id)
        if order_id is not None:
            check_order_id(order_id)
        return station, Dispose(count, disposition, reason_code, check_event_ts(ts, now), order_id)
