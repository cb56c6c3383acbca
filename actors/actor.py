"""The actor runtime: one task per actor, a bounded mailbox, tell/ask, stop as a message.

Callers only ever hold an :class:`ActorRef`. The actor object itself (a subclass
of :class:`Actor`) is touched by its own task alone, one message at a time.

Mailbox
    Bounded (``mailbox_capacity``). What happens when it is full is explicit per
    actor (:class:`OverflowPolicy`):

    - ``BLOCK``: ``tell``/``ask`` wait for room (backpressure on the producer);
      ``tell_nowait`` raises :class:`~actors.errors.MailboxFullError`.
    - ``COALESCE``: a told message whose ``Actor.coalesce_key`` is not ``None``
      replaces the queued message with the same key, in that message's place
      ("latest value wins", order of first arrival kept). Coalescing happens only
      when the mailbox is full; with room every message is queued. Messages
      without a key, a key not in the mailbox, and asks behave as under ``BLOCK``.

    Stop is a message too, but it never waits for room: it goes in behind
    everything told before it.

Failures
    An exception while handling an ``ask`` goes back to the asker; the actor
    keeps running. An exception while handling a ``tell`` (or in ``on_start``,
    ``restore`` or ``snapshot``) crashes the actor: ``on_failure`` is called on
    the dying instance, then its supervisor decides. A restart keeps the same
    ``ActorRef`` and the same mailbox: a fresh instance from the child spec's
    factory gets ``restore(last snapshot)``, then ``on_start``, then handles the
    messages queued behind the one that crashed (that one is dropped). An actor
    without a supervisor stays down. When an actor ends for good, every ask still
    in its mailbox fails with :class:`~actors.errors.ActorStoppedError`.

    An ask whose caller gave up (timeout, cancellation) is still handled when its
    turn comes: a timeout means "no reply in time", not "not done".

    ``post`` queues a message beyond the capacity: it never waits and is never
    refused while the actor runs. It is for the few messages one actor (or a bus
    consumer) hands another that carry state and must not be lost nor delay the
    sender, such as a quality station's rejects for its machine: the capacity
    bounds what the PLC sources push, not these.

Snapshots
    A crashed instance's memory may be half-way through a message, so restarts
    never read it: they restore the last snapshot taken between two messages.
    ``Actor.snapshot()`` is called (only if a message that may change the state
    was handled since the last one: not one of the ``Actor.read_only`` types)
    every ``snapshot_every_s`` seconds of event-loop time (default 1 s, also when
    the actor is idle), after every ``snapshot_every_messages`` changing messages
    if that is set, and on a clean stop before ``on_stop``. The hot path pays a
    set lookup and an integer comparison per message for this. ``snapshot()``
    should return an immutable value or a copy: the runtime keeps the object as
    it is.

    Restoring the last snapshot would forget what the crashed instance did after
    it, although its effects outside (the events it published) remain; an actor
    that counts would then count that part again. An actor that sets
    ``replays_messages`` avoids it: the runtime keeps the messages handled since
    the last snapshot (a list append per message, emptied by every snapshot) and,
    the moment an instance crashes, asks it for ``replay(snapshot, messages)``:
    the snapshot those messages lead to when handled again without effects
    outside. That is what the restart restores, and what a cut during the restart
    saves, so the state agrees with every event already published. The message
    that crashed is not among them (it is dropped, as before). A replay that
    fails is logged and the older snapshot restored. Such an actor also has a
    snapshot from its start on, so there is always one to replay from.

Cuts (the line's durable state, edge.state.store)
    ``ActorRef.cut()`` is called synchronously from another task on the same
    event loop: it returns the actor's snapshot taken right then, between two
    messages, plus the queued messages of the types in ``Actor.kept_on_cut``
    (state in flight to it, e.g. pieces for an order), or ``None`` when nothing
    changed since the previous cut (only messages of ``Actor.read_only`` types
    handled: a line whose machines are only asked for their status writes no
    state). Such a snapshot is consistent with every event the actor has
    published, provided the actor publishes its events only at the end of a
    handler: a handler that awaits must not have published anything before the
    await. ``cut()`` refuses (ActorError) while a handler is suspended half-way,
    so an actor that breaks the rule is found, not persisted inconsistently.
    During a restart it returns the snapshot the restart restores.

Queries answered at once
    ``ActorRef.query(message)`` answers a message of one of the actor's
    ``read_only`` types synchronously, through ``Actor.answer_now``, from the
    state the actor has right then, between two messages, for a caller on the
    actor's event loop: what an ``ask`` would answer, without the mailbox, a
    future or a task switch, and without waiting behind the queued messages. It
    is for a reader that must answer synchronously itself (an OPC UA Read) and
    changes nothing, so it is allowed beside the one-message-at-a-time rule, as
    cuts are. It refuses (ActorError) when the actor is not running, or is
    half-way through a message.

States
    ``NEW -> STARTING -> RUNNING -> STOPPING -> STOPPED``, or ``FAILED`` when it
    ended by an exception. During a restart the state is ``STARTING`` again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Final, Generic, TypeVar

from actors.errors import ActorError, ActorStoppedError, AskTimeoutError, MailboxFullError

__all__ = [
    "DEFAULT_ASK_TIMEOUT_S",
    "DEFAULT_MAILBOX_CAPACITY",
    "DEFAULT_SNAPSHOT_EVERY_S",
    "DEFAULT_STOP_TIMEOUT_S",
    "Actor",
    "ActorCut",
    "ActorRef",
    "ActorState",
    "ActorStatistics",
    "ExitHandler",
    "OverflowPolicy",
    "start_actor",
]

logger = logging.getLogger(__name__)

MsgT = TypeVar("MsgT")
ReplyT = TypeVar("ReplyT")

DEFAULT_MAILBOX_CAPACITY: Final = 1000
DEFAULT_ASK_TIMEOUT_S: Final = 5.0
DEFAULT_STOP_TIMEOUT_S: Final = 5.0
DEFAULT_SNAPSHOT_EVERY_S: Final = 1.0
# After a stop timed out and the task was cancelled, how long to wait for it to unwind.
_CANCEL_GRACE_S: Final = 1.0
_NEVER: Final = sys.maxsize

ExitHandler = Callable[[BaseException | None, str], Awaitable[bool]]
"""How a supervisor hears that an actor instance ended.

