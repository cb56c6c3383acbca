"""MachineActor: the OEE core behind a mailbox, under a real supervisor."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import time
from typing import Any

import pytest

from actors.actor import OverflowPolicy, start_actor
from actors.machine import (
    GetShiftStops,
    GetSnapshot,
    GetStatus,
    MachineActor,
    MachineStatus,
    SampleBatch,
    SetOrder,
    SetStopReason,
    Tick,
)
from actors.messages import LinkChanged, Sample
from actors.oee.calendar import ShiftCalendar
from actors.oee.events import DomainEvent, PiecesCounted, StateChanged, StopEnded
from actors.oee.params import CalendarDef, MachineParams, ShiftDef
from actors.oee.state import MachineState
from actors.supervisor import ChildSpec, Supervisor
from edge.errors import CommandError
from tests.unit.actors_runtime.helpers import eventually

T0 = 1_755_820_800.0  # 2025-08-22T00:00:00Z, start of the 24 h "All" shift
PARAMS = MachineParams(machine_id="M1", ideal_cycle_s=1.0)


def calendar() -> ShiftCalendar:
    return ShiftCalendar(CalendarDef("UTC", (ShiftDef("All", time(0), time(0)),)))


class Recorder:
    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def __call__(self, events: Sequence[DomainEvent]) -> None:
        self.events.extend(events)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def s(signal: str, value: object, at: float) -> Sample:
    return Sample("M1", signal, value, T0 + at)  # type: ignore[arg-type]


async def status(ref: Any, at: float) -> MachineStatus:
    result: MachineStatus = await ref.ask(GetStatus(T0 + at))
    return result


async def test_samples_become_events_and_kpis() -> None:
    recorder = Recorder()
    ref = await start_actor(MachineActor(PARAMS, calendar(), recorder), name="M1")
    await ref.tell(SampleBatch((s("running", True, 0), s("total_count", 100, 0))))
    await ref.tell(SampleBatch((s("total_count", 160, 60),)))  # +60 pieces
    await ref.tell(s("running", False, 60))
    await ref.tell(s("running", True, 90))  # a 30 s micro-stop
    st = await status(ref, 120)
    await ref.stop()

    assert [e.state for e in recorder.of(StateChanged)] == [
        MachineState.RUNNING,
        MachineState.STOPPED,
        MachineState.RUNNING,
    ]
    assert sum(e.count for e in recorder.of(PiecesCounted) if e.role == "total_count") == 60
    [stop] = recorder.of(StopEnded)
    assert stop.duration_s == 30.0 and stop.micro
    assert st.state is MachineState.RUNNING and st.counters["total_count"] == 160
    assert st.current_shift is not None
    # 120 s scheduled from the first sample; the micro-stop stays in run time.
    assert st.current_shift.total_count == 60 and st.current_shift.run_s == 120.0


async def test_order_kpis_follow_set_order() -> None:
    ref = await start_actor(MachineActor(PARAMS, calendar(), Recorder()), name="M1")
    await ref.tell(SampleBatch((s("running", True, 0), s("total_count", 0, 0))))
    await ref.tell(s("total_count", 10, 10))  # 10 pieces before the order
    await ref.tell(SetOrder("WO-1", 0.5, T0 + 10))
    await ref.tell(s("total_count", 30, 20))  # 20 pieces for WO-1
    st = await status(ref, 20)
    await ref.stop()
    assert st.current_order_id == "WO-1"
    assert st.current_order is not None and st.current_order.total_count == 20
    # Performance uses the order's ideal cycle (OEE.md §6): 20 x 0.5 s / 10 s run.
    assert st.current_order.performance == pytest.approx(1.0)
    assert st.current_shift is not None and st.current_shift.total_count == 30


async def test_a_refused_ask_goes_back_to_the_caller_and_the_actor_keeps_running() -> None:
    ref = await start_actor(MachineActor(PARAMS, calendar(), Recorder()), name="M1")
    await ref.tell(s("running", True, 0))
    with pytest.raises(CommandError, match="reason must be a non-empty name"):
        await ref.ask(SetStopReason("  "))
    with pytest.raises(TypeError, match="cannot handle str"):
        await ref.ask("nonsense")
    assert (await status(ref, 1)).state is MachineState.RUNNING
    await ref.stop()


async def test_crash_restarts_from_the_snapshot_without_losing_or_doubling_pieces() -> None:
    recorder = Recorder()
    spec: ChildSpec[Any, Any] = ChildSpec(
        id="M1",
        factory=lambda: MachineActor(PARAMS, calendar(), recorder),
        overflow=OverflowPolicy.COALESCE,
        snapshot_every_messages=1,
    )
    async with Supervisor(name="line", restart_backoff_s=0.0) as supervisor:
        ref = await supervisor.add_child(spec)
        await ref.tell(SampleBatch((s("running", True, 0), s("total_count", 500, 0))))
        await ref.tell(s("total_count", 520, 100))  # +20
        await ref.tell("poison")  # a tell that crashes the actor
        await ref.tell(s("total_count", 550, 200))  # +30, handled by the new instance
        for _ in range(100):
            if ref.statistics().restarts:
                break
            await asyncio.sleep(0.01)
        st = await status(ref, 200)
        assert ref.statistics().restarts == 1
    shift = st.current_shift
    assert shift is not None
    # 20 + 30 pieces: the restored baseline is the last reading before the crash.
    assert shift.total_count == 50
    assert st.counters["total_count"] == 550
    # After a restore the edge did not watch the PLC from the snapshot's event
    # time (100 s) until the next sample (200 s): 100 s unknown. The 30 pieces
    # revealed at 200 s took at least 30 x 1 s of it, so 170-200 is run time and
    # 100-170 (70 s) stays comm_loss (OEE.md §5, time the edge did not see).
    assert shift.downtime_by_reason == {"comm_loss": pytest.approx(70.0)}
    assert shift.run_s == pytest.approx(130.0)


def _line_spec(recorder: Recorder) -> ChildSpec[Any, Any]:
    # As the line runs its machines: a snapshot every second, not after every message.
    return ChildSpec(
        id="M1",
        factory=lambda: MachineActor(PARAMS, calendar(), recorder),
        overflow=OverflowPolicy.COALESCE,
    )


async def test_a_crash_restart_counts_no_piece_twice_that_was_published_after_the_snapshot() -> (
    None
):
    recorder = Recorder()
    async with Supervisor(name="line", restart_backoff_s=0.0) as supervisor:
        ref = await supervisor.add_child(_line_spec(recorder))
        await ref.tell(SampleBatch((s("running", True, 0), s("total_count", 500, 0))))
        await status(ref, 0)
        assert ref.cut() is not None  # the state writer's cut: the last snapshot
        await ref.tell(s("total_count", 520, 100))  # +20, published after that snapshot
        await ref.tell(SetOrder("WO-1", 1.0, T0 + 110))
        await status(ref, 110)  # an ask among the replayed messages changes nothing
        await ref.tell("poison")  # a tell that crashes the actor
        await ref.tell(s("total_count", 550, 200))  # +30, handled by the new instance
        await eventually(lambda: ref.statistics().restarts == 1, timeout_s=5.0)
        st = await status(ref, 200)
    # Every piece the PLC counted is published once: 20 before the crash, 30 after.
    assert sum(e.count for e in recorder.of(PiecesCounted) if e.role == "total_count") == 50
    assert st.counters["total_count"] == 550
    assert st.current_order_id == "WO-1"  # the command handled after the snapshot
    assert st.current_shift is not None and st.current_shift.total_count == 50


async def test_a_cut_during_a_restart_saves_what_the_crashed_instance_had_published() -> None:
    recorder = Recorder()
    async with Supervisor(name="line", restart_backoff_s=0.5) as supervisor:
        ref = await supervisor.add_child(_line_spec(recorder))
        await ref.tell(SampleBatch((s("running", True, 0), s("total_count", 500, 0))))
        await status(ref, 0)
        assert ref.cut() is not None
        await ref.tell(s("total_count", 520, 100))
        await ref.tell("poison")
        # The restart waits out its backoff; the state writer commits meanwhile.
        await eventually(lambda: ref.statistics().failures == 1, timeout_s=5.0)
        cut = ref.cut()
        assert cut is not None
    saved = MachineActor(PARAMS, calendar(), Recorder(), cut.snapshot)  # type: ignore[arg-type]
    assert saved.status(T0 + 100).counters["total_count"] == 520
    assert sum(e.count for e in recorder.of(PiecesCounted) if e.role == "total_count") == 20


async def test_process_restart_from_a_persisted_snapshot_continues_the_shift() -> None:
    first = await start_actor(MachineActor(PARAMS, calendar(), Recorder()), name="M1")
    await first.tell(SampleBatch((s("running", True, 0), s("total_count", 7, 0))))
    await first.tell(s("total_count", 47, 60))  # +40
    snapshot = await first.ask(GetSnapshot())
    await first.stop()

    second = await start_actor(MachineActor(PARAMS, calendar(), Recorder(), snapshot), name="M1")
    # The PLC source announces the link when it connects after the restart and
    # delivers the full value set with it.
    await second.tell(LinkChanged("M1", True, T0 + 90))
    await second.tell(SampleBatch((s("running", True, 90), s("total_count", 67, 90))))  # +20
    await second.tell(Tick(T0 + 120))
    st = await status(second, 120)
    await second.stop()
    assert st.current_shift is not None
    assert st.current_shift.total_count == 60
    # Unknown from the snapshot (60 s) to the first sample after the restart (90 s):
    # 30 s. The 20 pieces revealed there ran at least 20 s of it: comm_loss 10 s.
    assert st.current_shift.downtime_by_reason == {"comm_loss": pytest.approx(10.0)}
    assert st.current_shift.run_s == pytest.approx(110.0)


async def test_status_asks_alone_leave_nothing_to_save() -> None:
    # The OPC UA server asks every machine for its status every second: on a line
    # that makes nothing, that must not write every machine's state every second.
    ref = await start_actor(MachineActor(PARAMS, calendar(), Recorder()), name="M1")
    await ref.tell(SampleBatch((s("running", True, 0), s("total_count", 5, 0))))
    await status(ref, 0)  # the batch handled before the cut
    first = ref.cut()
    assert first is not None
    for at in range(1, 11):
        assert (await status(ref, at)).counters["total_count"] == 5
    assert ref.cut() is None, "only status asks since the last cut"
    await ref.tell(s("total_count", 6, 11))
    assert (await status(ref, 11)).counters["total_count"] == 6
    cut = ref.cut()
    assert cut is not None and cut.snapshot != first.snapshot, "a piece after the asks is saved"
    await ref.stop()


async def test_a_status_query_answers_what_an_ask_answers() -> None:
    # The OPC UA server answers a Read of a status nobody watches with a query.
    ref = await start_actor(MachineActor(PARAMS, calendar(), Recorder()), name="M1")
    await ref.tell(SampleBatch((s("running", True, 0), s("total_count", 5, 0))))
    await ref.tell(s("total_count", 9, 20))  # 4 pieces in 20 s of running
    asked = await status(ref, 30)
    answered = ref.query(GetStatus(T0 + 30))
    assert answered == asked
    assert answered.counters["total_count"] == 9
    assert answered.current_shift is not None and answered.current_shift.total_count == 4
    stops = ref.query(GetShiftStops(T0 + 30))
    assert stops == await ref.ask(GetShiftStops(T0 + 30))
    await ref.stop()
