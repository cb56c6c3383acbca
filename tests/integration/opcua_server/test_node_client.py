"""An independent client: node-opcua (npm) browses, reads and subscribes.

Needs Node.js and npm; the test installs node-opcua-client into ``node/`` from
the committed package-lock.json (``npm ci``) the first time, with npm's cache in a
temporary folder. Without node or npm it is skipped, saying so.

Nothing here reads or writes the user's home: the client's PKI (its certificate,
created on first use) is in the test's temporary directory, node-opcua's own
messages go to stderr, and the test reads only the client's protocol lines.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from actors.machine import GetStatus, SampleBatch
from actors.messages import Sample
from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server

from .conftest import NAMESPACE, endpoint, free_port, make_config
from .nodejs import ensure_installed, protocol_line, start

pytestmark = pytest.mark.integration


async def test_node_opcua_client_browses_reads_and_subscribes(tmp_path: Path) -> None:
    ensure_installed(tmp_path)
    port = free_port()
    config = make_config(tmp_path, port)
    async with LineService(
        config, components=[opcua_server.component], tick_interval_s=None
    ) as service:
        t0 = time.time() - 100
        ref = service.machine_ref("M1")
        await ref.tell(
            SampleBatch((Sample("M1", "running", True, t0), Sample("M1", "total_count", 50, t0)))
        )
        await ref.ask(GetStatus(time.time()))
        client_log = tmp_path / "node-client.log"
        proc = await start(
            "client.js", endpoint(port), NAMESPACE, "3", str(tmp_path / "node-pki"), log=client_log
        )
        assert proc.stdout is not None
        # generous: the first run also creates the client's certificate
        line = await asyncio.wait_for(protocol_line(proc.stdout), 60)
        if line != b"SUBSCRIBED\n":
            await asyncio.wait_for(proc.wait(), 30)
            raise AssertionError(f"node client failed: {line!r}\n{client_log.read_text()}")
        # pieces while the node client is subscribed: 50 -> 53 -> 57 (baseline 50)
        for ts, count in ((t0 + 10, 53), (t0 + 20, 57)):
            await ref.tell(SampleBatch((Sample("M1", "total_count", count, ts),)))
            await asyncio.sleep(0.5)
        result = await asyncio.wait_for(protocol_line(proc.stdout), 30)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0, client_log.read_text()
    assert result.startswith(b"RESULT "), client_log.read_text()
    seen = json.loads(result.removeprefix(b"RESULT "))
    ns = seen["namespaceIndex"]
    assert ns >= 2
    assert {"Machines", "Orders", "QualityStations", "Shift", "Diagnostics"} <= set(
        seen["browse"]["L1"]
    )
    assert seen["browse"]["L1.Machines"] == ["M1", "M2"]
    assert {"State", "OEE", "ProcessValues", "SetStopReason"} <= set(seen["browse"]["L1.M1"])
    assert "Availability" in seen["browse"]["L1.M1.OEE"]
    # the ObjectTypes are in the types namespace, the one after the line's
    assert seen["typeDefinition"] == [f"ns={ns + 1};s=MachineType"]
    reads = seen["reads"]
    assert reads["L1.M1.Name"] == {"status": "Good", "dataType": "String", "value": "Filler"}
    assert reads["L1.M1.State"]["value"] == "running"
    assert reads["L1.M1.OEE.TotalCount"]["dataType"] == "Int64"
    assert reads["L1.M1.OEE.Availability"]["dataType"] == "Double"
    # the initial value, then the engine's counts: 3 then 7 pieces
    assert seen["changes"][0] == "0"
    assert seen["changes"][-2:] == ["3", "7"]
