"""Fixtures: a mosquitto broker per test on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mqtt.broker import Broker


@pytest.fixture
def broker(tmp_path: Path, free_port: int) -> Iterator[Broker]:
    instance = Broker(tmp_path / "broker", free_port)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
