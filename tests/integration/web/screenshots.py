"""The README's pictures of the line display: ``make screenshots`` (docs/line-board.png,
docs/machine-page.png).

The demo line's machines, its calendar and quality station, with the current shift
played from its start to now by the simulator's machine model (the same model that
plays the demo line's PLC), fed to the machine actors with the model's timestamps;
an order downloaded, released and started an hour into the shift, an operator's
reasons for a few stops, the fill temperatures charted. Then headless Chromium
photographs the board and the filler's page. A line that just started shows far
less: this is a shift that has been running for a while.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

from actors.machine import SampleBatch
from actors.messages import Sample
from edge.commands import OrderSpec
from edge.config import DEFAULT_CONFIG, load_config
from edge.orders import OrdersRuntime
from edge.service import LineService
from edge.simulator.model import SimMachine, SimParams
from edge.web import WebComponent
from tests.integration.web.browser import chromium

STEP_S = 1.0
HISTORY_MAX_S = 6 * 3600.0


def _config_text(web_port: int, state_dir: Path) -> str:
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    # No PLC: the samples come from this script. No OPC UA, MQTT or metrics listener.
    text = re.sub(r"^\[\[plcs\]\].*?(?=^\[\[machines\]\])", "", text, flags=re.S | re.M)
    text = re.sub(r"^(plc|plc_map|unit_id|signal) = .*\n", "", text, flags=re.M)
    text = re.sub(r"^\[simulator\].*?(?=^\[opcua\])", "", text, flags=re.S | re.M)
    opcua = '[opcua]\nendpoint = "opc.tcp://127.0.0.1:4840/edge/"'
    text = text.replace(opcua, "[opcua]\nenabled = false")
    text = text.replace("[mqtt]\nenabled = true", "[mqtt]\nenabled = false")
    text = text.replace("[metrics]\n", "[metrics]\nenabled = false\n")
    text = text.replace("port = 9713", f"port = {web_port}")
    return text + f'\n[storage]\nstate_dir = "{state_dir}"\n'


async def _play(service: LineService, runtime: OrdersRuntime, clock: list[float]) -> None:
    config = service.config
    now = time.time()
    instance = service.calendar.instance_at(now)
    start = max(instance.start if instance is not None else now - 3600, now - HISTORY_MAX_S)
    models = {
        m.id: SimMachine(
            m.id,
            SimParams(
                ideal_cycle_s=m.params.ideal_cycle_s,
                micro_stops_per_hour=6.0,
                faults_per_hour=1.2,
                reject_ratio=0.015,
            ),
            random.Random(f"screenshots:{m.id}"),
        )
        for m in config.machines
    }
    last: dict[str, dict[str, object]] = {m: {} for m in models}
    rng = random.Random("screenshots:temperature")
    order_at = start + 3600.0
    ordered = False
    named: set[str] = set()
    t = start
    while t < now:
        clock[0] = t
        if not ordered and t >= order_at:
            spec = OrderSpec("WO-24117", "WATER-1L", 12_000, ("FILLER01", "CAPPER01"))
            await runtime.download_order(spec, source="mes", user="planner")
            await runtime.release_order("WO-24117", source="mes", user="planner")
            await runtime.start_order("WO-24117", source="web", user="operator")
            ordered = True
        for machine_id, model in models.items():
            model.advance(t - start)
            truth = model.truth()
            values: dict[str, object] = {
                "running": truth.running,
                "fault_code": truth.fault_code,
                "total_count": truth.total,
                "good_count": truth.good,
                "reject_count": truth.reject,
            }
            changed = [
                Sample(machine_id, signal, value, t)  # type: ignore[arg-type]
                for signal, value in values.items()
                if last[machine_id].get(signal) != value
            ]
            last[machine_id] = values
            if changed:
                await service.machine_ref(machine_id).tell(SampleBatch(tuple(changed)))
            # Now and then an operator names a stop the PLC gave no code for.
            if (
                not truth.running
                and truth.fault_code == 0
                and machine_id == "PACKER01"
                and int(t) % 7 == 0
                and f"{int(t) // 600}" not in named
            ):
                named.add(f"{int(t) // 600}")
                reason = rng.choice(["waiting for pallets", "carton jam", "case magazine empty"])
                await runtime.set_stop_reason(machine_id, reason, source="web", user="operator")
        if int(t - start) % 60 == 0:
            # A steady fill temperature, then a slow drift in the last half hour: the
            # run rules catch it before a point leaves the control limits.
            drift = max(0.0, (t - (now - 1800.0)) / 1800.0) * 1.6
            value = 64.0 + drift + rng.gauss(0.0, 0.35)
            await runtime.record_inspection(
                "QS-FILL",
                measurements={"temperature": [round(value, 1)]},
                ts=t,
                source="plc",
                user="",
            )
        t += STEP_S
    clock[0] = now


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        path = work / "line.toml"
        path.write_text(_config_text(port, work / "state"), encoding="utf-8")
        config = load_config(path)
        clock = [time.time()]
        runtime_box: list[OrdersRuntime] = []

        def runtime(service: LineService) -> OrdersRuntime:
            runtime_box.append(OrdersRuntime(service, clock=lambda: clock[0]))
            return runtime_box[0]

        def web(service: LineService) -> WebComponent:
            return WebComponent(service, web_port=port)

        clock[0] = time.time() - HISTORY_MAX_S  # before any sample the history has
        async with LineService(config, components=[runtime, web], tick_interval_s=None) as line:
            await _play(line, runtime_box[0], clock)
            async with chromium(work) as browser:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{port}/?kiosk=1")
                await page.wait_for_selector("#link.up", timeout=10_000)
                await asyncio.sleep(2.0)
                await page.screenshot(path=str(out / "line-board.png"))
                await page.goto(f"http://127.0.0.1:{port}/machines/FILLER01")
                await page.wait_for_selector("#link.up", timeout=10_000)
                await asyncio.sleep(2.0)
                await page.screenshot(path=str(out / "machine-page.png"), full_page=True)
    print(f"wrote {out / 'line-board.png'} and {out / 'machine-page.png'}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")))
