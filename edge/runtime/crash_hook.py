"""A debug hook, off by default: crash one machine actor on ``SIGUSR1``.

The supervisor's in-process restart (one actor crashed by a bug in a handler,
restarted alone while the line runs) is otherwise reachable only by a bug. With
``EDGE_DEBUG_CRASH_ACTOR=1`` in the environment, each ``SIGUSR1`` tells the next
machine actor (in the config's order, round robin) a message it does not
handle, so its handler raises as a bug would and the supervisor restarts it.
The fault campaign (``make faults``) uses it to check, from outside the
process, that such a restart neither loses nor repeats a piece. Never set it
in production::

    EDGE_DEBUG_CRASH_ACTOR=1 edge run --config line.toml &
    kill -USR1 %1      # "debug hook: crashing machine actor M01", then "restarted"
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import Any

from actors.actor import ActorRef

log = logging.getLogger("edge.debug")

CRASH_ENV = "EDGE_DEBUG_CRASH_ACTOR"


class DebugCrash:
    """A message no machine actor handles: its handler raises, as a bug would."""


def install(machines: Mapping[str, ActorRef[Any, Any]]) -> Callable[[], None] | None:
    """Install the hook when ``EDGE_DEBUG_CRASH_ACTOR=1``; what removes it, else None."""
    if os.environ.get(CRASH_ENV, "").strip() != "1" or not machines:
        return None
    loop = asyncio.get_running_loop()
    turn = itertools.cycle(list(machines))

    def crash_next() -> None:
        machine_id = next(turn)
        log.warning("debug hook: crashing machine actor %s (SIGUSR1)", machine_id)
        try:
            machines[machine_id].post(DebugCrash())
        except Exception as exc:  # the actor is down for good or the line is stopping
            log.warning("debug hook: machine actor %s not crashed: %r", machine_id, exc)

    loop.add_signal_handler(signal.SIGUSR1, crash_next)
    log.warning("debug hook %s is on: SIGUSR1 crashes a machine actor", CRASH_ENV)

    def remove() -> None:
        with contextlib.suppress(RuntimeError):
            loop.remove_signal_handler(signal.SIGUSR1)

    return remove
