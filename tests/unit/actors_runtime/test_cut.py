"""Cuts (an actor's state between two messages plus its kept queued messages) and post."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from actors.actor import start_actor
from actors.supervisor import ChildSpec, Supervisor
from edge.errors import ActorError, ActorStoppedError
from tests.unit.actors_runtime.helpers import Boom, Get, Hold, Message, Put, Recorder, eventually


class KeepsPuts(Recorder):
    """A Recorder whose queued Puts are state in flight: a cut keeps them."""

    kept_on_cut = (Put,)


async def test_a_cut_is_the_state_after_the_last_message_and_none_when_unchanged() -> None:
    ref = await start_actor(Recorder(), snapshot_every_s=None)
    first = ref.cut()
    assert first is not None and first.snapshot == () and first.pending == ()
    assert ref.cut() is None, "nothing handled since: unchanged"
    await ref.tell(Put(1))
    await ref.tell(Put(2))
    assert await ref.ask(Get()) == (1, 2)
    cut = ref.cut()
    assert cut is not None and cut.snapshot == (1, 2)
    assert ref.cut() is None
    await ref.stop()


async def test_no_cut_while_a_handler_is_suspended_half_way() -> None:
    gate = asyncio.Event()
    hold = Hold(gate)
    ref = await start_actor(KeepsPuts(), snapshot_every_s=None)
    await ref.tell(Put("a"))
    await ref.tell(hold)
    await hold.entered.wait()
    with pytest.raises(ActorError, match="half-way"):
        ref.cut()
    ref.post(Put("b"))
    gate.set()
    assert await ref.ask(Get()) == ("a", "b")
    cut = ref.cut()
    assert cut is not None and cut.snapshot == ("a", "b") and cut.pending == ()
    await ref.stop()


async def test_a_cut_while_messages_wait_holds_them_as_pending() -> None:
    ref = await start_actor(KeepsPuts(), snapshot_every_s=None)
    assert ref.cut() is not None
    # Queued synchronously, before the actor's task ran: all pending.
    ref.post(Put(1))
    ref.post(Put(2))
    ref.tell_nowait(Get())  # an ask-like query is never kept
    cut = ref.cut()
    assert cut is not None and cut.snapshot == () and cut.pending == (Put(1), Put(2))
    await eventually(lambda: ref.statistics().messages_handled == 3)
    cut = ref.cut()
    assert cut is not None and cut.snapshot == (1, 2) and cut.pending == ()
    await ref.stop()


async def test_post_ignores_the_capacity_and_is_refused_once_stopping() -> None:
    ref = await start_actor(Recorder(), mailbox_capacity=1, snapshot_every_s=None)
    gate = asyncio.Event()
    hold = Hold(gate)
    await ref.tell(hold)
    await hold.entered.wait()
    await ref.tell(Put(0))  # the mailbox is full now
    for value in range(1, 5):
        ref.post(Put(value))
    gate.set()
    assert await ref.ask(Get()) == (0, 1, 2, 3, 4)
    await ref.stop()
    with pytest.raises(ActorStoppedError):
        ref.post(Put(5))


async def test_during_a_restart_the_cut_is_what_the_restart_restores() -> None:
    instances: list[Recorder] = []

    def factory() -> Recorder:
        instance = Recorder()
        instances.append(instance)
        return instance

    async with Supervisor(name="t") as supervisor:
        spec: ChildSpec[Message, object] = ChildSpec(
            "r", factory, snapshot_every_s=None, snapshot_every_messages=1
        )
        ref = await supervisor.add_child(spec)
        await ref.tell(Put(1))
        assert await ref.ask(Get()) == (1,)
        await ref.tell(Boom(RuntimeError("bug")))
        await eventually(lambda: len(instances) == 2)
        assert await ref.ask(Get()) == (1,)
        cut = ref.cut()
        assert cut is not None and cut.snapshot == (1,), "restored state is saved again"


class AnswersGets(Recorder):
    """A Recorder that declares its Get a query (answering one changes nothing) and
    replays its Puts after a crash."""

    read_only = (Get,)
    replays_messages = True

    def replay(self, snapshot: object | None, messages: Sequence[Message]) -> object | None:
        assert isinstance(snapshot, tuple)
        return (*snapshot, *(m.value for m in messages if isinstance(m, Put)))


async def test_read_only_messages_make_no_cut_and_no_snapshot_due() -> None:
    actor = AnswersGets()
    ref = await start_actor(actor, snapshot_every_s=0.02)
    await ref.tell(Put(1))
    assert await ref.ask(Get()) == (1,)  # handled before the cut
    first = ref.cut()
    assert first is not None and first.snapshot == (1,)
    taken = actor.snapshots_taken
    for _ in range(49):
        assert await ref.ask(Get()) == (1,)
    await asyncio.sleep(0.1)  # several snapshot intervals
    assert ref.cut() is None, "only queries since the last cut: nothing to save"
    assert actor.snapshots_taken == taken, "only queries since the last snapshot"
    assert ref._cell._since_snapshot == [], "queries are not kept for a replay"
    assert ref.statistics().messages_handled == 51, "queries still count as handled"
    await ref.tell(Put(2))
    assert await ref.ask(Get()) == (1, 2)
    cut = ref.cut()
    assert cut is not None and cut.snapshot == (1, 2), "a change after queries is cut"
    await ref.stop()


class AnswersGetsAtOnce(AnswersGets):
    def answer_now(self, message: Message) -> object:
        assert isinstance(message, Get)
        return tuple(self.seen)


async def test_a_query_is_answered_at_once_between_two_messages() -> None:
    ref = await start_actor(AnswersGetsAtOnce(), snapshot_every_s=None)
    await ref.tell(Put(1))
    assert await ref.ask(Get()) == (1,)
    assert ref.cut() is not None
    ref.tell_nowait(Put(2))
    # Synchronous: the state now, before the queued Put is handled.
    assert ref.query(Get()) == (1,)
    assert ref.statistics().messages_handled == 2, "no message: nothing handled"
    assert await ref.ask(Get()) == (1, 2)
    assert ref.query(Get()) == (1, 2)
    with pytest.raises(ActorError, match="not one of its read-only"):
        ref.query(Put(3))
    gate = asyncio.Event()
    hold = Hold(gate)
    await ref.tell(hold)
    await hold.entered.wait()
    with pytest.raises(ActorError, match="half-way"):
        ref.query(Get())
    gate.set()
    assert await ref.ask(Get()) == (1, 2)
    cut = ref.cut()
    assert cut is not None and cut.snapshot == (1, 2), "what the messages made, nothing else"
    await ref.stop()
    with pytest.raises(ActorError, match="stopped"):
        ref.query(Get())


async def test_an_actor_that_answers_no_query_at_once_says_so() -> None:
    ref = await start_actor(AnswersGets(), snapshot_every_s=None)
    with pytest.raises(ActorError, match="answers no query synchronously"):
        ref.query(Get())
    await ref.stop()