Called from the actor's own task with the exception that ended it (``None``
after a clean stop) and what it was doing (``"handling Sample"``). Returns
whether to restart it; may wait (restart backoff) before returning.
"""


class OverflowPolicy(Enum):
    """What a full mailbox does with a new message."""

    BLOCK = "block"
    COALESCE = "coalesce"


class ActorState(Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ActorCut(Generic[MsgT]):
    """An actor's part of a consistent cut: its state and the kept messages still queued."""

    snapshot: object | None
    pending: tuple[MsgT, ...]


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    """A point-in-time record of one actor, safe to keep and compare."""

    name: str
    state: ActorState
    mailbox_depth: int
    mailbox_capacity: int
    messages_handled: int
    restarts: int
    failures: int
    last_failure: str | None


class Actor(ABC, Generic[MsgT, ReplyT]):
    """Base of every actor: subclasses implement :meth:`handle` and maybe the hooks.

    ``MsgT`` is what it accepts, ``ReplyT`` what ``handle`` returns (the reply
    to an ask; ignored for a tell). An instance can be started once.
    """

    _cell: _ActorCell[MsgT, ReplyT] | None = None
    # Message types that a cut keeps when they are still queued (see "Cuts").
    kept_on_cut: ClassVar[tuple[type, ...]] = ()
    # Message types whose handling never changes what snapshot() returns (queries):
    # they make no snapshot or cut due, and a replaying actor does not keep them.
    read_only: ClassVar[tuple[type, ...]] = ()
    # The actor implements replay(): a crash restart continues from the state the
    # crashed instance had before its last message (see "Snapshots").
    replays_messages: ClassVar[bool] = False

    @abstractmethod
    async def handle(self, message: MsgT) -> ReplyT:
        """Handle one message; the return value is the reply when it was asked."""

    async def on_start(self) -> None:
        """Acquire what the actor needs; it counts as started when this returns."""

    async def on_stop(self) -> None:
        """Release what ``on_start`` acquired; runs after the last queued message."""

    def on_failure(self, exc: BaseException) -> None:
        """Called on the dying instance after it crashed, before any restart."""

    def snapshot(self) -> object | None:
        """The state a restarted instance should continue from (``None``: nothing)."""
        return None

    def restore(self, snapshot: object) -> None:
        """Adopt a snapshot taken by an earlier instance; called before ``on_start``."""

    def replay(self, snapshot: object | None, messages: Sequence[MsgT]) -> object | None:
        """The snapshot ``messages`` lead to from ``snapshot``, handled again with no
        effect outside (nothing published, nothing asked of others).

        Called on the instance that just crashed, before any restart, only when
        ``replays_messages`` is set: it must use its configuration only, never its
        state, which may be half-way through a message. The messages handled
        successfully since ``snapshot``, in order; asks among them too (their
        replies went out already).
        """
        return snapshot

    def coalesce_key(self, message: MsgT) -> Hashable | None:
        """Under ``COALESCE``: messages with equal keys replace each other when full."""
        return None

    def answer_now(self, message: MsgT) -> ReplyT:
        """The reply to a ``read_only`` message, computed synchronously (``ActorRef.query``);
        it must change nothing. Actors that answer queries this way override it."""
        raise ActorError(f"{type(self).__name__} answers no query synchronously")

    @property
    def ref(self) -> ActorRef[MsgT, ReplyT]:
        """This actor's handle, e.g. to tell itself something or ``stop_nowait``."""
        cell = self._cell
        if cell is None:
            raise ActorError(f"{type(self).__name__} has not been started")
        return cell.ref


