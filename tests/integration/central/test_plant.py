"""A small plant on one machine, end to end (tests/integration/central/plant.py):
lines of ``edge run`` against ``edge simulate``, one mosquitto restarted once, two
``edge ingest`` workers of which one is killed with SIGKILL, PostgreSQL.

Every machine's PLC counter delta (read over Modbus from the frozen simulator)
equals the pieces in the database, exactly; every line's sequence is stored once,
without a gap. The script runs the full-size one (20 lines, minutes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.ingest.scratch import find_binaries
from tests.integration.central.plant import Plant
from tests.integration.mqtt.broker import needs_mosquitto

pytestmark = [
    needs_mosquitto,
    pytest.mark.skipif(find_binaries() is None, reason="PostgreSQL is not installed"),
    pytest.mark.timeout(420),
]


def test_every_lines_counter_delta_equals_the_pieces_in_the_database(tmp_path: Path) -> None:
    plant = Plant(tmp_path, lines=2, log=lambda text: None)
    with plant.running():
        result = plant.run(minutes=0.4)
    assert result.mismatches == [], result.summary()
    assert result.problems == [], result.summary()
    assert result.pieces > 0, "the lines produced"
