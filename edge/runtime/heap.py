"""How the service treats the heap it builds at start.

Starting a line builds hundreds of thousands of objects that live as long as the
process: the OPC UA address space (~15,000 nodes with their attributes and
references), the actors, the PLC read plans. While they are built, CPython's
cyclic collector keeps promoting them and rescanning them in full collections,
which measured ~2 s of a ~5 s start for 50 machines. None of them is garbage, so
the collector is paused while the line starts; once it is up, one collection
clears what the start left behind and the survivors are frozen into the
permanent generation, so the collections of the running service scan only what
it allocates while running.

The running service allocates a few thousand short-lived containers a second
(samples, messages, futures, the deferred OPC UA values), and CPython's default
of a young collection every 700 net allocations ran one every few tens of
milliseconds on a 200-machine line, ~5 % of the service's CPU in the profile.
Once the start-up heap is frozen the young generation is raised to
:data:`RUNNING_YOUNG_THRESHOLD`: a tenth as many collections, each scanning what
a young generation holds, a few hundred kilobytes at most.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("edge.heap")

RUNNING_YOUNG_THRESHOLD = 10_000  # net allocations between young collections (CPython: 700)


@contextmanager
def long_lived_start() -> Iterator[None]:
    """Pause the cyclic collector while the block builds long-lived state; on
    success, collect once, freeze what survived and collect the young generation
    less often. A failed start only resumes the collector."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        _young, *older = gc.get_threshold()
        gc.set_threshold(RUNNING_YOUNG_THRESHOLD, *older)
        log.debug(
            "start-up heap frozen",
            extra={
                "objects": gc.get_freeze_count(),
                "collect_ms": round(1000 * (time.perf_counter() - started)),
            },
        )
    finally:
        if was_enabled:
            gc.enable()
