"""The simulated machine: deterministic in simulated time, exact counters, PackML states."""

from __future__ import annotations

import itertools
import math
import random

from edge.sources.simulator.model import (
    FAULT_CODES,
    PACKML_ABORTED,
    PACKML_EXECUTE,
    PACKML_HELD,
    PACKML_SUSPENDED,
    SimMachine,
    SimParams,
    SimTruth,
)


def machine(seed: int = 1, **params: float) -> SimMachine:
    base: dict[str, float] = {
        "ideal_cycle_s": 2.0,
        "micro_stops_per_hour": 30.0,
        "faults_per_hour": 3.0,
    }
    base.update(params)
    return SimMachine("M1", SimParams(**base), random.Random(seed))  # type: ignore[arg-type]


def test_the_event_sequence_does_not_depend_on_how_time_is_sliced() -> None:
    one_step, small_steps = machine(), machine()
    one_step.advance(4 * 3600.0)
    t = 0.0
    while t < 4 * 3600.0:
        t = min(t + 0.37, 4 * 3600.0)
        small_steps.advance(t)
    assert one_step.events == small_steps.events
    assert one_step.truth() == small_steps.truth()
    # with 33 stops/h over 4 h there are stops and resumes in the log
    assert len(one_step.events) > 20


def test_another_seed_gives_another_sequence() -> None:
    a, b = machine(seed=1), machine(seed=2)
    a.advance(3600.0)
    b.advance(3600.0)
    assert a.events != b.events


def test_without_stops_and_jitter_it_makes_one_piece_per_ideal_cycle() -> None:
    m = machine(micro_stops_per_hour=0.0, faults_per_hour=0.0, jitter=0.0, reject_ratio=0.0)
    m.advance(100.0)
    # pieces complete at 2, 4, ..., 100 s -> 50 pieces, all good
    truth = m.truth()
    assert (truth.total, truth.good, truth.reject) == (50, 50, 0)
    assert truth.running and truth.state == PACKML_EXECUTE


def test_cycle_time_is_never_faster_than_ideal() -> None:
    m = machine(micro_stops_per_hour=0.0, faults_per_hour=0.0, jitter=0.5)
    m.advance(1000.0)
    # cycles last 2..3 s -> between 1000/3 and 1000/2 pieces
    assert 1000.0 / 3.0 - 1 <= m.total <= 500


def test_counts_add_up_and_states_follow_packml() -> None:
    m = machine(reject_ratio=0.1)
    m.advance(8 * 3600.0)
    truth = m.truth()
    assert truth.total == truth.good + truth.reject
    assert truth.reject > 0
    states = {e.state for e in m.events}
    assert states <= {PACKML_EXECUTE, PACKML_SUSPENDED, PACKML_HELD, PACKML_ABORTED}
    assert PACKML_ABORTED in states
    for event in m.events:
        if event.state == PACKML_ABORTED:
            assert event.fault_code in FAULT_CODES
        else:
            assert event.fault_code == 0


def test_stop_durations_are_in_their_ranges() -> None:
    m = machine()
    m.advance(24 * 3600.0)
    events = m.events
    for stop, resume in itertools.pairwise(events):
        if stop.state == PACKML_EXECUTE:
            continue
        duration = resume.sim_time_s - stop.sim_time_s
        if stop.state == PACKML_ABORTED:
            assert 180.0 <= duration <= 1200.0
        else:
            assert 10.0 <= duration <= 100.0
        # no pieces are made while stopped
        assert resume.total == stop.total


def test_counter_readings_wrap_at_the_counter_width() -> None:
    truth = SimTruth("M1", 0.0, 10, 9, 1, True, 6, 0, counter_start=65530, counter_bits=16)
    # 65530 + 10 = 65540 -> 65540 - 65536 = 4
    assert truth.total_reading == 4
    # 65530 + 9 = 65539 -> 3 ; 65530 + 1 = 65531
    assert (truth.good_reading, truth.reject_reading) == (3, 65531)


def test_a_machine_with_no_stops_never_schedules_one() -> None:
    m = machine(micro_stops_per_hour=0.0, faults_per_hour=0.0)
    m.advance(10 * 3600.0)
    assert len(m.events) == 1  # the start
    assert not math.isinf(m.sim_time_s)
