"""Supervisor lifecycle: start order with readiness, reverse stop, timeouts, escalation."""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import pytest

from actors.actor import ActorState
from actors.supervisor import ChildSpec, RestartPolicy, Supervisor, SupervisorState
from edge.errors import ActorError, EscalationError
from tests.unit.actors_runtime.helpers import Boom, Get, Message, Put, Recorder, eventually


class SlowStarter(Recorder):
    """Takes several event-loop turns to become ready, so overlap would show."""

    async def on_start(self) -> None:
        self.log.append(("start", self.label))
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        self.log.append(("ready", self.label))


class HangsOnStop(Recorder):
    cancelled = False

    async def on_stop(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def child(
    child_id: str,
    log: list[tuple[str, object]],
    restart: RestartPolicy = RestartPolicy.PERMANENT,
) -> ChildSpec[Message, object]:
    return ChildSpec(child_id, lambda: Recorder(log, child_id), restart=restart)


def state_of(supervisor: Supervisor) -> SupervisorState:
    """Read the state afresh (keeps mypy from narrowing it across awaits)."""
    return supervisor.state


async def test_children_start_in_order_each_after_the_previous_is_ready() -> None:
    log: list[tuple[str, object]] = []
    specs = [ChildSpec(i, partial(SlowStarter, log, i)) for i in ("a", "b", "c")]
    async with Supervisor(specs):
        assert log == [
            ("start", "a"),
            ("ready", "a"),
            ("start", "b"),
            ("ready", "b"),
            ("start", "c"),
            ("ready", "c"),
        ]


async def test_children_stop_in_reverse_start_order() -> None:
    log: list[tuple[str, object]] = []
    async with Supervisor([child(i, log) for i in ("a", "b", "c")]) as supervisor:
        await supervisor.ref("a").tell(Put(1))
        late = await supervisor.add_child(child("d", log))
        await late.tell(Put(2))
        await supervisor.ref("a").ask(Get())
        await late.ask(Get())
        log.clear()
    assert log == [
        ("on_stop", ("d", (2,))),
        ("on_stop", ("c", ())),
        ("on_stop", ("b", ())),
        ("on_stop", ("a", (1,))),
    ]
    assert supervisor.state is SupervisorState.STOPPED


async def test_a_child_hanging_in_on_stop_is_cancelled_after_its_shutdown_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    log: list[tuple[str, object]] = []
    hanging = HangsOnStop(log, "hang")
    specs: list[ChildSpec[Message, object]] = [
        child("first", log),
        ChildSpec("hang", lambda: hanging, shutdown_timeout_s=0.05),
    ]
    supervisor = Supervisor(specs)
    async with supervisor:
        pass
    assert hanging.cancelled
    # The supervisor went on to stop the child started before it.
    assert log[-1] == ("on_stop", ("first", ()))
    assert "actor hang did not stop within 0.05 s; cancelling it" in caplog.messages


async def test_exceeding_the_restart_intensity_stops_everything_and_escalates() -> None:
    log: list[tuple[str, object]] = []
    specs = [child("steady", log), child("crashy", log)]
    supervisor = Supervisor(specs, name="line", max_restarts=2, within_s=30, restart_backoff_s=0)
    with pytest.raises(EscalationError, match="line") as info:
        async with supervisor:
            steady, crashy = supervisor.ref("steady"), supervisor.ref("crashy")
            # Crash 1 and 2 are restarted (2 in 30 s allowed); crash 3 exceeds it.
            for n in range(3):
                crashy.tell_nowait(Boom(ValueError(f"crash {n}")))
            await asyncio.wait_for(supervisor.wait(), 2)
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "crash 2"
    assert supervisor.state is SupervisorState.FAILED
    assert steady.state is ActorState.STOPPED
    assert ("on_stop", ("steady", ())) in log
    assert crashy.state is ActorState.FAILED
    assert crashy.statistics().restarts == 2


async def test_leaving_the_block_raises_an_escalation_nobody_waited_for() -> None:
    supervisor = Supervisor([child("c", [])], max_restarts=0)
    with pytest.raises(EscalationError):
        async with supervisor:
            await supervisor.ref("c").tell(Boom(ValueError("x")))
            await eventually(lambda: supervisor.state is SupervisorState.FAILED)
    with pytest.raises(EscalationError):
        await supervisor.wait()


async def test_restarts_older_than_the_window_do_not_count() -> None:
    now = [0.0]
    supervisor = Supervisor(
        [child("c", [])], max_restarts=1, within_s=10, restart_backoff_s=0, clock=lambda: now[0]
    )
    async with supervisor:
        ref = supervisor.ref("c")
        await ref.tell(Boom(ValueError("at 0")))
        await eventually(lambda: ref.statistics().restarts == 1)
        now[0] = 10.5  # the restart at 0 is out of the 10 s window
        await ref.tell(Boom(ValueError("at 10.5")))
        await eventually(lambda: ref.statistics().restarts == 2)
        assert supervisor.state is SupervisorState.RUNNING
        now[0] = 11.0  # the restart at 10.5 still counts: this is the second in 10 s
        await ref.tell(Boom(ValueError("at 11")))
        with pytest.raises(EscalationError, match="at 11"):
            await asyncio.wait_for(supervisor.wait(), 2)
    # wait() delivered it, so leaving the block did not raise it a second time.
    assert state_of(supervisor) is SupervisorState.FAILED


async def test_statistics_list_children_in_start_order_with_their_restarts() -> None:
    log: list[tuple[str, object]] = []
    async with Supervisor([child("a", log), child("b", log)], restart_backoff_s=0) as supervisor:
        await supervisor.ref("b").tell(Boom(ValueError("x")))
        await eventually(lambda: supervisor.ref("b").statistics().restarts == 1)
        await supervisor.ref("a").tell(Put(1))
        await supervisor.ref("a").ask(Get())
        a, b = supervisor.statistics()
        assert (a.name, a.messages_handled, a.restarts) == ("a", 2, 0)
        assert (b.name, b.restarts, b.failures) == ("b", 1, 1)
        assert b.last_failure == "ValueError('x')"


async def test_a_child_failing_to_start_fails_the_supervisor_start() -> None:
    class Broken(Recorder):
        async def on_start(self) -> None:
            raise OSError("no such device")

    log: list[tuple[str, object]] = []
    supervisor = Supervisor([child("a", log), ChildSpec("b", Broken), child("c", log)])
    with pytest.raises(OSError, match="no such device"):
        async with supervisor:
            pytest.fail("the body must not run")
    assert log == [("on_start", "a"), ("on_stop", ("a", ()))]  # c never started
    assert supervisor.state is SupervisorState.FAILED


async def test_a_supervisor_refuses_reuse_after_close() -> None:
    supervisor = Supervisor([child("a", [])])
    async with supervisor:
        with pytest.raises(ValueError, match="already has a child 'a'"):
            await supervisor.add_child(child("a", []))
    with pytest.raises(ActorError, match="runs once"):
        async with supervisor:
            pass
    with pytest.raises(ActorError, match="cannot add child"):
        await supervisor.add_child(child("b", []))


async def test_a_transient_child_that_finished_frees_its_id() -> None:
    log: list[tuple[str, object]] = []
    async with Supervisor(restart_backoff_s=0) as supervisor:
        order = await supervisor.add_child(child("order-1", log, restart=RestartPolicy.TRANSIENT))
        await order.stop()
        assert supervisor.child_ids() == ()
        again = await supervisor.add_child(child("order-1", log, restart=RestartPolicy.TRANSIENT))
        assert again is not order
        assert again.is_alive


def test_specs_and_supervisors_reject_bad_options() -> None:
    with pytest.raises(ValueError, match=r"'m1'.*mailbox_capacity"):
        ChildSpec("m1", Recorder, mailbox_capacity=0)
    with pytest.raises(ValueError, match="snapshot_every_s"):
        ChildSpec("m1", Recorder, snapshot_every_s=0)
    with pytest.raises(ValueError, match="duplicate child ids"):
        Supervisor([ChildSpec("x", Recorder), ChildSpec("x", Recorder)])