class ActorRef(Generic[MsgT, ReplyT]):
    """The only handle callers get to an actor; it survives restarts."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _ActorCell[MsgT, ReplyT]) -> None:
        self._cell = cell

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name!r} {self._cell.state.value}>"

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def state(self) -> ActorState:
        return self._cell.state

    @property
    def is_alive(self) -> bool:
        """True from start until it has stopped or died for good."""
        return self._cell.state in _ALIVE

    async def tell(self, message: MsgT) -> None:
        """Queue ``message``; waits for room when the mailbox is full (``BLOCK``)."""
        cell = self._cell
        items = cell.items
        # The hot path: plain append and wake, no envelope, no extra coroutine.
        if cell.fast_tell and len(items) < cell.capacity:
            items.append(message)
            getter = cell.getter
            if getter is not None:
                cell.getter = None
                if not getter.done():
                    getter.set_result(None)
            return
        await cell.tell_slow(message)

    def post(self, message: MsgT) -> None:
        """Queue ``message`` beyond the capacity: never waits, never refused while running.

        Raises ``ActorStoppedError`` once the actor is stopping or stopped.
        """
        cell = self._cell
        if cell.closed:
            raise cell.stopped_error()
        cell.items.append(message)
        cell.wake_getter()

    def cut(self) -> ActorCut[MsgT] | None:
        """This actor's part of a consistent cut, taken now; None if unchanged since the last.

        Synchronous, for another task on the actor's event loop (see "Cuts").
        """
        return self._cell.cut()

    def query(self, message: MsgT) -> ReplyT:
        """The reply to ``message`` (of a ``read_only`` type), computed now from the
        actor's state, synchronously (see "Queries answered at once")."""
        return self._cell.query(message)

    def tell_nowait(self, message: MsgT) -> None:
        """Queue ``message`` or raise ``MailboxFullError`` (after coalescing, if any)."""
        cell = self._cell
        if cell.closed:
            raise cell.stopped_error()
        if not cell.offer(message):
            raise MailboxFullError(
                f"mailbox of actor {cell.name!r} is full ({cell.capacity} messages)"
            )

    # The timeout is part of the ask/stop contract (it is named in AskTimeoutError and
    # drives the cancel on stop), not a wrapper around a single await.
    async def ask(
        self,
        message: MsgT,
        timeout: float | None = DEFAULT_ASK_TIMEOUT_S,  # noqa: ASYNC109
    ) -> ReplyT:
        """Send ``message`` and return the reply, or raise what ``handle`` raised.

        ``timeout`` covers waiting for mailbox room and for the reply; ``None``
        waits forever. Raises ``AskTimeoutError`` or ``ActorStoppedError``.
        """
        cell = self._cell
        if cell.closed:
            raise cell.stopped_error()
        reply: asyncio.Future[ReplyT] = cell.loop.create_future()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                await cell.put_envelope(_Ask(message, reply))
                return await reply
        except TimeoutError:
            if deadline.expired():
                raise AskTimeoutError(
                    f"actor {cell.name!r} did not answer {type(message).__name__} "
                    f"within {timeout} s"
                ) from None
            raise

    def ask_nowait(self, message: MsgT) -> asyncio.Future[ReplyT]:
        """Queue ``message`` as an ask and return the future of its reply at once.

        For a caller asking many actors together under one deadline of its own
        (no task, no timer per ask): it awaits the futures, and cancels those
        that did not answer in time. Raises ``MailboxFullError`` when the mailbox
        has no room, ``ActorStoppedError`` once the actor is stopping or stopped.
        """
        cell = self._cell
        if cell.closed:
            raise cell.stopped_error()
        if len(cell.items) >= cell.capacity:
            raise MailboxFullError(
                f"mailbox of actor {cell.name!r} is full ({cell.capacity} messages)"
            )
        reply: asyncio.Future[ReplyT] = cell.loop.create_future()
        cell.items.append(_Ask(message, reply))
        cell.wake_getter()
        return reply

    async def stop(self, timeout: float | None = DEFAULT_STOP_TIMEOUT_S) -> None:  # noqa: ASYNC109
        """Stop after the messages already queued; cancel the actor after ``timeout``.

        Returns once ``on_stop`` has run (or the actor was cancelled). Already
        stopped: returns at once. An actor cannot await its own stop: it uses
        :meth:`stop_nowait`. A supervised ``PERMANENT`` actor is restarted after
        this; ``Supervisor.remove_child`` ends it for good.
        """
        cell = self._cell
        task = cell.task
        if task is None or task.done():
            return
        if asyncio.current_task() is task:
            raise RuntimeError(
                f"actor {cell.name!r} cannot await its own stop; use ref.stop_nowait()"
            )
        waiter = cell.request_stop()
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
        if not done:
            await cell.cancel(timeout)

    def stop_nowait(self) -> None:
        """Queue the stop message and return; the actor stops after the queued messages."""
        task = self._cell.task
        if task is not None and not task.done():
            self._cell.request_stop()

    def statistics(self) -> ActorStatistics:
        return self._cell.statistics()


