"""An independent client: node-opcua (npm) browses, reads and subscribes.

Needs Node.js and npm; the test installs node-opcua-client into ``node/`` from
the committed package-lock.json (``npm ci``) the first time. Without node or npm
it is skipped, saying so.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from actors.machine import GetStatus, SampleBatch
from actors.messages import Sample
from edge import opcua_server
from edge.service import LineService

from .conftest import NAMESPACE, endpoint, free_port, make_config

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node"


def _installed() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node-opcua client test needs Node.js and npm (not installed here)")
    if (NODE_DIR / "node_modules" / "node-opcua-client").is_dir():
        return
    command = "ci" if (NODE_DIR / "package-lock.json").is_file() else "install"
    run = subprocess.run(
        [npm, command, "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, f"npm {command} failed:\n{run.stdout}\n{run.stderr}"


async def test_node_opcua_client_browses_reads_and_subscribes(tmp_path: Path) -> None:
    _installed()
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
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "client.js"),
            endpoint(port),
            NAMESPACE,
            "3",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line != b"SUBSCRIBED\n":
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            raise AssertionError(f"node client failed: {line!r} {err.decode()}")
        # pieces while the node client is subscribed: 50 -> 53 -> 57 (baseline 50)
        for ts, count in ((t0 + 10, 53), (t0 + 20, 57)):
            await ref.tell(SampleBatch((Sample("M1", "total_count", count, ts),)))
            await asyncio.sleep(0.5)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    (result,) = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    seen = json.loads(result.removeprefix("RESULT "))
    ns = seen["namespaceIndex"]
    assert ns >= 2
    assert {"Machines", "Orders", "QualityStations", "Shift", "Diagnostics"} <= set(
        seen["browse"]["L1"]
    )
    assert seen["browse"]["L1.Machines"] == ["M1", "M2"]
    assert {"State", "OEE", "ProcessValues", "SetStopReason"} <= set(seen["browse"]["L1.M1"])
    assert "Availability" in seen["browse"]["L1.M1.OEE"]
    assert seen["typeDefinition"] == [f"ns={ns};s=Types.MachineType"]
    reads = seen["reads"]
    assert reads["L1.M1.Name"] == {"status": "Good", "dataType": "String", "value": "Filler"}
    assert reads["L1.M1.State"]["value"] == "running"
    assert reads["L1.M1.OEE.TotalCount"]["dataType"] == "Int64"
    assert reads["L1.M1.OEE.Availability"]["dataType"] == "Double"
    # the initial value, then the engine's counts: 3 then 7 pieces
    assert seen["changes"][0] == "0"
    assert seen["changes"][-2:] == ["3", "7"]
