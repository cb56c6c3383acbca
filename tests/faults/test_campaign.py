"""The short fault campaign, as part of ``make test`` (the long one is ``make faults``).

Real processes only: ``edge simulate``, mosquitto, ``edge run``; the MES and the
ground truth are this process (tests/faults/campaign.py). 3 kills of the edge,
a SIGTERM, a kill of the broker, a PLC link cut with counters far from their
old values and a machine actor crashed inside the edge, in about 80 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.campaign import Campaign, Plan
from tests.integration.mqtt.broker import needs_mosquitto

pytestmark = needs_mosquitto


@pytest.mark.timeout(300)
async def test_short_fault_campaign_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = await Campaign(Plan.short(seed=1), tmp_path, say=lambda _: None).run()
    print(report.table())
    assert report.faults == {
        "edge_kill": 3,
        "sigterm": 1,
        "broker_kill": 1,
        "link_cut": 1,
        "actor_crash": 1,
    }
    assert report.pieces_plc["total_count"] > 50, "too little production to prove anything"
    assert report.stops["observable"] > 0, "no stop to check"
    assert not any(report.lost.values()), report.table()
    assert report.ok, report.table()
