"""One-for-one supervision after Erlang/OTP.

A :class:`Supervisor` starts its children in the given order, each one fully
started (its ``on_start`` returned) before the next; it stops them in reverse
order, each within its ``shutdown_timeout_s`` (then its task is cancelled, and
that is logged). A crashed child is restarted alone, from its last snapshot, in
the same ``ActorRef`` and mailbox, when its :class:`RestartPolicy` says so.

Restart intensity: more than ``max_restarts`` restarts within ``within_s``
seconds (event-loop clock) and the supervisor gives up: it stops every remaining
child in reverse order and escalates with :class:`~actors.errors.EscalationError`.

How the application observes the end::

    async with Supervisor(specs, name="line-1") as supervisor:
        await supervisor.wait()   # raises EscalationError when it gave up

``wait()`` returns only once the supervisor was closed by someone else
(``aclose()``); leaving the ``async with`` block stops the children and, if the
supervisor had escalated and neither ``wait()`` nor anything else raised it on
the way out, raises the ``EscalationError``: an escalation is never lost, so the
service exits non-zero and systemd restarts it.

Restart policies (what ends a child for good):

- ``PERMANENT``: always restarted, also after a clean stop through its ref
  (``Supervisor.remove_child`` ends it for good).
- ``TRANSIENT``: restarted after a crash; a clean stop ends it (a work order that
  is done calls ``self.ref.stop_nowait()``).
- ``TEMPORARY``: never restarted.

A child that ended for good leaves the supervisor (its id can be used again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from actors.actor import (
    DEFAULT_MAILBOX_CAPACITY,
    DEFAULT_SNAPSHOT_EVERY_S,
    Actor,
    ActorRef,
    ActorStatistics,
    OverflowPolicy,
    _ActorCell,
    validate_actor_options,
)
from actors.errors import ActorError, EscalationError

__all__ = [
    "ChildSpec",
    "RestartPolicy",
    "Supervisor",
    "SupervisorState",
]

logger = logging.getLogger(__name__)

MsgT = TypeVar("MsgT")
ReplyT = TypeVar("ReplyT")


class RestartPolicy(Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class SupervisorState(Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ChildSpec(Generic[MsgT, ReplyT]):
    """How to start (and restart) one child. ``id`` is also the actor's name."""

    id: str
    factory: Callable[[], Actor[MsgT, ReplyT]]
    restart: RestartPolicy = RestartPolicy.PERMANENT
    shutdown_timeout_s: float = 5.0
    mailbox_capacity: int = DEFAULT_MAILBOX_CAPACITY
    overflow: OverflowPolicy = OverflowPolicy.BLOCK
    snapshot_every_s: float | None = DEFAULT_SNAPSHOT_EVERY_S
    snapshot_every_messages: int | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a child spec needs a non-empty id")
        if self.shutdown_timeout_s < 0:
            raise ValueError(
                f"child {self.id!r}: shutdown_timeout_s must not be negative, "
                f"got {self.shutdown_timeout_s}"
            )
        try:
            validate_actor_options(
                self.mailbox_capacity, self.snapshot_every_s, self.snapshot_every_messages
            )
        except ValueError as exc:
            raise ValueError(f"child {self.id!r}: {exc}") from None


@dataclass(eq=False, slots=True)
class _Child:
    spec: ChildSpec[Any, Any]
    ref: ActorRef[Any, Any] | None = None
    # Set when the supervisor itself ends this child: no restart whatever its policy.
    removing: bool = False


