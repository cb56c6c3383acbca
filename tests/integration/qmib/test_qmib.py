"""QMIB against a small real HTTP server on 127.0.0.1 (not a transport mock).

Template and equipment fetch with bearer and basic auth; a batch record
retried after a 503; a 401 reported clearly and never retried; other 4xx never
retried; QMIB down, then back: the batch record from the real order runtime,
kept in the outbox meanwhile, is delivered.
"""

from __future__ import annotations

import asyncio
import base64
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import edge.outbox
import edge.qmib
from edge.commands import OrderSpec
from edge.config import QmibConfig, load_config
from edge.metrics import component_values
from edge.orders import component as orders_component
from edge.outbox import QMIB_STREAM, OutboxComponent
from edge.qmib import (
    QMIB_REJECTED_STREAM,
    QmibAuthError,
    QmibClient,
    QmibComponent,
    QmibRecordRejected,
    QmibRejectedError,
    QmibUnavailableError,
)
from edge.secrets import Secret
from edge.service import LineService
from edge.wire import decode_envelope
from tests.integration.qmib.server import FakeQmib


def qmib_config(base_url: str, **changes: Any) -> QmibConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "base_url": base_url,
        "token": Secret("t0ken"),
        "timeout_s": 2.0,
        "retries": 2,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    values.update(changes)
    return QmibConfig(**values)


async def test_template_and_equipment_fetch_with_bearer_and_basic_auth(free_port: int) -> None:
    async with FakeQmib(free_port) as qmib:
        template = {"template_id": "BT/100", "product": "P-7", "steps": [{"name": "fill"}]}
        qmib.answer("GET", "/api/batch-templates/BT%2F100", 200, template)
        qmib.answer("GET", "/api/equipment/FILLER01", 200, {"id": "FILLER01", "class": "filler"})
        async with QmibClient(qmib_config(qmib.base_url), edge_id="edge-T-L1") as client:
            assert await client.fetch_template("BT/100") == template
        basic = qmib_config(qmib.base_url, token=None, username="edge", password=Secret("pw"))
        async with QmibClient(basic) as client:
            equipment = await client.fetch_equipment("FILLER01")
    assert equipment == {"id": "FILLER01", "class": "filler"}
    first, second = qmib.requests
    assert first.headers["authorization"] == "Bearer t0ken"
    assert "edge-T-L1" in first.headers["user-agent"]
    expected = base64.b64encode(b"edge:pw").decode()
    assert second.headers["authorization"] == f"Basic {expected}"


async def test_a_batch_record_is_retried_after_a_503_with_the_same_idempotency_key(
    free_port: int,
) -> None:
    async with FakeQmib(free_port) as qmib:
        qmib.answer("POST", "/api/batch-records", 503, {"error": "busy"}, {"Retry-After": "0"})
        qmib.answer("POST", "/api/batch-records", 201, {"id": "BR-1"})
        async with QmibClient(qmib_config(qmib.base_url)) as client:
            await client.publish_batch_record(
                {"order_id": "WO-1", "oee": float("nan")}, idempotency_key="k-1"
            )
            stats = client.statistics()
    attempts = qmib.seen("POST", "/api/batch-records")
    assert len(attempts) == 2
    assert [a.headers["idempotency-key"] for a in attempts] == ["k-1", "k-1"]
    assert attempts[1].json() == {"order_id": "WO-1", "oee": None}  # NaN is not JSON
    assert (stats.retries, stats.server_errors, stats.successes) == (1, 1, 1)


async def test_a_401_is_reported_clearly_and_not_retried(free_port: int) -> None:
    async with FakeQmib(free_port) as qmib:
        qmib.answer("GET", "/api/batch-templates/BT-1", 401, {"error": "expired"})
        qmib.answer("GET", "/api/equipment/E1", 403)
        async with QmibClient(qmib_config(qmib.base_url)) as client:
            with pytest.raises(QmibAuthError) as unauthorized:
                await client.fetch_template("BT-1")
            with pytest.raises(QmibAuthError) as forbidden:
                await client.fetch_equipment("E1")
            stats = client.statistics()
    assert str(unauthorized.value) == (
        "QMIB refused the credentials for GET /batch-templates/BT-1: HTTP 401 Unauthorized; "
        "check the bearer token ([qmib] token)"
    )
    assert "t0ken" not in str(unauthorized.value)
    assert "HTTP 403 Forbidden" in str(forbidden.value)
    assert len(qmib.requests) == 2 and stats.retries == 0 and stats.auth_failures == 2
    assert stats.last_error == str(forbidden.value)


async def test_other_4xx_are_never_retried_and_409_means_already_there(free_port: int) -> None:
    async with FakeQmib(free_port) as qmib:
        qmib.answer("POST", "/api/batch-records", 422, {"error": "target_quantity missing"})
        qmib.answer("POST", "/api/batch-records", 409, {"error": "duplicate"})
        qmib.answer("POST", "/api/alarms/A-1/ack", 204)
        async with QmibClient(qmib_config(qmib.base_url)) as client:
            with pytest.raises(QmibRejectedError) as rejected:
                await client.publish_batch_record({"x": 1}, idempotency_key="k")
            await client.acknowledge_alarm("A-1", note="seen")
            await client.publish_batch_record({"x": 1}, idempotency_key="k")
    assert rejected.value.status == 422
    assert "HTTP 422 Unprocessable Entity" in str(rejected.value)
    assert "target_quantity missing" in str(rejected.value)
    assert len(qmib.seen("POST", "/api/batch-records")) == 2  # one each, no retry
    (ack,) = qmib.seen("POST", "/api/alarms/A-1/ack")
    assert ack.json()["note"] == "seen"


