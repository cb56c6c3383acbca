"""One simulated machine as a discrete-event model in simulated seconds.

Pure and synchronous: :meth:`SimMachine.advance` moves the machine to a
simulated instant, processing every event up to it in order. Given the same
seed, machine id and parameters, the sequence of events (pieces, rejects,
stops, faults, their instants and durations) is identical however the
simulated time is sliced into ticks, because random draws happen only at
events, in event order, from the machine's own ``random.Random``.

Behaviour:

- Running, a piece completes every ``ideal_cycle_s * (1 + jitter * U[0, 1))``
  seconds (never faster than ideal, so performance stays <= 1). Each piece is
  a reject with probability ``reject_ratio``.
- While running, stops arrive as a Poisson process at
  ``micro_stops_per_hour + faults_per_hour`` per running hour. A stop
  interrupts the piece in progress (it restarts after the stop).
- A micro-stop lasts U[10, 100] s; its PackML state is 5 Suspended or 11 Held
  (even odds), fault code 0.
- A fault lasts U[180, 1200] s; PackML state 9 Aborted with a fault code from
  :data:`FAULT_CODES`.
- Counters are unsigned of ``counter_bits`` and start at ``counter_start``;
  the register value is ``(counter_start + count) mod 2**counter_bits``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "FAULT_CODES",
    "PACKML_ABORTED",
    "PACKML_EXECUTE",
    "PACKML_HELD",
    "PACKML_SUSPENDED",
    "SimEvent",
    "SimMachine",
    "SimParams",
    "SimTruth",
]

PACKML_SUSPENDED = 5
PACKML_EXECUTE = 6
PACKML_ABORTED = 9
PACKML_HELD = 11
FAULT_CODES = (11, 17, 23, 42, 57)
MICRO_STOP_RANGE_S = (10.0, 100.0)
FAULT_RANGE_S = (180.0, 1200.0)
EVENT_LOG_SIZE = 1000


class Phase(Enum):
    RUNNING = "running"
    MICRO_STOP = "micro_stop"
    FAULT = "fault"


@dataclass(frozen=True, slots=True)
class SimParams:
    ideal_cycle_s: float
    jitter: float = 0.1
    micro_stops_per_hour: float = 20.0
    faults_per_hour: float = 2.0
    reject_ratio: float = 0.02
    counter_start: int = 0
    counter_bits: int = 32


@dataclass(frozen=True, slots=True)
class SimEvent:
    """A state change of a simulated machine, with the counts at that instant."""

    sim_time_s: float
    state: int  # PackML state code after the change
    fault_code: int
    total: int
    good: int
    reject: int


@dataclass(frozen=True, slots=True)
class SimTruth:
    """What a simulated machine has really done up to ``sim_time_s``."""

    machine_id: str
    sim_time_s: float
    total: int  # pieces produced since the simulation started
    good: int
    reject: int
    running: bool
    state: int
    fault_code: int
    counter_start: int
    counter_bits: int

    def reading(self, count: int) -> int:
        """The PLC register value for a count: wraps at the counter width."""
        return (self.counter_start + count) % (1 << self.counter_bits)

    @property
    def total_reading(self) -> int:
        return self.reading(self.total)

    @property
    def good_reading(self) -> int:
        return self.reading(self.good)

    @property
    def reject_reading(self) -> int:
        return self.reading(self.reject)


class SimMachine:
    def __init__(self, machine_id: str, params: SimParams, rng: random.Random) -> None:
        if params.ideal_cycle_s <= 0:
            raise ValueError(f"{machine_id}: ideal_cycle_s must be > 0")
        self.machine_id = machine_id
        self.params = params
        self._rng = rng
        self._stop_rate_per_s = (params.micro_stops_per_hour + params.faults_per_hour) / 3600.0
        self._fault_share = (
            params.faults_per_hour / (params.micro_stops_per_hour + params.faults_per_hour)
            if self._stop_rate_per_s > 0
            else 0.0
        )
        self.sim_time_s = 0.0
        self.total = self.good = self.reject = 0
        self.phase = Phase.RUNNING
        self.state = PACKML_EXECUTE
        self.fault_code = 0
        self.last_cycle_s = params.ideal_cycle_s
        self._cycle_started = 0.0
        self._next_piece_at = self._draw_cycle(0.0)
        self._next_stop_at = self._draw_stop(0.0)
        self._stop_ends_at = math.inf
        self._events: deque[SimEvent] = deque(maxlen=EVENT_LOG_SIZE)
        self._log_event()

    @property
    def running(self) -> bool:
        return self.phase is Phase.RUNNING

    @property
    def events(self) -> tuple[SimEvent, ...]:
        return tuple(self._events)

    def truth(self) -> SimTruth:
        return SimTruth(
            machine_id=self.machine_id,
            sim_time_s=self.sim_time_s,
            total=self.total,
            good=self.good,
            reject=self.reject,
            running=self.running,
            state=self.state,
            fault_code=self.fault_code,
            counter_start=self.params.counter_start,
            counter_bits=self.params.counter_bits,
        )

    def advance(self, to_s: float) -> bool:
        """Process every event up to ``to_s``; True when a count or the state changed."""
        changed = False
        while True:
            if self.phase is Phase.RUNNING:
                if self._next_piece_at <= self._next_stop_at:
                    if self._next_piece_at > to_s:
                        break
                    self._complete_piece(self._next_piece_at)
                else:
                    if self._next_stop_at > to_s:
                        break
                    self._start_stop(self._next_stop_at)
            else:
                if self._stop_ends_at > to_s:
                    break
                self._resume(self._stop_ends_at)
            changed = True
        self.sim_time_s = max(self.sim_time_s, to_s)
        return changed

    # -- events

    def _draw_cycle(self, start: float) -> float:
        self._cycle_started = start
        return start + self.params.ideal_cycle_s * (1.0 + self.params.jitter * self._rng.random())

    def _draw_stop(self, start: float) -> float:
        if self._stop_rate_per_s <= 0:
            return math.inf
        return start + self._rng.expovariate(self._stop_rate_per_s)

    def _complete_piece(self, at: float) -> None:
        self.sim_time_s = at
        self.total += 1
        if self._rng.random() < self.params.reject_ratio:
            self.reject += 1
        else:
            self.good += 1
        self.last_cycle_s = at - self._cycle_started
        self._next_piece_at = self._draw_cycle(at)

    def _start_stop(self, at: float) -> None:
        self.sim_time_s = at
        if self._rng.random() < self._fault_share:
            self.phase = Phase.FAULT
            self.state = PACKML_ABORTED
            self.fault_code = self._rng.choice(FAULT_CODES)
            self._stop_ends_at = at + self._rng.uniform(*FAULT_RANGE_S)
        else:
            self.phase = Phase.MICRO_STOP
            self.state = PACKML_SUSPENDED if self._rng.random() < 0.5 else PACKML_HELD
            self.fault_code = 0
            self._stop_ends_at = at + self._rng.uniform(*MICRO_STOP_RANGE_S)
        self._log_event()

    def _resume(self, at: float) -> None:
        self.sim_time_s = at
        self.phase = Phase.RUNNING
        self.state = PACKML_EXECUTE
        self.fault_code = 0
        self._stop_ends_at = math.inf
        self._next_piece_at = self._draw_cycle(at)
        self._next_stop_at = self._draw_stop(at)
        self._log_event()

    def _log_event(self) -> None:
        self._events.append(
            SimEvent(
                sim_time_s=self.sim_time_s,
                state=self.state,
                fault_code=self.fault_code,
                total=self.total,
                good=self.good,
                reject=self.reject,
            )
        )