class Supervisor:
    """One-for-one supervisor of a set of actors; ``async with`` is its lifecycle.

    ``clock`` defaults to the event loop's clock; tests pass a fake one to move
    through the intensity window. The restart backoff doubles with each restart
    still inside the window: ``restart_backoff_s * 2**(n-1)``, capped.
    """

    def __init__(
        self,
        children: Iterable[ChildSpec[Any, Any]] = (),
        *,
        name: str = "supervisor",
        max_restarts: int = 5,
        within_s: float = 30.0,
        restart_backoff_s: float = 0.1,
        max_restart_backoff_s: float = 2.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if max_restarts < 0:
            raise ValueError(f"max_restarts must not be negative, got {max_restarts}")
        if not within_s > 0:
            raise ValueError(f"within_s must be positive, got {within_s}")
        if restart_backoff_s < 0 or max_restart_backoff_s < 0:
            raise ValueError("restart backoffs must not be negative")
        self._initial = tuple(children)
        ids = [spec.id for spec in self._initial]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"supervisor {name!r}: duplicate child ids {duplicates}")
        self.name = name
        self._max_restarts = max_restarts
        self._within_s = within_s
        self._backoff_s = restart_backoff_s
        self._max_backoff_s = max_restart_backoff_s
        self._clock = clock
        self._state = SupervisorState.NEW
        self._children: dict[str, _Child] = {}
        self._restart_times: deque[float] = deque()
        self._escalation: EscalationError | None = None
        # Once wait() or __aexit__ raised it, the block's exit does not raise it again.
        self._escalation_delivered = False
        self._escalation_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._done = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self._state.value} children={list(self._children)}>"

    @property
    def state(self) -> SupervisorState:
        return self._state

    @property
    def escalation(self) -> EscalationError | None:
        """The error it gave up with, once it has; else ``None``."""
        return self._escalation

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not SupervisorState.NEW:
            raise ActorError(
                f"supervisor {self.name!r} is {self._state.value}; a supervisor runs once"
            )
        if self._clock is None:
            self._clock = asyncio.get_running_loop().time
        self._state = SupervisorState.STARTING
        try:
            for spec in self._initial:
                await self._start_child(spec)
        except BaseException:
            self._state = SupervisorState.STOPPING
            self._closing.set()
            await self._stop_children()
            self._state = SupervisorState.FAILED
            self._done.set()
            raise
        self._state = SupervisorState.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        if exc is None and self._escalation is not None and not self._escalation_delivered:
            self._escalation_delivered = True
            raise self._escalation

    async def aclose(self) -> None:
        """Stop every child in reverse start order; idempotent. Never raises the escalation."""
        if self._escalation_task is not None:
            await asyncio.wait({self._escalation_task})
            return
        if self._state is SupervisorState.NEW:
            self._state = SupervisorState.STOPPED
            self._done.set()
            return
        if self._state in (SupervisorState.STOPPING, SupervisorState.STARTING):
            await self._done.wait()
            return
        if self._state is not SupervisorState.RUNNING:
            return
        self._state = SupervisorState.STOPPING
        self._closing.set()
        try:
            await self._stop_children()
        finally:
            self._state = SupervisorState.STOPPED
            self._done.set()

    async def wait(self) -> None:
        """Wait until the supervisor has ended; raise ``EscalationError`` if it gave up."""
        await self._done.wait()
        if self._escalation is not None:
            self._escalation_delivered = True
            raise self._escalation

    # -- children ----------------------------------------------------------

    async def add_child(self, spec: ChildSpec[MsgT, ReplyT]) -> ActorRef[MsgT, ReplyT]:
        """Start one more child (after the others; stopped before them). Returns its ref."""
        if self._state is not SupervisorState.RUNNING:
            raise ActorError(
                f"supervisor {self.name!r} is {self._state.value}; cannot add child {spec.id!r}"
            )
        return await self._start_child(spec)

    async def remove_child(self, child_id: str) -> None:
        """Stop one child for good (within its shutdown timeout), whatever its policy."""
        child = self._children.pop(child_id, None)
        if child is None:
            raise KeyError(f"supervisor {self.name!r} has no child {child_id!r}")
        child.removing = True
        if child.ref is not None:
            await child.ref.stop(timeout=child.spec.shutdown_timeout_s)

    def ref(self, child_id: str) -> ActorRef[Any, Any]:
        child = self._children.get(child_id)
        if child is None or child.ref is None:
            raise KeyError(f"supervisor {self.name!r} has no child {child_id!r}")
        return child.ref

    def child_ids(self) -> tuple[str, ...]:
        """Current children in start order."""
        return tuple(self._children)

    def statistics(self) -> tuple[ActorStatistics, ...]:
        """One record per current child, in start order."""
        return tuple(
            child.ref.statistics() for child in self._children.values() if child.ref is not None
        )

    async def _start_child(self, spec: ChildSpec[MsgT, ReplyT]) -> ActorRef[MsgT, ReplyT]:
        if spec.id in self._children:
            raise ValueError(f"supervisor {self.name!r} already has a child {spec.id!r}")
        child = _Child(spec)

        async def on_exit(failure: BaseException | None, during: str) -> bool:
            return await self._child_exited(child, failure, during)

        cell: _ActorCell[MsgT, ReplyT] = _ActorCell(
            spec.factory(),
            name=spec.id,
            factory=spec.factory,
            mailbox_capacity=spec.mailbox_capacity,
            overflow=spec.overflow,
            snapshot_every_s=spec.snapshot_every_s,
            snapshot_every_messages=spec.snapshot_every_messages,
            on_exit=on_exit,
        )
        child.ref = cell.ref
        # Registered before it starts, so a shutdown that begins meanwhile stops it too.
        self._children[spec.id] = child
        try:
            await cell.start()
        except BaseException:
            if self._children.get(spec.id) is child:
                del self._children[spec.id]
            raise
        return cell.ref

    async def _stop_children(self) -> None:
        for child in reversed(list(self._children.values())):
            if child.ref is not None:
                await child.ref.stop(timeout=child.spec.shutdown_timeout_s)

    # -- failures ----------------------------------------------------------

    async def _child_exited(
        self, child: _Child, failure: BaseException | None, during: str
    ) -> bool:
        """Decide whether ``child`` restarts; runs in the child's task."""
        name = child.spec.id
        if child.removing or self._state is not SupervisorState.RUNNING:
            if failure is not None:
                logger.error(
                    "actor %s crashed %s: %r; not restarted: supervisor %s is %s",
                    name,
                    during,
                    failure,
                    self.name,
                    self._state.value,
                    exc_info=failure,
                )
            return False
        policy = child.spec.restart
        if failure is None:
            restart = policy is RestartPolicy.PERMANENT
        else:
            restart = policy is not RestartPolicy.TEMPORARY
        if not restart:
            if failure is not None:
                logger.error(
                    "actor %s crashed %s: %r; not restarted (%s)",
                    name,
                    during,
                    failure,
                    policy.value,
                    exc_info=failure,
                )
            else:
                logger.info("actor %s stopped; not restarted (%s)", name, policy.value)
            if self._children.get(name) is child:
                del self._children[name]
            return False

        assert self._clock is not None
        now = self._clock()
        window = self._restart_times
        while window and window[0] <= now - self._within_s:
            window.popleft()
        what = f"crashed {during}: {failure!r}" if failure is not None else "stopped"
        if len(window) >= self._max_restarts:
            logger.error(
                "actor %s %s; restart intensity exceeded (%d in %s s): "
                "supervisor %s stops all children and escalates",
                name,
                what,
                self._max_restarts,
                self._within_s,
                self.name,
                exc_info=failure,
            )
            self._escalate(name, what, failure)
            return False
        window.append(now)
        logger.error(
            "actor %s %s; restarting (%d/%d in %s s)",
            name,
            what,
            len(window),
            self._max_restarts,
            self._within_s,
            exc_info=failure,
        )
        delay = min(self._backoff_s * 2 ** (len(window) - 1), self._max_backoff_s)
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
        return self._state is SupervisorState.RUNNING and not child.removing

    def _escalate(self, child_id: str, what: str, failure: BaseException | None) -> None:
        self._state = SupervisorState.STOPPING
        self._closing.set()
        error = EscalationError(
            f"supervisor {self.name!r} gave up: more than {self._max_restarts} restarts "
            f"within {self._within_s} s; last: actor {child_id!r} {what}"
        )
        error.__cause__ = failure
        self._escalation = error
        self._escalation_task = asyncio.get_running_loop().create_task(
            self._stop_after_escalation(), name=f"supervisor {self.name} escalation"
        )

    async def _stop_after_escalation(self) -> None:
        try:
            await self._stop_children()
        finally:
            self._state = SupervisorState.FAILED
            self._done.set()
            logger.error("supervisor %s stopped all its children and escalates", self.name)