async def test_unreachable_qmib_is_retried_then_unavailable(free_port: int) -> None:
    async with QmibClient(qmib_config(f"http://127.0.0.1:{free_port}/api")) as client:
        with pytest.raises(QmibUnavailableError, match="after 3 attempts"):
            await client.fetch_template("BT-1")
        stats = client.statistics()
    assert (stats.requests, stats.retries, stats.connection_errors) == (3, 2, 3)


LINE = """
[line]
site = "T"
area = "a"
id = "L1"

[calendar]
timezone = "UTC"
[[calendar.shifts]]
name = "All"
start = "00:00"
end = "00:00"

[[machines]]
id = "M1"
ideal_cycle_s = 1.0

[opcua]
enabled = false
[metrics]
enabled = false
[storage]
state_dir = "state"

[qmib]
enabled = true
base_url = "{base_url}"
token = "t0ken"
timeout_s = 1.0
retries = 1
backoff_initial_s = 0.05
backoff_max_s = 0.2
"""


async def _wait(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_qmib_down_then_back_the_batch_record_is_delivered(
    tmp_path: Path, free_port: int
) -> None:
    qmib = FakeQmib(free_port)
    path = tmp_path / "line.toml"
    path.write_text(textwrap.dedent(LINE).replace("{base_url}", qmib.base_url), encoding="utf-8")
    config = load_config(path)
    components = [edge.outbox.component, orders_component, edge.qmib.component]
    async with LineService(config, components=components) as service:
        outbox_component, _runtime, qmib_component = service.components
        assert isinstance(outbox_component, OutboxComponent)
        assert isinstance(qmib_component, QmibComponent)
        outbox = outbox_component.outbox
        commands = service.commands
        assert commands is not None
        spec = OrderSpec("WO-1", "P-7", 10, ("M1",))
        await commands.download_order(spec, source="test", user="t")
        await commands.release_order("WO-1", source="test", user="t")
        await commands.start_order("WO-1", source="test", user="t")
        await commands.complete_order("WO-1", source="test", user="t")
        # QMIB is down: the record waits in the outbox while the delivery retries.
        await _wait(lambda: outbox.depth(QMIB_STREAM) == 1, 5, "the record in the outbox")
        await _wait(lambda: qmib_component.statistics().connection_errors >= 2, 5, "retries")
        assert qmib_component.statistics().delivered == 0
        qmib.answer("POST", "/api/batch-records", 201, {"id": "BR-1"})
        await qmib.start()
        try:
            await _wait(lambda: qmib_component.statistics().delivered == 1, 10, "delivery")
            assert outbox.depth(QMIB_STREAM) == 0
            metrics = component_values(service.components)
        finally:
            await qmib.stop()

    assert metrics["qmib_requests_succeeded"] == 1
    assert metrics["qmib_requests_failed"] >= 1, "attempts that gave up while QMIB was down"
    assert metrics["qmib_request_retries"] >= 1 and metrics["qmib_requests_rejected"] == 0
    (post,) = qmib.seen("POST", "/api/batch-records")
    body = post.json()
    assert body["type"] == "BatchRecordCompleted" and body["seq"] == 1
    assert (body["edge_id"], body["site"], body["line"]) == ("edge-T-L1", "T", "L1")
    record = body["record"]["record"]
    assert record["order_id"] == "WO-1" and record["status"] == "completed"
    assert record["target_quantity"] == 10
    assert post.headers["idempotency-key"] == f"{outbox.epoch}-qmib-1"
    assert post.headers["authorization"] == "Bearer t0ken"


async def test_a_record_qmib_rejects_is_set_aside_and_reported(
    tmp_path: Path, free_port: int
) -> None:
    path = tmp_path / "line.toml"
    async with FakeQmib(free_port) as qmib:
        qmib.answer("POST", "/api/batch-records", 400, {"error": "unknown product"})
        path.write_text(
            textwrap.dedent(LINE).replace("{base_url}", qmib.base_url), encoding="utf-8"
        )
        config = load_config(path)
        seen: list[Any] = []
        components = [edge.outbox.component, orders_component, edge.qmib.component]
        async with LineService(config, components=components) as service:
            service.bus.subscribe("test", seen.extend)
            outbox = service.components[0].outbox
            qmib_component = service.components[2]
            commands = service.commands
            assert commands is not None
            await commands.download_order(
                OrderSpec("WO-2", "P-?", 5, ("M1",)), source="t", user="t"
            )
            await commands.abort_order("WO-2", "wrong product", source="t", user="t")
            await _wait(lambda: qmib_component.statistics().rejected_records == 1, 5, "set aside")
            assert outbox.depth(QMIB_STREAM) == 0 and outbox.depth(QMIB_REJECTED_STREAM) == 1
            (kept,) = await outbox.read(QMIB_REJECTED_STREAM, 0, 10)
    assert len(qmib.seen("POST", "/api/batch-records")) == 1
    (report,) = [e for e in seen if isinstance(e, QmibRecordRejected)]
    assert report.status == 400 and "unknown product" in report.reason
    stored = decode_envelope(kept.payload)
    assert stored.type == "BatchRecordCompleted"
    assert stored.data["record"]["status"] == "aborted"
