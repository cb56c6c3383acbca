"""The line display in a real browser, against the demo line (its in-process simulator).

Headless Chromium on the board and a machine page, a real mosquitto broker with an
independent subscriber for the MES's view, the simulator's registers as the ground
truth of the machines' state:

- the board loads with every machine of the line;
- a state change the simulator makes shows on the board within 2 s;
- a user whose role may not name a stop's reason finds the control disabled, and the
  edge refuses the request the page would send (audited to the MES as refused);
- an operator (PIN login) names the reason of the open stop: the page, the engine's
  shift report (``downtime_by_reason``), the board's Pareto and the MES (the
  ``StopReasonChanged`` event and the ``CommandAudit``) all show it;
- when the edge stops the page says the link is lost; when it is back the page is
  live again by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.machine import GetStatus
from edge.config import load_config
from edge.runtime.service import LineService, default_components
from tests.integration.mqtt.broker import Broker, needs_mosquitto
from tests.integration.mqtt.helpers import Received, consumer
from tests.integration.web.browser import chromium, demo_line_toml, needs_browser

pytestmark = [needs_browser, needs_mosquitto]

MACHINES = ("FILLER01", "CAPPER01", "LABELER01", "PACKER01")
REASON = "waiting for pallets"


def _until_packer_stops(service: LineService) -> None:
    """Advance the paused simulator until PACKER01 stops without a fault code (a stop
    whose reason an operator names, OEE.md §3)."""
    line = service.simulator
    line.pause()
    for _ in range(5000):
        truth = line.ground_truth("PACKER01")
        if not truth.running and truth.fault_code == 0:
            return
        line.advance(2.0)
    raise AssertionError("the simulated case packer never stopped")


async def _start(config_path: Path) -> LineService:
    config = load_config(config_path)
    service = LineService(config, components=default_components(config))
    await service.__aenter__()
    return service


async def test_board_operator_input_and_link_loss_in_chromium(
    tmp_path: Path, broker: Broker, free_port_factory: Callable[[], int]
) -> None:
    web_port = free_port_factory()
    config_path = tmp_path / "demo.toml"
    config_path.write_text(
        demo_line_toml(
            sim_port=free_port_factory(),
            mqtt_port=broker.port,
            metrics_port=free_port_factory(),
            web_port=web_port,
            state_dir=tmp_path / "state",
        ),
        encoding="utf-8",
    )
    base = f"http://127.0.0.1:{web_port}"
    received = Received()
    service: LineService | None = None
    async with (
        consumer(broker.port, "edge/DEMO/line1/events") as tail,
        chromium(tmp_path) as browser,
    ):
        try:
            service = await _start(config_path)
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))

            # The board loads, every machine on it, live.
            await page.goto(base + "/")
            for machine in MACHINES:
                await page.wait_for_selector(f'.tile[data-machine="{machine}"]', timeout=10_000)
            await page.wait_for_selector("#link.up", timeout=10_000)

            # A state change in the simulator's registers is on the board within 2 s.
            await page.wait_for_selector('.tile[data-machine="PACKER01"][data-state="running"]')
            _until_packer_stops(service)
            changed = time.monotonic()
            await page.wait_for_selector(
                '.tile[data-machine="PACKER01"][data-state="stopped"]', timeout=2_000
            )
            assert time.monotonic() - changed < 2.0

            # Its machine page lists the open stop, not yet named.
            await page.click('.tile[data-machine="PACKER01"]')
            await page.wait_for_selector("tr.open td[data-role=reason]", timeout=5_000)
            assert await page.text_content("tr.open td[data-role=reason]") == "unassigned"

            # A user whose role may not: the control is disabled, the edge refuses.
            await _login(page, "quality", "5555")
            assert await page.is_disabled("tr.open button")
            reply = await page.evaluate(
                """async (reason) => (await import("/static/js/api.js")).command(
                    "/api/v1/machines/PACKER01/stop-reason", { reason })""",
                REASON,
            )
            assert reply["status"] == "rejected" and reply["code"] == "forbidden", reply
            assert "user 'quality' (roles quality) may not call it" in reply["reason"]
            await page.click("#logout")
            await page.wait_for_selector("#login-open")

            # The operator names the stop's reason from the machine's list.
            await _login(page, "operator", "1234")
            assert not await page.is_disabled("tr.open button")
            await page.select_option("tr.open select", REASON)
            await page.click("tr.open button")
            await page.wait_for_selector("#toast.ok", timeout=5_000)
            await page.wait_for_function(
                """(reason) => document.querySelector("tr.open td[data-role=reason]")
                    ?.textContent === reason""",
                arg=REASON,
                timeout=5_000,
            )
            # The engine's shift report: the open micro-stop (PACKER01 puts micro-stops
            # in availability) is downtime for that reason now.
            status = await service.machine_ref("PACKER01").ask(GetStatus(time.time()))
            assert status.stop_reason == REASON
            assert status.current_shift.downtime_by_reason.get(REASON, 0.0) > 0.0
            # The board's Pareto names it.
            await page.click("#back")
            await page.wait_for_function(
                """(reason) => document.getElementById("pareto")?.textContent.includes(reason)""",
                arg=REASON,
                timeout=5_000,
            )

            # The MES sees the reason and both commands' audits.
            def seen(r: Received) -> bool:
                return bool(_reason_changes(r)) and len(_web_audits(r)) >= 2

            await received.until(tail, seen, 30, "the reason and the audits over MQTT")
            [change] = _reason_changes(received)
            assert change["machine_id"] == "PACKER01" and change["previous_reason"] == "unassigned"
            audits = _web_audits(received)
            assert [(a["user"], a["command"], a["accepted"]) for a in audits] == [
                ("quality", "set_stop_reason", False),
                ("operator", "set_stop_reason", True),
            ]

            # The edge stops: the page says so plainly.
            await service.aclose()
            service = None
            await page.wait_for_selector("body.offline", timeout=5_000)
            assert await page.text_content("#link") == "LINK LOST"
            assert await page.is_visible("#link-lost")

            # The edge is back: the page reconnects by itself.
            service = await _start(config_path)
            await page.wait_for_selector("#link.up", timeout=15_000)
            assert not await page.evaluate("document.body.classList.contains('offline')")
            assert errors == [], errors
        finally:
            if service is not None:
                await service.aclose()


async def _login(page: Any, user: str, pin: str) -> None:
    await page.click("#login-open")
    await page.fill("#login-user", user)
    for digit in pin:  # the keypad a touch screen uses
        await page.click(f'.keypad button:text-is("{digit}")')
    await page.click("#login-submit")
    await page.wait_for_selector(f'#user-name:text-is("{user}")', timeout=5_000)


def _reason_changes(received: Received) -> list[dict[str, Any]]:
    return [
        e.data
        for e in received.events
        if e.type == "StopReasonChanged" and e.data.get("reason") == REASON
    ]


def _web_audits(received: Received) -> list[dict[str, Any]]:
    return [
        e.data for e in received.events if e.type == "CommandAudit" and e.data["source"] == "web"
    ]