async def start_actor(
    actor: Actor[MsgT, ReplyT],
    *,
    name: str | None = None,
    mailbox_capacity: int = DEFAULT_MAILBOX_CAPACITY,
    overflow: OverflowPolicy = OverflowPolicy.BLOCK,
    snapshot_every_s: float | None = DEFAULT_SNAPSHOT_EVERY_S,
    snapshot_every_messages: int | None = None,
) -> ActorRef[MsgT, ReplyT]:
    """Start an unsupervised actor; returns once its ``on_start`` has finished.

    Raises what ``on_start`` raised. Without a supervisor a crash is final.
    """
    cell = _ActorCell(
        actor,
        name=name if name is not None else type(actor).__name__,
        factory=None,
        mailbox_capacity=mailbox_capacity,
        overflow=overflow,
        snapshot_every_s=snapshot_every_s,
        snapshot_every_messages=snapshot_every_messages,
        on_exit=None,
    )
    await cell.start()
    return cell.ref


def validate_actor_options(
    mailbox_capacity: int,
    snapshot_every_s: float | None,
    snapshot_every_messages: int | None,
) -> None:
    """Raise ``ValueError`` naming the first bad option (shared with ``ChildSpec``)."""
    if mailbox_capacity < 1:
        raise ValueError(f"mailbox_capacity must be at least 1, got {mailbox_capacity}")
    if snapshot_every_s is not None and not snapshot_every_s > 0:
        raise ValueError(f"snapshot_every_s must be positive or None, got {snapshot_every_s}")
    if snapshot_every_messages is not None and snapshot_every_messages < 1:
        raise ValueError(
            f"snapshot_every_messages must be at least 1 or None, got {snapshot_every_messages}"
        )


_ALIVE: Final = frozenset({ActorState.STARTING, ActorState.RUNNING, ActorState.STOPPING})


class _Ask:
    __slots__ = ("message", "reply")

    def __init__(self, message: object, reply: asyncio.Future[Any]) -> None:
        self.message = message
        self.reply = reply


class _Slot:
    """A coalescable message's place in the mailbox; a newer value replaces ``message``."""

    __slots__ = ("key", "message")

    def __init__(self, key: Hashable, message: object) -> None:
        self.key = key
        self.message = message


class _Stop:
    __slots__ = ()


_STOP: Final = _Stop()


class _Crash:
    __slots__ = ("during", "exc", "instance")

    def __init__(self, exc: Exception, during: str, instance: Actor[Any, Any] | None) -> None:
        self.exc = exc
        self.during = during
        self.instance = instance  # the one that failed; None if none was made (factory error)


class _SnapshotFailed(Exception):
    """Carries a ``snapshot()`` exception out of the message loop, told apart from a tell's."""


