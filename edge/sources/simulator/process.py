"""Plausible process values for whatever a plc_map lists besides the roles.

Driven by the machine's state, from the signal's name, type and min..max:

- bools: names with ``fault`` follow the fault state; names starting with
  ``motor``, ``heater`` or ``spindle`` follow running; all others are true
  unless the machine is faulted (a door opened, a guard tripped);
- ``*temperature*``: first-order lag (time constant 300 s) towards a hot level
  while running and 22 degC while stopped, plus noise;
- ``speed``/``*rate*``: the output rate in pieces per hour while running, 0 stopped;
  ``setpoint_*``: the ideal rate, constant;
- ``*energy*``/``*runtime*``: accumulate while running (never decrease);
- ``last_cycle_ms``: the last cycle's length;
- anything else: a slow sine around the middle of min..max while running, a
  low idle level while stopped, plus noise.

Every value is clamped into min..max and what its raw type can hold. The noise
is drawn per update, so unlike the machine's events it depends on when the
updates happen (wall-clock ticks); it is seeded, but not replayable.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from actors.messages import Value
from edge.config.plc_maps import DataType, SignalDef
from edge.sources.plc.codec import Raw, from_engineering
from edge.sources.simulator.model import PACKML_ABORTED, SimMachine

__all__ = ["ProcessModel"]

AMBIENT_C = 22.0
THERMAL_TIME_CONSTANT_S = 300.0


@dataclass(slots=True)
class _Channel:
    signal: SignalDef
    kind: str
    low: float
    high: float
    period_s: float
    phase: float
    level: float
    raw_low: int = 0
    raw_high: int = 0


def _kind(signal: SignalDef) -> str:
    name = signal.name.lower()
    if signal.data_type is DataType.BOOL:
        if "fault" in name:
            return "fault_bool"
        if name.startswith(("motor", "heater", "spindle_on")):
            return "running_bool"
        return "ok_bool"
    if "temperature" in name:
        return "temperature"
    if name.startswith("setpoint"):
        return "setpoint"
    if name == "speed" or "rate" in name:
        return "rate"
    if "energy" in name or "runtime" in name:
        return "accumulator"
    if name == "last_cycle_ms":
        return "cycle"
    return "wave"


def _raw_limits(signal: SignalDef) -> tuple[float, float]:
    """Engineering range the raw type can represent."""
    if not signal.data_type.is_integer:
        return -math.inf, math.inf
    low, high = signal.data_type.int_range
    a, b = low * signal.scale + signal.offset, high * signal.scale + signal.offset
    return min(a, b), max(a, b)


def _raw_bounds(signal: SignalDef, low: float, high: float) -> tuple[int, int]:
    """Integer raw values whose engineering value lies inside low..high."""
    if not signal.data_type.is_integer:
        return 0, 0
    type_low, type_high = signal.data_type.int_range
    if not (math.isfinite(low) and math.isfinite(high)):
        return type_low, type_high
    a = (low - signal.offset) / signal.scale
    b = (high - signal.offset) / signal.scale
    return max(type_low, math.ceil(min(a, b))), min(type_high, math.floor(max(a, b)))


class ProcessModel:
    """Process values of one machine; :meth:`update` returns raw values to write."""

    def __init__(
        self, signals: Sequence[SignalDef], machine: SimMachine, rng: random.Random
    ) -> None:
        self._machine = machine
        self._rng = rng
        self._channels: list[_Channel] = []
        self._last_update_s = 0.0
        for signal in signals:
            kind = _kind(signal)
            low, high = _raw_limits(signal)
            if signal.minimum is not None:
                low = max(low, signal.minimum)
            if signal.maximum is not None:
                high = min(high, signal.maximum)
            # Per-signal shape from the name, so machines differ only by their rng.
            digest = zlib.crc32(signal.name.encode())
            raw_low, raw_high = _raw_bounds(signal, low, high)
            self._channels.append(
                _Channel(
                    signal=signal,
                    kind=kind,
                    low=low,
                    high=high,
                    period_s=60.0 + digest % 540,
                    phase=(digest % 628) / 100.0,
                    level=AMBIENT_C if kind == "temperature" else 0.0,
                    raw_low=raw_low,
                    raw_high=raw_high,
                )
            )

    def update(self, sim_time_s: float) -> list[Raw]:
        """Raw values in the order of the signals given to the constructor."""
        machine = self._machine
        dt = max(0.0, sim_time_s - self._last_update_s)
        self._last_update_s = sim_time_s
        running = machine.running
        faulted = machine.state == PACKML_ABORTED
        ideal_rate = 3600.0 / machine.params.ideal_cycle_s
        out: list[Raw] = []
        for ch in self._channels:
            value: Value
            if ch.kind == "fault_bool":
                value = faulted
            elif ch.kind == "running_bool":
                value = running
            elif ch.kind == "ok_bool":
                value = not faulted
            else:
                value = self._number(ch, sim_time_s, dt, running, ideal_rate)
            out.append(self._raw(ch, value))
        return out

    def _number(self, ch: _Channel, t: float, dt: float, running: bool, ideal_rate: float) -> float:
        noise = self._rng.gauss(0.0, 1.0)
        finite_low = ch.low if math.isfinite(ch.low) else 0.0
        finite_high = ch.high if math.isfinite(ch.high) else finite_low + 1000.0
        span = max(finite_high - finite_low, 1e-9)
        if ch.kind == "temperature":
            hot = AMBIENT_C + 0.2 * max(finite_high - AMBIENT_C, 0.0)
            target = hot if running else AMBIENT_C
            ch.level += (target - ch.level) * (1.0 - math.exp(-dt / THERMAL_TIME_CONSTANT_S))
            return ch.level + 0.2 * noise
        if ch.kind == "setpoint":
            return ideal_rate
        if ch.kind == "rate":
            return ideal_rate * (0.97 + 0.01 * noise) if running else 0.0
        if ch.kind == "accumulator":
            per_hour = 10.0 if "energy" in ch.signal.name else 1.0
            if running:
                ch.level += per_hour * dt / 3600.0 * (1000.0 if ch.signal.unit == "Wh" else 1.0)
            return ch.level
        if ch.kind == "cycle":
            return self._machine.last_cycle_s * 1000.0
        mid = finite_low + span / 2.0
        if not running:
            return finite_low + 0.1 * span + 0.005 * span * noise
        wave = math.sin(2.0 * math.pi * t / ch.period_s + ch.phase)
        return mid + 0.2 * span * wave + 0.01 * span * noise

    @staticmethod
    def _raw(ch: _Channel, value: Value) -> Raw:
        if isinstance(value, float):
            value = min(max(value, ch.low), ch.high)
        raw = from_engineering(ch.signal, value)
        if isinstance(raw, int) and not isinstance(raw, bool):
            # Rounding may step just outside the range; the raw bounds are exact.
            raw = min(max(raw, ch.raw_low), ch.raw_high)
        return raw
