"""Reconnecting to a broker that crashed: never back off past its return (issue 20.2).

The broker is killed with SIGKILL (every connection reset, nothing saved) and
started again while the line produces. With the product's default backoff
(1 s doubling up to 30 s) the edge must be back within a second or two of the
broker, after a long outage and after a short one that follows it (the backoff
starts again after each successful connect), and it logs each outage once,
with its reason, and each recovery once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

import edge.mqtt
import edge.outbox
from edge.service import LineService
from tests.integration.conftest import _free_port
from tests.integration.mqtt.broker import Broker, needs_mosquitto
from tests.integration.mqtt.helpers import line_toml, make_config, wait_for

pytestmark = needs_mosquitto

# Generous against a loaded machine, and far below what a backoff that kept
# growing through an 8 s outage would give (attempts at ~1, 3, 7, 15 s: 7 s late).
BACK_WITHIN_S = 4.0


async def _reconnect_delay(mqtt: edge.mqtt.MqttComponent, broker: Broker, down_s: float) -> float:
    """Kill the broker, keep it down ``down_s``, start it; seconds from its start to the edge's."""
    connects = mqtt.connects
    broker.kill()
    await wait_for(lambda: not mqtt.statistics().connected, 5, "the edge to notice the crash")
    await asyncio.sleep(down_s)  # the outage itself: the broker is down this long
    await asyncio.to_thread(broker.start)
    started = time.monotonic()
    await wait_for(lambda: mqtt.connects > connects, 15, "the edge to reconnect")
    return time.monotonic() - started


async def test_a_crashed_broker_is_rejoined_within_seconds_of_its_return(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path, line_toml(broker.port, sim_port=_free_port(), backoff=None))
    assert (config.mqtt.backoff_initial_s, config.mqtt.backoff_max_s) == (1.0, 30.0)
    caplog.set_level(logging.INFO, logger="edge.mqtt")
    components = [edge.outbox.component, edge.mqtt.component]
    async with LineService(config, components=components) as service:
        mqtt = service.components[1]
        assert isinstance(mqtt, edge.mqtt.MqttComponent)
        await mqtt.wait_connected(10)
        long_outage = await _reconnect_delay(mqtt, broker, 8.0)
        short_outage = await _reconnect_delay(mqtt, broker, 1.0)
    print(f"back after the broker: {long_outage:.2f} s (8 s outage), {short_outage:.2f} s (1 s)")
    assert long_outage < BACK_WITHIN_S
    assert short_outage < BACK_WITHIN_S
    lost = [r for r in caplog.records if " lost: " in r.getMessage()]
    recovered = [r for r in caplog.records if "recovered after" in r.getMessage()]
    assert len(lost) == 2 and len(recovered) == 2, [r.getMessage() for r in caplog.records]
    assert all(r.levelno == logging.WARNING for r in lost)