class _ActorCell(Generic[MsgT, ReplyT]):
    """The runtime behind one ActorRef: mailbox, task, current instance, counters.

    Attributes without an underscore are shared with ActorRef's fast paths in
    this module; nothing outside this package touches them.
    """

    def __init__(
        self,
        actor: Actor[MsgT, ReplyT],
        *,
        name: str,
        factory: Callable[[], Actor[MsgT, ReplyT]] | None,
        mailbox_capacity: int,
        overflow: OverflowPolicy,
        snapshot_every_s: float | None,
        snapshot_every_messages: int | None,
        on_exit: ExitHandler | None,
    ) -> None:
        validate_actor_options(mailbox_capacity, snapshot_every_s, snapshot_every_messages)
        self.name = name
        self.ref: ActorRef[MsgT, ReplyT] = ActorRef(self)
        self.on_exit = on_exit
        self._factory = factory
        self._bind(actor)
        self._actor = actor
        self.state = ActorState.NEW
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.task: asyncio.Task[None] | None = None

        self.capacity = mailbox_capacity
        self._coalescing = overflow is OverflowPolicy.COALESCE
        self.items: deque[object] = deque()
        self._keys: dict[Hashable, _Slot] = {}
        self._putters: deque[asyncio.Future[None]] = deque()
        self.getter: asyncio.Future[None] | None = None
        self.closed = False
        # True while tells may take ActorRef.tell's inline path (open, not coalescing).
        self.fast_tell = not self._coalescing
        self._stop_requested = False
        self._stop_waiters: list[asyncio.Future[None]] = []

        self._handled = 0
        # Messages handled that may have changed the state (not Actor.read_only): what
        # snapshots and cuts compare, so queries alone never make one due.
        self._changes = 0
        self._restarts = 0
        self._failures = 0
        self._last_failure: str | None = None
        self._final_failure: BaseException | None = None

        self._snapshot: object | None = None
        self._snapshot_every_s = snapshot_every_s
        self._snapshot_every_messages = snapshot_every_messages
        self._snapshot_changes = 0  # value of _changes when the last snapshot was taken
        self._snapshot_at = self._next_snapshot_at()  # _changes value that triggers one
        self._snapshot_timer: asyncio.TimerHandle | None = None
        # True while a handler runs (it may be suspended in an await): no cut then.
        self._busy = False
        self._cut_changes = -1  # _changes at the last cut; -1: never cut (always changed)
        self._cut_had_pending = False
        # Messages handled since the last snapshot, for Actor.replay (None: not kept).
        self._since_snapshot: list[object] | None = [] if actor.replays_messages else None

    # -- lifecycle ---------------------------------------------------------

    def _bind(self, actor: Actor[MsgT, ReplyT]) -> None:
        if actor._cell is not None:
            raise ActorError(
                f"{type(actor).__name__} instance was already started as actor "
                f"{actor._cell.name!r}; an instance can be started once"
            )
        actor._cell = self

    async def start(self) -> None:
        """Run the actor's task; return once ``on_start`` finished, or raise its error."""
        self.state = ActorState.STARTING
        ready: asyncio.Future[None] = self.loop.create_future()
        self.task = self.loop.create_task(self._main(ready), name=f"actor {self.name}")
        try:
            await ready
        except asyncio.CancelledError:
            self.task.cancel()
            raise

    async def _main(self, ready: asyncio.Future[None]) -> None:
        actor = self._actor
        self._arm_snapshot_timer()
        try:
            try:
                await actor.on_start()
            except Exception as exc:
                self._record_failure(actor, exc)
                self._final_failure = exc
                logger.error("actor %s failed to start: %r", self.name, exc)
                if not ready.done():
                    ready.set_exception(exc)
                return
            if self._since_snapshot is not None and self._snapshot is None:
                self._first_snapshot(actor)
            self.state = ActorState.RUNNING
            if not ready.done():
                ready.set_result(None)
            exit_ = await self._serve(actor)
            while True:
                failure: Exception | None
                if exit_ is None:
                    await self._stop_instance(actor)
                    failure, during = None, "stopped"
                else:
                    failure, during = exit_.exc, exit_.during
                    self._record_failure(exit_.instance, failure)
                    self.state = ActorState.STARTING
                if not await self._decide(failure, during):
                    self._final_failure = failure
                    return
                if failure is None:
                    # Restarted after a clean stop: that stop is done, the mailbox reopens.
                    self._release_stop_waiters()
                    self._reopen()
                self.state = ActorState.STARTING
                previous = actor
                try:
                    actor = self._new_instance()
                    await actor.on_start()
                except Exception as exc:
                    exit_ = _Crash(exc, "restarting", actor if actor is not previous else None)
                    continue
                self._restarts += 1
                self.state = ActorState.RUNNING
                logger.info("actor %s restarted (restart %d)", self.name, self._restarts)
                exit_ = await self._serve(actor)
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(ActorStoppedError(f"actor {self.name!r} was cancelled"))
            raise
        except BaseException as exc:
            # A bug in the runtime or KeyboardInterrupt/SystemExit: end the actor, say so.
            self._final_failure = exc
            if not ready.done():
                ready.set_exception(exc)
            if isinstance(exc, Exception):
                logger.exception("actor %s: runtime error", self.name)
                return
            raise
        finally:
            self._finish()

    def _new_instance(self) -> Actor[MsgT, ReplyT]:
        if self._factory is None:  # pragma: no cover - _decide never restarts these
            raise ActorError(f"actor {self.name!r} has no factory to restart from")
        actor = self._factory()
        self._bind(actor)
        self._actor = actor
        if self._snapshot is not None:
            actor.restore(self._snapshot)
        # The restored state is the snapshot's: nothing new to save yet.
        self._snapshot_changes = self._changes
        self._snapshot_at = self._next_snapshot_at()
        self._busy = False
        # The restored state may be older than the last cut: the next cut saves it again.
        self._cut_changes = -1
        return actor

    async def _stop_instance(self, actor: Actor[MsgT, ReplyT]) -> None:
        self.state = ActorState.STOPPING
        if self._changes != self._snapshot_changes:
            try:
                self._take_snapshot(actor)
            except _SnapshotFailed as exc:
                logger.error(
                    "actor %s: snapshot on stop failed, keeping the previous one: %r",
                    self.name,
                    exc.__cause__,
                )
        try:
            await actor.on_stop()
        except Exception as exc:
            logger.error("actor %s: on_stop failed: %r", self.name, exc, exc_info=exc)

    def _record_failure(self, actor: Actor[MsgT, ReplyT] | None, exc: Exception) -> None:
        self._failures += 1
        self._last_failure = repr(exc)
        if actor is None:
            return
        try:
            actor.on_failure(exc)
        except Exception as hook_exc:
            logger.error("actor %s: on_failure raised %r", self.name, hook_exc)

    async def _decide(self, failure: Exception | None, during: str) -> bool:
        if self.on_exit is None:
            if failure is not None:
                logger.error(
                    "actor %s crashed %s: %r; not supervised, it stays down",
                    self.name,
                    during,
                    failure,
                    exc_info=failure,
                )
            return False
        try:
            return await self.on_exit(failure, during)
        except Exception:
            logger.exception("actor %s: supervisor failed to decide on a restart", self.name)
            return False

    def _finish(self) -> None:
        """End for good: close the mailbox, fail what waits on it, settle the state."""
        self.closed = True
        self.fast_tell = False
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
            self._snapshot_timer = None
        failed = self._final_failure is not None
        self.state = ActorState.FAILED if failed else ActorState.STOPPED
        verb = "died" if failed else "stopped"
        dropped = 0
        for item in self.items:
            if type(item) is _Ask:
                if not item.reply.done():
                    item.reply.set_exception(
                        ActorStoppedError(
                            f"actor {self.name!r} {verb} before answering "
                            f"{type(item.message).__name__}"
                        )
                    )
            elif type(item) is not _Stop:
                dropped += 1
        self.items.clear()
        self._keys.clear()
        if dropped:
            logger.warning("actor %s %s with %d unhandled messages", self.name, verb, dropped)
        self._wake_all_putters()
        self._release_stop_waiters()

    def stopped_error(self) -> ActorStoppedError:
        if self.state is ActorState.FAILED:
            return ActorStoppedError(f"actor {self.name!r} died: {self._last_failure}")
        if self.state is ActorState.STOPPED:
            return ActorStoppedError(f"actor {self.name!r} is stopped")
        return ActorStoppedError(f"actor {self.name!r} is stopping")

    # -- stopping ----------------------------------------------------------

    def request_stop(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._stop_waiters.append(waiter)
        if not self._stop_requested:
            self._stop_requested = True
            self.closed = True
            self.fast_tell = False
            # Stop never waits for room: it queues behind everything told before it.
            self.items.append(_STOP)
            self.wake_getter()
            # Producers still waiting for room did not get in before the stop.
            self._wake_all_putters()
        return waiter

    async def cancel(self, waited_s: float | None) -> None:
        task = self.task
        if task is None or task.done():
            return
        logger.warning("actor %s did not stop within %s s; cancelling it", self.name, waited_s)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)
        if not done:
            logger.error(
                "actor %s still running %s s after cancellation", self.name, _CANCEL_GRACE_S
            )

    def _reopen(self) -> None:
        self._stop_requested = False
        self.closed = False
        self.fast_tell = not self._coalescing

    def _release_stop_waiters(self) -> None:
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- mailbox -----------------------------------------------------------

    def wake_getter(self) -> None:
        getter = self.getter
        if getter is not None:
            self.getter = None
            if not getter.done():
                getter.set_result(None)

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            putter = putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    def _wake_all_putters(self) -> None:
        putters, self._putters = self._putters, deque()
        for putter in putters:
            if not putter.done():
                putter.set_result(None)

    async def _wait_for_room(self) -> None:
        putter: asyncio.Future[None] = self.loop.create_future()
        self._putters.append(putter)
        try:
            await putter
        except BaseException:
            putter.cancel()
            try:
                self._putters.remove(putter)
            except ValueError:
                # Already woken: pass the turn on so that wake-up is not lost.
                if len(self.items) < self.capacity:
                    self._wake_putter()
            raise

    def offer(self, message: object) -> bool:
        """Queue a told message if the policy allows it now; False means full."""
        items = self.items
        if self._coalescing:
            key = self._actor.coalesce_key(message)  # type: ignore[arg-type]
            if key is not None:
                if len(items) >= self.capacity:
                    slot = self._keys.get(key)
                    if slot is None:
                        return False
                    slot.message = message
                    return True
                slot = _Slot(key, message)
                self._keys[key] = slot
                items.append(slot)
                self.wake_getter()
                return True
        if len(items) >= self.capacity:
            return False
        items.append(message)
        self.wake_getter()
        return True

    async def tell_slow(self, message: object) -> None:
        while True:
            if self.closed:
                raise self.stopped_error()
            if self.offer(message):
                return
            await self._wait_for_room()

    async def put_envelope(self, envelope: _Ask) -> None:
        while True:
            if self.closed:
                raise self.stopped_error()
            if len(self.items) < self.capacity:
                self.items.append(envelope)
                self.wake_getter()
                return
            await self._wait_for_room()

    # -- the message loop --------------------------------------------------

    async def _serve(self, actor: Actor[MsgT, ReplyT]) -> _Crash | None:
        """Handle messages until the stop message (None) or a crash."""
        items = self.items
        putters = self._putters
        handle: Callable[[Any], Awaitable[object]] = actor.handle
        handled = self._since_snapshot
        read_only = frozenset(actor.read_only)
        item: object = None
        try:
            while True:
                if not items:
                    if (
                        self._changes >= self._snapshot_at
                        and self._changes != self._snapshot_changes
                    ):
                        self._take_snapshot(actor)
                    getter: asyncio.Future[None] = self.loop.create_future()
                    self.getter = getter
                    await getter
                    continue
                item = items.popleft()
                if putters:
                    self._wake_putter()
                kind = type(item)
                self._busy = True
                if kind is _Ask:
                    ask: _Ask = item  # type: ignore[assignment]
                    message = ask.message
                    answered = await self._answer(handle, ask)
                elif kind is _Slot:
                    slot: _Slot = item  # type: ignore[assignment]
                    if self._keys.get(slot.key) is slot:
                        del self._keys[slot.key]
                    message = slot.message
                    await handle(message)
                    answered = True
                elif kind is _Stop:
                    self._busy = False
                    return None
                else:
                    message = item
                    await handle(message)
                    answered = True
                self._busy = False
                self._handled += 1
                if type(message) in read_only:
                    continue
                if handled is not None and answered:
                    handled.append(message)
                self._changes += 1
                if self._changes >= self._snapshot_at:
                    self._take_snapshot(actor)
        except _SnapshotFailed as exc:
            cause = exc.__cause__
            assert isinstance(cause, Exception)
            self._catch_up(actor)
            return _Crash(cause, "taking a snapshot", actor)
        except Exception as exc:
            message = item.message if type(item) is _Slot else item
            # Before anything awaits: no cut may see the older snapshot from now on.
            self._catch_up(actor)
            return _Crash(exc, f"handling {type(message).__name__}", actor)

    async def _answer(self, handle: Callable[[Any], Awaitable[object]], ask: _Ask) -> bool:
        """Handle an ask and settle its reply; whether the handler succeeded."""
        reply = ask.reply
        try:
            result = await handle(ask.message)
        except Exception as exc:
            if reply.done():
                logger.warning(
                    "actor %s: %s failed after its asker gave up: %r",
                    self.name,
                    type(ask.message).__name__,
                    exc,
                )
            elif isinstance(exc, StopIteration):  # futures refuse StopIteration
                reply.set_exception(RuntimeError(repr(exc)))
            else:
                reply.set_exception(exc)
            return False
        if not reply.done():
            reply.set_result(result)
        return True

    # -- snapshots ---------------------------------------------------------

    def _next_snapshot_at(self) -> int:
        every = self._snapshot_every_messages
        return self._changes + every if every is not None else _NEVER

    def _take_snapshot(self, actor: Actor[MsgT, ReplyT]) -> None:
        try:
            snapshot = actor.snapshot()
        except Exception as exc:
            raise _SnapshotFailed from exc
        self._snapshot = snapshot
        self._snapshot_changes = self._changes
        self._snapshot_at = self._next_snapshot_at()
        if self._since_snapshot:
            self._since_snapshot.clear()

    def _first_snapshot(self, actor: Actor[MsgT, ReplyT]) -> None:
        """The snapshot a replaying actor's first crash replays from."""
        try:
            self._take_snapshot(actor)
        except _SnapshotFailed as exc:
            logger.error(
                "actor %s: no snapshot at start (%r); a crash restarts it from nothing",
                self.name,
                exc.__cause__,
            )

    def _catch_up(self, crashed: Actor[MsgT, ReplyT]) -> None:
        """Bring the snapshot up to what the crashed instance had handled (Actor.replay)."""
        handled = self._since_snapshot
        if not handled:
            return
        messages = tuple(handled)
        handled.clear()
        try:
            self._snapshot = crashed.replay(self._snapshot, messages)  # type: ignore[arg-type]
        except Exception as exc:
            logger.error(
                "actor %s: the %d messages since its last snapshot could not be replayed "
                "(%r); it restarts from that snapshot, and what they did may be done again",
                self.name,
                len(messages),
                exc,
                exc_info=exc,
            )

    def query(self, message: MsgT) -> ReplyT:
        if self.state not in (ActorState.RUNNING, ActorState.STOPPING):
            raise ActorError(f"actor {self.name!r} is {self.state.value}: no query now")
        if self._busy:
            raise ActorError(f"actor {self.name!r} is half-way through a message: no query now")
        actor = self._actor
        if type(message) not in actor.read_only:
            raise ActorError(
                f"actor {self.name!r}: {type(message).__name__} is not one of its read-only "
                "messages"
            )
        return actor.answer_now(message)

    def cut(self) -> ActorCut[MsgT] | None:
        state = self.state
        if state in (ActorState.RUNNING, ActorState.STOPPING):
            if self._busy:
                raise ActorError(
                    f"actor {self.name!r} is half-way through a message (its handler "
                    "awaits): no consistent cut of it now"
                )
            pending = self._kept_pending()
            if self._changes == self._cut_changes and not pending and not self._cut_had_pending:
                return None
            if self._snapshot is None or self._changes != self._snapshot_changes:
                try:
                    self._take_snapshot(self._actor)
                except _SnapshotFailed as exc:
                    raise ActorError(
                        f"actor {self.name!r}: snapshot failed: {exc.__cause__!r}"
                    ) from exc.__cause__
        elif state is ActorState.STARTING and self._restarts + self._failures > 0:
            # A restart is under way: the instance may be the crashed one, half-way
            # through a message. What the restart restores is the state to keep.
            if self._snapshot is None:
                return None
            pending = self._kept_pending()
        else:
            return None  # not started yet, or ended for good: nothing newer to keep
        self._cut_changes = self._changes
        self._cut_had_pending = bool(pending)
        return ActorCut(self._snapshot, pending)

    def _kept_pending(self) -> tuple[MsgT, ...]:
        kept = self._actor.kept_on_cut
        if not kept or not self.items:
            return ()
        found: list[Any] = []
        for item in self.items:
            message = item.message if isinstance(item, _Slot) else item
            if type(message) in kept:
                found.append(message)
        return tuple(found)

    def _arm_snapshot_timer(self) -> None:
        if self._snapshot_every_s is not None:
            self._snapshot_timer = self.loop.call_later(
                self._snapshot_every_s, self._on_snapshot_timer
            )

    def _on_snapshot_timer(self) -> None:
        self._arm_snapshot_timer()
        if self._changes != self._snapshot_changes:
            # Due now: the message loop checks this after the next message, or at once if idle.
            self._snapshot_at = 0
            self.wake_getter()

    # -- introspection -----------------------------------------------------

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self.name,
            state=self.state,
            mailbox_depth=sum(1 for item in self.items if type(item) is not _Stop)
            if self._stop_requested
            else len(self.items),
            mailbox_capacity=self.capacity,
            messages_handled=self._handled,
            restarts=self._restarts,
            failures=self._failures,
            last_failure=self._last_failure,
        )
