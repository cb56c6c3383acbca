"""How an order command runs: one at a time, whole, audited, durable before it replies.

- **One at a time**, under one lock: a command sees the line as the previous one
  left it.
- **Whole**: a caller that gives up (a front end's timeout, a cancelled task)
  does not cut a command in half; it runs to its end, like an ask whose asker
  left.
- **One step of the line's state**: the command holds the cut's gate
  (:class:`edge.cut.Gate`) while it runs and audits, so no cut falls inside it
  and a restart sees all of it or none of it.
- **Audited**: accepted or refused, as a :class:`~edge.commands.CommandAudit`
  on the bus, except for the sources that audit their calls themselves (the OPC
  UA methods).
- **Durable before the reply**: it replies only once a cut taken after it is
  committed, so a command the MES got a reply for survives a crash. When that
  commit fails the command is still done (the writer retries with its next
  commit); the outage is logged once, and its end once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from actors.orders.line import Who
from edge.commands import CommandAudit, OrderInfo
from edge.cut import Gate
from edge.errors import CommandError, EdgeError, StateStoreError
from edge.event_bus import BusEvent
from edge.logs import OutageLog

__all__ = ["CommandRunner", "describe"]

log = logging.getLogger("edge.orders")

T = TypeVar("T")


def describe(result: object) -> str:
    """The audit's result text of an accepted command."""
    if isinstance(result, OrderInfo):
        return f"order {result.order_id} is {result.status}"
    return "ok"


class CommandRunner:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        gate: Callable[[], Gate],
        persist: Callable[[], Awaitable[None]],
        publish: Callable[[Sequence[BusEvent]], None],
        refusal: Callable[[], str | None],
        self_audited_sources: frozenset[str],
    ) -> None:
        """``refusal``: why no command may run now (the runtime is not running), or None."""
        self._clock = clock
        self._gate = gate
        self._persist = persist
        self._publish = publish
        self._refusal = refusal
        self._self_audited = self_audited_sources
        self.lock = asyncio.Lock()
        self._running: set[asyncio.Future[Any]] = set()
        self._persist_outage = OutageLog(log, "order state persistence")

    async def run(
        self,
        name: str,
        arguments: dict[str, object],
        who: Who,
        action: Callable[[float], Awaitable[T]],
        describe_result: Callable[[T], str] | None = None,
    ) -> T:
        """``action(ts)`` as command ``name``; its CommandError is the refusal."""
        refused = self._refusal()
        if refused is not None:
            self._audit(self._clock(), who, name, arguments, accepted=False, result=refused)
            raise CommandError(refused)
        task = asyncio.ensure_future(self._run(name, arguments, who, action, describe_result))
        self._running.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a refusal whose caller left is audited, not lost

    async def _run(
        self,
        name: str,
        arguments: dict[str, object],
        who: Who,
        action: Callable[[float], Awaitable[T]],
        describe_result: Callable[[T], str] | None,
    ) -> T:
        async with self.lock:
            ts = self._clock()
            # The command and its audit are one step of the line's state: no cut
            # falls in between (a restart sees all of it or none of it).
            with self._gate().hold():
                try:
                    refused = self._refusal()  # stopped while it waited
                    if refused is not None:
                        raise CommandError(refused)
                    result = await action(ts)
                except CommandError as exc:
                    self._audit(ts, who, name, arguments, accepted=False, result=str(exc))
                    raise
                except EdgeError as exc:
                    self._audit(ts, who, name, arguments, accepted=False, result=f"failed: {exc}")
                    raise
                text = describe_result(result) if describe_result is not None else describe(result)
                self._audit(ts, who, name, arguments, accepted=True, result=text)
            # Durable before the reply: an acknowledged command survives a crash.
            await self.persist_now()
        return result

    async def persist_now(self) -> None:
        try:
            await self._persist()
        except StateStoreError as exc:
            # The command is done; the writer retries the commit with its next one.
            self._persist_outage.failed(exc)
        else:
            self._persist_outage.recovered()

    def _audit(
        self,
        ts: float,
        who: Who,
        command: str,
        arguments: dict[str, object],
        *,
        accepted: bool,
        result: str,
    ) -> None:
        if not accepted:
            log.info(
                "command refused: %s",
                result,
                extra={"command": command, "source": who.source, "user": who.user},
            )
        if who.source in self._self_audited:
            return
        self._publish(
            [
                CommandAudit(
                    ts=ts,
                    source=who.source,
                    user=who.user,
                    command=command,
                    arguments=arguments,
                    accepted=accepted,
                    result=result,
                )
            ]
        )
