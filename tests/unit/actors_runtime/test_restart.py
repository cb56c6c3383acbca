"""Crash, restart from the last snapshot, same ref and mailbox; restart policies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from actors.actor import ActorState
from actors.supervisor import ChildSpec, RestartPolicy, Supervisor
from edge.errors import EscalationError
from tests.unit.actors_runtime.helpers import (
    Boom,
    Factory,
    Get,
    Message,
    Put,
    Recorder,
    eventually,
)


def spec(
    factory: Factory,
    *,
    restart: RestartPolicy = RestartPolicy.PERMANENT,
    snapshot_every_s: float | None = None,
    snapshot_every_messages: int | None = 1,
) -> ChildSpec[Message, object]:
    """Snapshot after every message unless told otherwise: restarts are then exact."""
    return ChildSpec(
        "r",
        factory,
        restart=restart,
        snapshot_every_s=snapshot_every_s,
        snapshot_every_messages=snapshot_every_messages,
    )


async def test_a_crash_during_tell_restarts_from_the_snapshot_and_keeps_the_mailbox() -> None:
    factory = Factory(Recorder)
    async with Supervisor([spec(factory)], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        error = ValueError("poison")
        # All four go in before the actor runs: 4 is queued behind the crash.
        for message in (Put(1), Put(2), Boom(error), Put(4)):
            ref.tell_nowait(message)
        # The snapshot after Put(2) is (1, 2); the new instance continues from it.
        # Without the restore the answer would be (4,).
        assert await ref.ask(Get()) == (1, 2, 4)
        assert supervisor.ref("r") is ref
        first, second = factory.instances
        assert first.failures == [error]
        assert second.failures == []
        stats = ref.statistics()
        assert (stats.restarts, stats.failures) == (1, 1)
        assert stats.last_failure == repr(error)
        assert stats.state is ActorState.RUNNING


async def test_without_snapshots_a_restarted_actor_starts_empty() -> None:
    factory = Factory(Recorder)
    child = spec(factory, snapshot_every_messages=None)
    async with Supervisor([child], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        for message in (Put(1), Put(2), Boom(ValueError("x")), Put(4)):
            ref.tell_nowait(message)
        assert await ref.ask(Get()) == (4,)
        assert factory.instances[0].snapshots_taken == 0


async def test_the_time_based_snapshot_is_taken_while_idle() -> None:
    factory = Factory(Recorder)
    child = spec(factory, snapshot_every_s=0.02, snapshot_every_messages=None)
    async with Supervisor([child], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        await ref.tell(Put(1))
        await ref.tell(Put(2))
        first = factory.instances[0]
        await eventually(lambda: first.snapshots_taken >= 1)
        await ref.tell(Boom(ValueError("x")))
        await ref.tell(Put(3))
        assert await ref.ask(Get()) == (1, 2, 3)
        # The new instance handled messages, so it saves once more when the timer fires ...
        second = factory.instances[1]
        await eventually(lambda: second.snapshots_taken >= 1)
        # ... and then, idle with nothing new, not again over three more timer periods.
        taken = second.snapshots_taken
        await asyncio.sleep(0.07)
        assert second.snapshots_taken == taken


async def test_an_ask_queued_behind_a_crash_is_answered_by_the_new_instance() -> None:
    factory = Factory(Recorder)
    async with Supervisor([spec(factory)], restart_backoff_s=0.01) as supervisor:
        ref = supervisor.ref("r")
        ref.tell_nowait(Put(1))
        ref.tell_nowait(Boom(RuntimeError("x")))
        answer = await ref.ask(Get())
        assert answer == (1,)
        assert len(factory.instances) == 2


@pytest.mark.parametrize(
    ("policy", "restarted"),
    [
        (RestartPolicy.PERMANENT, True),
        (RestartPolicy.TRANSIENT, True),
        (RestartPolicy.TEMPORARY, False),
    ],
)
async def test_which_policies_restart_after_a_crash(policy: RestartPolicy, restarted: bool) -> None:
    factory = Factory(Recorder)
    async with Supervisor([spec(factory, restart=policy)], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        await ref.tell(Boom(ValueError("x")))
        if restarted:
            await eventually(lambda: ref.statistics().restarts == 1)
            assert ref.is_alive
            assert supervisor.child_ids() == ("r",)
        else:
            await eventually(lambda: ref.state is ActorState.FAILED)
            assert supervisor.child_ids() == ()  # it left the supervisor
        assert len(factory.instances) == (2 if restarted else 1)


@pytest.mark.parametrize(
    ("policy", "restarted"),
    [
        (RestartPolicy.PERMANENT, True),
        (RestartPolicy.TRANSIENT, False),
        (RestartPolicy.TEMPORARY, False),
    ],
)
async def test_which_policies_restart_after_a_clean_stop(
    policy: RestartPolicy, restarted: bool
) -> None:
    factory = Factory(Recorder)
    async with Supervisor([spec(factory, restart=policy)], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        await ref.tell(Put(1))
        await ref.stop()
        if restarted:
            await eventually(lambda: ref.state is ActorState.RUNNING)
            # The stop snapshot carried the state over; the mailbox is open again.
            await ref.tell(Put(2))
            assert await ref.ask(Get()) == (1, 2)
        else:
            assert ref.state is ActorState.STOPPED
            assert supervisor.child_ids() == ()
        assert len(factory.instances) == (2 if restarted else 1)


async def test_remove_child_ends_a_permanent_child_for_good() -> None:
    factory = Factory(Recorder)
    async with Supervisor([spec(factory)], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        await supervisor.remove_child("r")
        assert ref.state is ActorState.STOPPED
        with pytest.raises(KeyError):
            supervisor.ref("r")
        assert len(factory.instances) == 1


async def test_an_instance_that_fails_to_restart_counts_as_another_crash() -> None:
    class BrokenAfterFirst(Recorder):
        async def on_start(self) -> None:
            if len(factory.instances) > 1:
                raise OSError("resource gone")

    factory = Factory(BrokenAfterFirst)
    supervisor = Supervisor([spec(factory)], max_restarts=3, restart_backoff_s=0)
    with pytest.raises(EscalationError) as info:
        async with supervisor:
            await supervisor.ref("r").tell(Boom(ValueError("first")))
            await asyncio.wait_for(supervisor.wait(), 2)
    # One crash handling Boom, then three restarts that each failed in on_start:
    # the fourth restart would exceed 3 within 30 s.
    assert len(factory.instances) == 4
    assert isinstance(info.value.__cause__, OSError)


async def test_a_factory_that_fails_on_restart_counts_as_a_crash() -> None:
    made = Factory(Recorder)

    def factory() -> Recorder:
        if made.instances:
            raise OSError("cannot build")
        return made()

    child = ChildSpec("r", factory, snapshot_every_s=None)
    supervisor = Supervisor([child], max_restarts=2, restart_backoff_s=0)
    with pytest.raises(EscalationError, match="cannot build"):
        async with supervisor:
            await supervisor.ref("r").tell(Boom(ValueError("first")))
            await asyncio.wait_for(supervisor.wait(), 2)
    # The first instance heard about its own crash once, not about the factory's.
    (first,) = made.instances
    assert [repr(e) for e in first.failures] == ["ValueError('first')"]
    # Boom, then two failed restarts (both allowed), then the third exceeds 2 in 30 s.
    assert first.ref.statistics().failures == 3


class Replaying(Recorder):
    """Replays Puts onto a snapshot, as an actor whose restarts must not redo work."""

    replays_messages = True

    def __init__(self, *, failing: bool = False) -> None:
        super().__init__()
        self.failing = failing
        self.replayed: list[tuple[object, tuple[object, ...]]] = []

    def replay(self, snapshot: object | None, messages: Sequence[Message]) -> object | None:
        self.replayed.append((snapshot, tuple(messages)))
        if self.failing:
            raise RuntimeError("replay bug")
        assert isinstance(snapshot, tuple)
        return (*snapshot, *(m.value for m in messages if isinstance(m, Put)))


def never_snapshot(factory: Factory) -> ChildSpec[Message, object]:
    return spec(factory, snapshot_every_s=None, snapshot_every_messages=None)


async def test_a_replaying_actor_restarts_from_what_it_had_handled_before_the_crash() -> None:
    factory = Factory(Replaying)
    async with Supervisor([never_snapshot(factory)], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        await ref.tell(Put(1))
        await ref.tell(Put(2))
        assert await ref.ask(Get()) == (1, 2)
        with pytest.raises(ValueError, match="refused"):
            await ref.ask(Boom(ValueError("refused")))  # a failed ask: not replayed
        for message in (Boom(ValueError("poison")), Put(4)):
            ref.tell_nowait(message)
        # Without the replay the restart would restore the snapshot taken at start: (4,).
        assert await ref.ask(Get()) == (1, 2, 4)
        first, second = factory.instances
    assert isinstance(first, Replaying) and isinstance(second, Replaying)
    # Asked of the crashed instance, from the snapshot taken at start, with the
    # messages handled since (the ask among them), not the one that crashed.
    assert first.replayed == [((), (Put(1), Put(2), Get()))]
    assert second.replayed == []


async def test_a_failed_replay_is_logged_and_the_last_snapshot_restored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = Factory(lambda: Replaying(failing=True))
    async with Supervisor([never_snapshot(factory)], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")
        for message in (Put(1), Boom(ValueError("poison")), Put(4)):
            ref.tell_nowait(message)
        assert await ref.ask(Get()) == (4,)
    assert any("could not be replayed" in r.getMessage() for r in caplog.records)


async def test_snapshots_empty_what_a_replay_would_handle_again() -> None:
    factory = Factory(Replaying)
    async with Supervisor([spec(factory)], restart_backoff_s=0) as supervisor:
        ref = supervisor.ref("r")  # a snapshot after every message: nothing to replay
        for message in (Put(1), Put(2), Boom(ValueError("poison")), Put(4)):
            ref.tell_nowait(message)
        assert await ref.ask(Get()) == (1, 2, 4)
    assert factory.instances[0].replayed == []  # type: ignore[attr-defined]
