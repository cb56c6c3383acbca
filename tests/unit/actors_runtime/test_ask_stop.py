"""ask/tell semantics, stop as a message, and what happens to waiting callers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from actors.actor import Actor, ActorState, start_actor
from edge.errors import ActorError, ActorStoppedError, AskTimeoutError, MailboxFullError
from tests.unit.actors_runtime.helpers import Boom, Get, Hold, Put, Recorder, settle


async def test_ask_returns_the_reply() -> None:
    ref = await start_actor(Recorder())
    await ref.tell(Put("x"))
    assert await ref.ask(Get()) == ("x",)
    await ref.stop()


async def test_an_error_while_handling_an_ask_goes_to_the_caller_and_the_actor_lives_on() -> None:
    actor = Recorder()
    ref = await start_actor(actor)
    await ref.tell(Put(1))
    with pytest.raises(ValueError, match="bad request"):
        await ref.ask(Boom(ValueError("bad request")))
    await ref.tell(Put(2))
    assert await ref.ask(Get()) == (1, 2)
    stats = ref.statistics()
    assert stats.state is ActorState.RUNNING
    assert (stats.failures, stats.restarts) == (0, 0)
    assert actor.failures == []  # on_failure is for crashes, not for an asker's error
    await ref.stop()


async def test_ask_timeout_names_actor_message_and_timeout() -> None:
    ref = await start_actor(Recorder(), name="slowpoke")
    gate = asyncio.Event()
    await ref.tell(Hold(gate))
    with pytest.raises(AskTimeoutError) as info:
        await ref.ask(Get(), timeout=0.05)
    text = str(info.value)
    assert "slowpoke" in text
    assert "Get" in text
    assert "0.05" in text
    assert isinstance(info.value, TimeoutError)
    gate.set()
    # The actor still works; the abandoned ask was handled without harm.
    await ref.tell(Put(1))
    assert await ref.ask(Get()) == (1,)
    await ref.stop()


async def test_a_timeout_error_raised_by_the_handler_is_not_an_ask_timeout() -> None:
    ref = await start_actor(Recorder())
    with pytest.raises(TimeoutError) as info:
        await ref.ask(Boom(TimeoutError("upstream timed out")), timeout=5)
    assert not isinstance(info.value, AskTimeoutError)
    await ref.stop()


async def test_stop_is_a_message_behind_everything_told_before_it() -> None:
    log: list[tuple[str, object]] = []
    ref = await start_actor(Recorder(log, label="r"))
    for i in range(3):
        ref.tell_nowait(Put(i))
    await ref.stop()
    # on_stop saw all three: they were handled before the stop message.
    assert log == [("on_start", "r"), ("on_stop", ("r", (0, 1, 2)))]
    assert ref.state is ActorState.STOPPED
    assert not ref.is_alive
    with pytest.raises(ActorStoppedError, match="stopped"):
        await ref.tell(Put(3))
    with pytest.raises(ActorStoppedError):
        ref.tell_nowait(Put(3))
    with pytest.raises(ActorStoppedError):
        await ref.ask(Get())
    await ref.stop()  # stopping again is harmless


async def test_messages_after_a_stop_request_are_refused_while_earlier_ones_finish() -> None:
    ref = await start_actor(Recorder())
    gate = asyncio.Event()
    hold = Hold(gate)
    await ref.tell(hold)
    await hold.entered.wait()
    await ref.tell(Put("before"))
    stopping = asyncio.create_task(ref.stop())
    await settle()
    assert ref.is_alive
    with pytest.raises(ActorStoppedError, match="stopping"):
        await ref.tell(Put("after"))
    gate.set()
    await asyncio.wait_for(stopping, 2)
    assert ref.statistics().messages_handled == 2  # Hold and "before"


async def test_pending_asks_fail_when_the_actor_dies() -> None:
    actor = Recorder()
    ref = await start_actor(actor, name="fragile")
    gate = asyncio.Event()
    await ref.tell(Hold(gate))
    error = ValueError("poison")
    await ref.tell(Boom(error))
    asks = [asyncio.create_task(ref.ask(Get())) for _ in range(2)]
    await settle()
    gate.set()
    for ask in asks:
        with pytest.raises(ActorStoppedError, match="fragile"):
            await asyncio.wait_for(ask, 2)
    assert actor.failures == [error]
    stats = ref.statistics()
    assert stats.state is ActorState.FAILED
    assert stats.failures == 1
    assert stats.last_failure == repr(error)
    with pytest.raises(ActorStoppedError, match="died"):
        await ref.tell(Put(1))


async def test_a_stop_that_times_out_cancels_the_actor_and_fails_pending_asks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    ref = await start_actor(Recorder(), name="stuck")
    await ref.tell(Hold(asyncio.Event()))  # never released
    ask = asyncio.create_task(ref.ask(Get(), timeout=None))
    await settle()
    await asyncio.wait_for(ref.stop(timeout=0.05), 2)
    with pytest.raises(ActorStoppedError, match="stuck"):
        await ask
    assert ref.state is ActorState.STOPPED
    assert "actor stuck did not stop within 0.05 s; cancelling it" in caplog.messages


async def test_an_actor_instance_cannot_be_started_twice() -> None:
    actor = Recorder()
    ref = await start_actor(actor)
    with pytest.raises(ActorError, match="started once"):
        await start_actor(actor)
    await ref.stop()
    with pytest.raises(ActorError, match="started once"):
        await start_actor(actor)


async def test_start_waits_for_on_start_and_raises_its_error() -> None:
    class Slow(Recorder):
        async def on_start(self) -> None:
            for _ in range(5):
                await asyncio.sleep(0)
            self.log.append(("ready", None))

    class Broken(Recorder):
        async def on_start(self) -> None:
            raise OSError("port in use")

    slow = Slow()
    ref = await start_actor(slow)
    assert slow.log == [("ready", None)]  # start returned only after on_start did
    assert ref.state is ActorState.RUNNING
    await ref.stop()

    with pytest.raises(OSError, match="port in use"):
        await start_actor(Broken())


async def test_an_actor_can_stop_itself() -> None:
    class OneShot(Actor[str, None]):
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def handle(self, message: str) -> None:
            self.seen.append(message)
            if message == "done":
                self.ref.stop_nowait()

    actor = OneShot()
    ref = await start_actor(actor)
    for message in ("a", "done", "b"):
        await ref.tell(message)  # "b" was told before the stop was queued: still handled
    await asyncio.wait_for(ref.stop(), 2)
    assert actor.seen == ["a", "done", "b"]
    assert ref.state is ActorState.STOPPED


async def test_ask_nowait_queues_the_ask_behind_what_was_told_and_returns_its_reply_future() -> (
    None
):
    ref = await start_actor(Recorder())
    ref.tell_nowait(Put("a"))
    replies = [ref.ask_nowait(Get()) for _ in range(2)]
    ref.tell_nowait(Put("b"))
    assert await replies[0] == ("a",)
    assert await replies[1] == ("a",)
    assert await ref.ask(Get()) == ("a", "b")
    with pytest.raises(ValueError, match="bad"):
        await ref.ask_nowait(Boom(ValueError("bad")))
    await ref.stop()
    with pytest.raises(ActorStoppedError):
        ref.ask_nowait(Get())


async def test_ask_nowait_on_a_full_mailbox_is_refused_and_a_cancelled_reply_does_no_harm() -> None:
    ref = await start_actor(Recorder(), mailbox_capacity=2)
    hold = Hold(asyncio.Event())
    await ref.tell(hold)
    await hold.entered.wait()  # the actor holds: the mailbox is empty again
    abandoned = ref.ask_nowait(Get())
    ref.tell_nowait(Put(1))
    with pytest.raises(MailboxFullError, match="full"):
        ref.ask_nowait(Get())
    abandoned.cancel()  # the asker gave up: the actor answers nobody
    hold.gate.set()
    assert await ref.ask(Get()) == (1,)
    await ref.stop()
