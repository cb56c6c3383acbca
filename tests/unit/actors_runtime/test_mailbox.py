"""Mailbox behaviour: order, bounded capacity, BLOCK and COALESCE, statistics."""

from __future__ import annotations

import asyncio

import pytest

from actors.actor import ActorState, OverflowPolicy, start_actor
from edge.errors import MailboxFullError
from tests.unit.actors_runtime.helpers import Get, Hold, Put, Recorder, settle


async def test_messages_are_handled_in_the_order_they_were_told() -> None:
    ref = await start_actor(Recorder(), mailbox_capacity=16)
    expected = []
    for i in range(300):
        # Mix both ways in; a capacity of 16 forces the producer to wait many times.
        if i % 3 == 0:
            while True:
                try:
                    ref.tell_nowait(Put(i))
                    break
                except MailboxFullError:
                    await asyncio.sleep(0)
        else:
            await ref.tell(Put(i))
        expected.append(i)
    assert await ref.ask(Get()) == tuple(expected)
    await ref.stop()


async def test_block_policy_makes_the_producer_wait_for_room() -> None:
    ref = await start_actor(Recorder(), mailbox_capacity=2, overflow=OverflowPolicy.BLOCK)
    gate = asyncio.Event()
    hold = Hold(gate)
    await ref.tell(hold)
    await hold.entered.wait()  # the handler is busy; the mailbox itself is empty again
    await ref.tell(Put(1))
    await ref.tell(Put(2))  # mailbox now holds 2 of 2

    producer = asyncio.create_task(ref.tell(Put(3)))
    await settle()
    assert not producer.done(), "a tell into a full BLOCK mailbox must wait"
    assert ref.statistics().mailbox_depth == 2
    with pytest.raises(MailboxFullError, match="Recorder"):
        ref.tell_nowait(Put(99))

    gate.set()
    await asyncio.wait_for(producer, 2)
    assert await ref.ask(Get()) == (1, 2, 3)  # 99 was refused, nothing else lost
    await ref.stop()


async def test_coalesce_keeps_the_latest_value_per_key_in_order_of_first_arrival() -> None:
    ref = await start_actor(Recorder(), mailbox_capacity=3, overflow=OverflowPolicy.COALESCE)
    gate = asyncio.Event()
    hold = Hold(gate)
    await ref.tell(hold)
    await hold.entered.wait()
    for key in ("a", "b", "c"):
        ref.tell_nowait(Put((key, 1)))
    # Full now: keyed values replace the queued value with the same key, in its place.
    ref.tell_nowait(Put(("a", 2)))
    ref.tell_nowait(Put(("b", 2)))
    await ref.tell(Put(("a", 3)))
    assert ref.statistics().mailbox_depth == 3
    # No key, or a key not in the mailbox: nothing to replace, so the mailbox is full.
    with pytest.raises(MailboxFullError):
        ref.tell_nowait(Put("plain"))
    with pytest.raises(MailboxFullError):
        ref.tell_nowait(Put(("d", 1)))
    waiting = asyncio.create_task(ref.tell(Put("plain")))
    await settle()
    assert not waiting.done(), "a message without a key blocks like under BLOCK"

    gate.set()
    await asyncio.wait_for(waiting, 2)
    assert await ref.ask(Get()) == (("a", 3), ("b", 2), ("c", 1), "plain")
    await ref.stop()


async def test_coalesce_keeps_every_message_while_there_is_room() -> None:
    ref = await start_actor(Recorder(), mailbox_capacity=10, overflow=OverflowPolicy.COALESCE)
    gate = asyncio.Event()
    hold = Hold(gate)
    await ref.tell(hold)
    await hold.entered.wait()
    ref.tell_nowait(Put(("a", 1)))
    ref.tell_nowait(Put(("a", 2)))
    gate.set()
    assert await ref.ask(Get()) == (("a", 1), ("a", 2))
    await ref.stop()


async def test_statistics_report_depth_capacity_and_handled_count() -> None:
    ref = await start_actor(Recorder(), name="stats", mailbox_capacity=8)
    gate = asyncio.Event()
    hold = Hold(gate)
    await ref.tell(hold)
    await hold.entered.wait()
    for i in range(3):
        await ref.tell(Put(i))

    busy = ref.statistics()
    assert busy.name == "stats"
    assert busy.state is ActorState.RUNNING
    assert busy.mailbox_depth == 3
    assert busy.mailbox_capacity == 8
    assert busy.messages_handled == 0  # the Hold is still in its handler

    gate.set()
    await ref.ask(Get())
    done = ref.statistics()
    # Hold + 3 Puts + the Get = 5 handled; nothing queued.
    assert (done.mailbox_depth, done.messages_handled) == (0, 5)
    assert (done.restarts, done.failures, done.last_failure) == (0, 0, None)
    with pytest.raises(AttributeError):
        done.messages_handled = 0  # type: ignore[misc]  # the record is frozen
    await ref.stop()
    assert ref.statistics().state is ActorState.STOPPED


@pytest.mark.parametrize("capacity", [0, -1])
async def test_a_mailbox_holds_at_least_one_message(capacity: int) -> None:
    with pytest.raises(ValueError, match="mailbox_capacity"):
        await start_actor(Recorder(), mailbox_capacity=capacity)
