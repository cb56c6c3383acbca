"""The event loop the service runs on: uvloop when importable, plain asyncio otherwise.

``EDGE_NO_UVLOOP=1`` forces plain asyncio (to compare, or to rule uvloop out
when chasing a bug).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["loop_kind", "new_event_loop", "run", "uvloop_enabled"]

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})


def uvloop_enabled() -> bool:
    """False when ``EDGE_NO_UVLOOP`` is set to a true value."""
    return os.environ.get("EDGE_NO_UVLOOP", "").strip().lower() not in _TRUE


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop if wanted and installed, else a new asyncio loop."""
    if uvloop_enabled():
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: for logs and benchmark reports."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a loop from :func:`new_event_loop`."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
