"""Fixtures: a mosquitto broker per test on a free port; a watchdog against hangs."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.mqtt.broker import Broker

WATCHDOG_S = 90.0


@pytest.fixture
def broker(tmp_path: Path, free_port: int) -> Iterator[Broker]:
    instance = Broker(tmp_path / "broker", free_port)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(autouse=True)
async def _watchdog() -> AsyncIterator[None]:
    """A test still running after WATCHDOG_S fails with every task's stack, not a hang."""
    loop = asyncio.get_running_loop()

    def bite() -> None:
        print(f"\n--- watchdog: test still running after {WATCHDOG_S:g} s", file=sys.stderr)
        for task in asyncio.all_tasks(loop):
            task.print_stack(file=sys.stderr)
            if task.get_coro().__qualname__.startswith("test_"):  # type: ignore[union-attr]
                task.cancel()

    handle = loop.call_later(WATCHDOG_S, bite)
    yield
    handle.cancel()
