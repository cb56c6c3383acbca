"""The line display's JSON API and live feed against a running line service.

One machine without a PLC, driven by samples the test sends its actor (timestamps
of the last minutes, no wall-clock tick), the order runtime, a quality
station with fixed control limits, and the users of the config. Every write is
checked against the engine (the actors' own answers) and the audit trail on the
event bus.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import ClientSession, WSMsgType
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors.machine import GetShiftStops, GetStatus, SampleBatch
from actors.messages import Sample
from edge.commands import CommandAudit, OrderSpec
from edge.orders import component as orders_component
from edge.service import LineService
from edge.web import WebComponent
from tests.integration.ops.lines import write_config


def line_toml(extra: str = "") -> str:
    return textwrap.dedent(
        """
        [line]
        site = "T"
        area = "a"
        id = "L1"
        name = "Test line"

        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "All"
        start = "00:00"
        end = "00:00"

        [[machines]]
        id = "H1"
        name = "Hand"
        ideal_cycle_s = 1.0
        micro_stop_s = 120.0
        micro_stop_bucket = "availability"
        reasons = [
          { code = 17, name = "jam" },
          { name = "no bottles" },
          { name = "cleaning", category = "planned" },
        ]

        [[quality_stations]]
        id = "QS1"
        machine = "H1"
        feeds_machine_rejects = false
        [[quality_stations.characteristics]]
        name = "weight"
        unit = "g"
        baseline_mean = 100.0
        baseline_range = 1.128
        rules = [1]

        [[opcua.users]]
        name = "op1"
        password = "op1-password"
        pin = "1234"
        roles = ["operator"]
        [[opcua.users]]
        name = "lead"
        password = "lead-password"
        roles = ["supervisor"]
        [[opcua.users]]
        name = "qa"
        password = "qa-password"
        pin = "5555"
        roles = ["quality"]

        [opcua]
        enabled = false
        [metrics]
        enabled = false
        [storage]
        state_dir = "state"
        """
    ) + textwrap.dedent(extra)


class Audits:
    def __init__(self, service: LineService) -> None:
        self.seen: list[CommandAudit] = []
        service.bus.subscribe("test-audits", self._consume)

    def _consume(self, events: Any) -> None:
        self.seen.extend(e for e in events if isinstance(e, CommandAudit))

    def web(self) -> list[CommandAudit]:
        return [a for a in self.seen if a.source == "web"]


@asynccontextmanager
async def running_line(
    tmp_path: Path, port: int, extra: str = ""
) -> AsyncIterator[tuple[LineService, WebComponent, Audits]]:
    config = write_config(tmp_path, line_toml(extra))

    def web(service: LineService) -> WebComponent:
        return WebComponent(service, web_port=port)

    # No wall-clock tick: the samples' timestamps (a few minutes ago) move the clock.
    async with LineService(
        config, components=[orders_component, web], tick_interval_s=None
    ) as service:
        yield service, service.components[1], Audits(service)


async def feed(service: LineService, *samples: tuple[float, str, object]) -> None:
    batch = tuple(Sample("H1", signal, value, ts) for ts, signal, value in samples)  # type: ignore[arg-type]
    await service.machine_ref("H1").tell(SampleBatch(batch))


async def login(client: httpx.AsyncClient, user: str, secret: str) -> str:
    response = await client.post("/api/v1/session", json={"user": user, "secret": secret})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


async def test_the_board_document_is_the_engines_status(tmp_path: Path, free_port: int) -> None:
    async with (
        running_line(tmp_path, free_port) as (service, web, _),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}") as client,
    ):
        t0 = time.time()
        await feed(
            service,
            (t0, "running", True),
            (t0, "total_count", 1000),
            (t0 + 0.2, "total_count", 1001),
            (t0 + 0.3, "running", False),
        )
        await asyncio.sleep(0.4)  # the wall clock passes the last sample
        response = await client.get("/api/v1/line")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        doc = response.json()
        status = await service.machine_ref("H1").ask(GetStatus(doc["time"]))
        (machine,) = doc["machines"]
        shift = status.current_shift
        assert (machine["id"], machine["name"], machine["state"]) == ("H1", "Hand", "stopped")
        assert machine["since"] == t0 + 0.3 and machine["stop_reason"] == "unassigned"
        assert machine["reasons"] == ["jam", "no bottles", "cleaning"]
        assert machine["shift"]["good"] == shift.good_count == 1
        for ratio in ("availability", "performance", "quality", "oee"):
            assert machine["shift"][ratio] == getattr(shift, ratio), ratio
        # The open stop (availability bucket: micro-stops are downtime, so in the Pareto).
        [segment] = doc["timelines"]["H1"]
        assert segment[:4] == [t0 + 0.3, None, "micro_stop", "unassigned"]
        # The open stop and the instant before the first sample (the clock started then).
        assert {e["reason"] for e in doc["pareto"]} <= {"unassigned", "comm_loss"}
        assert "unassigned" in {e["reason"] for e in doc["pareto"]}
        assert doc["pareto"][-1]["cumulative"] == pytest.approx(1.0)
        assert doc["shift"]["name"] == "All" and doc["line"]["name"] == "Test line"
        page = (await client.get("/api/v1/machines/H1")).json()
        assert page["machine"]["state"] == "stopped"
        [stop] = page["stops"]
        assert (stop["kind"], stop["nameable"], stop["end"]) == ("micro_stop", True, None)
        assert sum(h["total"] for h in page["hours"]) == 1  # the baseline counted nothing
        [chart] = page["charts"]
        assert chart["characteristic"] == "weight" and chart["limits"]["ucl"] == 103.0
        assert (await client.get("/api/v1/machines/NOPE")).status_code == 404
        # The pages are served, with a CSP that allows no inline script.
        board = await client.get("/")
        assert board.status_code == 200 and "board.js" in board.text
        assert "script-src 'self'" in board.headers["content-security-policy"]
        assert (await client.get("/machines/H1")).status_code == 200
        assert (await client.get("/machines/NOPE")).status_code == 404
        script = await client.get("/static/js/board.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith(
            ("application/javascript", "text/javascript")
        )
        assert (await client.get("/static/../component.py")).status_code in (403, 404)
        assert web.ready()


async def test_an_operator_names_a_stop_and_the_engine_and_the_audit_show_it(
    tmp_path: Path, free_port: int
) -> None:
    async with (
        running_line(tmp_path, free_port) as (service, _, audits),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}") as client,
    ):
        t0 = time.time()
        await feed(service, (t0, "running", True), (t0 + 0.1, "running", False))
        await asyncio.sleep(0.3)  # the wall clock passes the stop's start
        url = "/api/v1/machines/H1/stop-reason"

        # No session: refused and audited, nothing changed.
        response = await client.post(url, json={"reason": "no bottles"})
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"

        # A user whose role may not (quality): refused with the OPC UA rule's words.
        csrf = await login(client, "qa", "5555")
        response = await client.post(
            url, json={"reason": "no bottles"}, headers={"X-CSRF-Token": csrf}
        )
        assert response.status_code == 403
        assert "user 'qa' (roles quality) may not call it" in response.json()["reason"]

        # The operator, with the PIN: but first without the CSRF token, then cross-site.
        csrf = await login(client, "op1", "1234")
        assert (await client.post(url, json={"reason": "no bottles"})).status_code == 403
        foreign = await client.post(
            url,
            json={"reason": "no bottles"},
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
        )
        assert (foreign.status_code, foreign.json()["code"]) == (403, "origin")
        not_json = await client.post(
            url, content=b"reason=x", headers={"X-CSRF-Token": csrf, "Content-Type": "text/plain"}
        )
        assert not_json.status_code == 400
        unknown = await client.post(
            url, json={"reason": "gremlins"}, headers={"X-CSRF-Token": csrf}
        )
        assert unknown.status_code == 400
        assert "not one of H1's reasons (jam, no bottles, cleaning)" in unknown.json()["reason"]
        stops = await service.machine_ref("H1").ask(GetShiftStops(time.time()))
        assert stops[0].reason == "unassigned"  # nothing refused changed anything

        response = await client.post(
            url,
            json={"reason": "no bottles", "stop_id": stops[0].stop_id},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"
        now = time.time()
        [stop] = await service.machine_ref("H1").ask(GetShiftStops(now))
        assert (stop.reason, stop.operator_reason) == ("no bottles", "no bottles")
        status = await service.machine_ref("H1").ask(GetStatus(now))
        # The whole open stop is now downtime for "no bottles" (besides the instant before
        # the first sample, comm_loss: the clock started when the order runtime did).
        assert set(status.current_shift.downtime_by_reason) <= {"no bottles", "comm_loss"}
        assert status.current_shift.downtime_by_reason["no bottles"] == pytest.approx(
            now - (t0 + 0.1), abs=0.5
        )

    web_audits = audits.web()
    assert [(a.user, a.command, a.accepted) for a in web_audits] == [
        ("anonymous", "set_stop_reason", False),
        ("qa", "set_stop_reason", False),
        ("op1", "set_stop_reason", False),  # no CSRF token
        ("op1", "set_stop_reason", False),  # cross-origin
        ("op1", "set_stop_reason", False),  # not JSON
        ("op1", "set_stop_reason", False),  # not a reason of the machine
        ("op1", "set_stop_reason", True),  # the order runtime's audit
    ]
    assert web_audits[-1].arguments["reason"] == "no bottles"
    assert "may not call it" in web_audits[1].result


async def test_orders_and_alarms_from_the_web_with_the_roles_of_the_config(
    tmp_path: Path, free_port: int
) -> None:
    async with (
        running_line(tmp_path, free_port) as (service, _, audits),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}") as operator,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port}") as lead,
    ):
        runtime = service.commands
        assert runtime is not None
        spec = OrderSpec("WO-7", "P-1", 100, ("H1",), ideal_cycle_s=2.0)
        await runtime.download_order(spec, source="test", user="mes")
        await runtime.release_order("WO-7", source="test", user="mes")
        op_csrf = await login(operator, "op1", "op1-password")
        lead_csrf = await login(lead, "lead", "lead-password")

        def post(client: httpx.AsyncClient, csrf: str, path: str, **body: object) -> Any:
            return client.post(path, json=body, headers={"X-CSRF-Token": csrf})

        started = await post(operator, op_csrf, "/api/v1/orders/WO-7/start")
        assert started.status_code == 200 and started.json()["result"]["status"] == "running"
        line = (await operator.get("/api/v1/line")).json()
        [order] = line["orders"]
        assert (order["id"], order["status"], order["target"]) == ("WO-7", "running", 100)
        # No good piece yet: 100 pieces at the order's ideal 2 s from now.
        assert order["expected_end"] == pytest.approx(line["time"] + 200, abs=1)
        held = await post(operator, op_csrf, "/api/v1/orders/WO-7/hold")
        assert held.status_code == 400  # holding needs a reason
        held = await post(operator, op_csrf, "/api/v1/orders/WO-7/hold", reason="no caps")
        assert held.json()["result"]["status"] == "held"
        again = await post(operator, op_csrf, "/api/v1/orders/WO-7/hold", reason="no caps")
        assert again.status_code == 409  # the line says no: held already
        assert "WO-7" in again.json()["reason"]
        # Only supervisors complete an order ([opcua.method_roles] defaults).
        refused = await post(operator, op_csrf, "/api/v1/orders/WO-7/complete")
        assert refused.status_code == 403
        done = await post(lead, lead_csrf, "/api/v1/orders/WO-7/complete")
        assert done.status_code == 200 and done.json()["result"]["status"] == "completed"
        assert (await post(lead, lead_csrf, "/api/v1/orders/WO-7/dance")).status_code == 404

        # An SPC alarm: weight 103.5 g is beyond the fixed UCL of 103 g (its moving range
        # 3.5 g is inside the MR chart's UCL 3.267 x 1.128 = 3.69 g: one alarm).
        await runtime.record_inspection(  # type: ignore[attr-defined]
            "QS1", passed=1, measurements={"weight": [100.0, 103.5]}, source="test", user="qa"
        )
        page = (await operator.get("/api/v1/machines/H1")).json()
        [alarm] = page["alarms"]
        assert (alarm["characteristic"], alarm["rule"], alarm["last_value"]) == ("weight", 1, 103.5)
        [chart] = page["charts"]
        assert [(p["value"], p["rules"]) for p in chart["points"]] == [(100.0, []), (103.5, [1])]
        acked = await post(operator, op_csrf, "/api/v1/alarms/acknowledge", alarm_id=alarm["id"])
        assert acked.status_code == 200, acked.text
        assert (await operator.get("/api/v1/machines/H1")).json()["alarms"] == []

        # Logged out, the session is gone.
        assert (
            await operator.delete("/api/v1/session", headers={"X-CSRF-Token": op_csrf})
        ).status_code == 200
        assert (await operator.get("/api/v1/session")).json()["user"] is None

    commands = [(a.user, a.command, a.accepted) for a in audits.web()]
    assert commands == [
        ("op1", "start_order", True),
        ("op1", "hold_order", False),  # no reason: refused by the order runtime
        ("op1", "hold_order", True),
        ("op1", "hold_order", False),
        ("op1", "complete_order", False),  # the role
        ("lead", "complete_order", True),
        ("op1", "acknowledge_alarm", True),
    ]


async def test_the_live_feed_pushes_a_state_change_within_a_second(
    tmp_path: Path, free_port: int
) -> None:
    async with (
        running_line(tmp_path, free_port) as (service, web, _),
        ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{free_port}/api/v1/live?machine=H1") as ws,
    ):
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["type"] == "line"
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "machine"
        now = time.time()
        await feed(service, (now - 5, "running", True), (now, "running", False))
        sent = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < 2:
            message = await ws.receive(timeout=5)
            assert message.type is WSMsgType.TEXT
            doc = json.loads(message.data)
            state = (
                doc["machines"][0]["state"] if doc["type"] == "line" else doc["machine"]["state"]
            )
            if state == "stopped":
                seen.setdefault(doc["type"], time.monotonic() - sent)
        assert max(seen.values()) < 1.0, seen  # OEE: "within 1 s of the event at the edge"
        assert web.live.clients == 1


async def test_https_with_the_configured_certificate(
    tmp_path: Path, free_port: int, tls_files: Callable[[Path], tuple[Path, Path]]
) -> None:
    cert, key = tls_files(tmp_path)
    extra = f"""
        [web]
        tls_cert_file = "{cert}"
        tls_key_file = "{key}"
        """
    async with running_line(tmp_path, free_port, extra) as (_, web, _):
        assert web.display_url == f"https://127.0.0.1:{free_port}"
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=context) as client:
            response = await client.post(
                f"https://127.0.0.1:{free_port}/api/v1/session",
                json={"user": "op1", "secret": "1234"},
            )
            assert response.status_code == 200
            cookie = response.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        with pytest.raises(httpx.RemoteProtocolError):
            async with httpx.AsyncClient() as plain:
                await plain.get(f"http://127.0.0.1:{free_port}/api/v1/line")


@pytest.fixture
def tls_files() -> Callable[[Path], tuple[Path, Path]]:
    def make(directory: Path) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_path, key_path = directory / "web.pem", directory / "web.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    return make
