"""Quality station objects (``<line>.QualityStations.<id>``, QualityStationType),
filled from the quality runtime's events: inspection results and SPC."""

from __future__ import annotations

from collections.abc import Mapping

from actors.quality.events import InspectionRecorded, SpcLimitsSet, SpcViolation
from edge.serve.opcua.address_space import VarHandle
from edge.serve.opcua.uaids import ua_time
from edge.serve.opcua.writer import LiveValueWriter

_SPC_FIGURES = {"mean": "Mean", "center": "Mean", "sigma": "StdDev", "cp": "Cp", "cpk": "Cpk"}


class StationView:
    def __init__(self, station_id: str, handles: Mapping[str, VarHandle], writer: LiveValueWriter):
        self.station_id = station_id
        self._handles = dict(handles)
        self._writer = writer
        self._inspected = self._passed = self._failed = 0

    def _stage(self, name: str, value: object, ts: float | None) -> None:
        handle = self._handles.get(name)
        if handle is not None:
            self._writer.stage(handle, value, ts)

    def reset_counts(self, ts: float | None) -> None:
        for name in ("InspectedCount", "PassCount", "FailCount"):
            self._stage(name, 0, ts)

    def on_event(self, event: object) -> None:
        if isinstance(event, InspectionRecorded):
            self._passed += event.passed
            self._failed += event.failed
            self._inspected += event.passed + event.failed
            result = "pass" if event.failed == 0 else f"fail ({event.disposition})"
            self._stage("LastResult", result, event.ts)
            self._stage("LastResultTime", ua_time(event.ts), event.ts)
            self._stage("InspectedCount", self._inspected, event.ts)
            self._stage("PassCount", self._passed, event.ts)
            self._stage("FailCount", self._failed, event.ts)
        elif isinstance(event, SpcViolation):
            self._stage("Spc.Characteristic", event.characteristic, event.ts)
            self._stage("Spc.LastViolation", f"rule {event.rule}: {event.description}", event.ts)
        elif isinstance(event, SpcLimitsSet):
            self._stage("Spc.Characteristic", event.characteristic, event.ts)
            for key, value in event.limits.items():
                name = _SPC_FIGURES.get(key.lower())
                if name is not None and isinstance(value, int | float):
                    self._stage(f"Spc.{name}", float(value), event.ts)
