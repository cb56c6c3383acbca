"""The start-up heap policy of `edge run`: no cyclic collection while the line is
built, one collection and a freeze once it is up, the collector back on either way."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from edge.runtime.heap import RUNNING_YOUNG_THRESHOLD, long_lived_start


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()
    else:
        gc.disable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_collector_is_paused_during_the_start_and_survivors_are_frozen() -> None:
    gc.enable()
    with long_lived_start():
        assert not gc.isenabled()
        kept = [_Cycle() for _ in range(100)]
        for _ in range(100):
            _Cycle()  # garbage left by the start, only reachable through its cycle
        assert gc.get_freeze_count() == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    # the start's cyclic garbage was collected before the freeze, the survivors kept
    assert sum(1 for o in gc.get_objects() if isinstance(o, _Cycle)) == 0  # frozen: not listed
    gc.unfreeze()
    assert sum(1 for o in gc.get_objects() if isinstance(o, _Cycle)) == len(kept)


def test_the_running_service_collects_its_young_generation_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    with long_lived_start():
        pass
    assert gc.get_threshold() == (RUNNING_YOUNG_THRESHOLD, 10, 10)


def test_a_failed_start_resumes_the_collector_and_freezes_nothing() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), long_lived_start():
        raise RuntimeError("PLC map missing")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] != RUNNING_YOUNG_THRESHOLD


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    with long_lived_start():
        pass
    assert not gc.isenabled()
