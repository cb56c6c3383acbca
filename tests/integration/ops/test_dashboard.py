"""The Grafana dashboard (grafana/edge-line.json) asks only for metrics the service exports.

Its queries are checked against a real scrape of a simulated line with a
stand-in component that provides every component metric, and (where promtool
is installed) parsed as PromQL by ``promtool check rules``; and no panel is
empty against a real scrape of a line with its real components (OPC UA server,
MQTT forwarder and outbox to a real mosquitto, QMIB client to a stand-in QMIB
server): every series selector of every panel matches at least one series.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.messages import LinkChanged
from edge.runtime.service import LineService
from edge.serve.metrics import COMPONENT_METRICS
from tests.integration.ops.lines import simulated_line_toml, write_config
from tests.integration.ops.test_metrics import FakeComponent, _promtool, metrics_factory

DASHBOARD = Path(__file__).resolve().parents[3] / "grafana" / "edge-line.json"
METRIC = re.compile(r"\bedge_[a-z_]+\b")


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def panels() -> list[dict[str, Any]]:
    return [p for p in load()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    for variable in load()["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_the_dashboard_has_the_four_views_the_line_needs() -> None:
    by_title = {p["title"]: p for p in panels()}
    oee = by_title["OEE per machine"]
    assert "edge_machine_shift_oee_ratio" in oee["targets"][0]["expr"]
    assert "{{machine}}" in oee["targets"][0]["legendFormat"]
    timeline = by_title["State timeline"]
    assert timeline["type"] == "state-timeline"
    assert "edge_machine_state{" in timeline["targets"][0]["expr"]
    texts = {
        m["text"] for m in timeline["fieldConfig"]["defaults"]["mappings"][0]["options"].values()
    }
    assert texts == {"unknown", "running", "stopped"}  # the codes 0, 1, 2 of edge_machine_state
    pareto = by_title["Downtime Pareto by reason (current shift)"]
    assert pareto["targets"][0]["expr"].startswith("sort_desc(sum by (reason)")
    assert "edge_outbox_depth_events" in by_title["Outbox depth"]["targets"][0]["expr"]


def test_the_layout_is_well_formed() -> None:
    document = load()
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in document["templating"]["list"]}
    assert variables == {"datasource", "line", "machine"}
    for expr in expressions():
        if "edge_build_info, line" not in expr:
            assert 'line="$line"' in expr, expr  # every query is scoped to the chosen line


async def test_every_metric_the_dashboard_queries_is_exported(
    tmp_path: Path, free_port_factory: Any
) -> None:
    sim_port, metrics_port = free_port_factory(), free_port_factory()
    config = write_config(tmp_path, simulated_line_toml(sim_port, metrics_port=metrics_port))
    everything = FakeComponent(stats={key: 1 for key in COMPONENT_METRICS})
    components = [metrics_factory(metrics_port), lambda s: everything]
    async with LineService(config, components=components) as service:
        await asyncio.sleep(1.0)
        # Downtime by reason has samples only once there is downtime: a link
        # loss on M1 makes comm_loss time (OEE.md §3) from here on.
        await service.machine_ref("M1").tell(LinkChanged("M1", up=False, ts=time.time()))
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient() as client:
            text = (await client.get(service.components[0].metrics_url + "/metrics")).text
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    queried = {name for expr in expressions() for name in METRIC.findall(expr)}
    assert queried, "no metric found in the dashboard"
    assert queried <= exported, f"not exported: {sorted(queried - exported)}"


@pytest.mark.skipif(_promtool() is None, reason="promtool not found (see test_metrics)")
async def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for number, expr in enumerate(expressions()):
        if expr.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        concrete = expr.replace("$line", "L1").replace("$machine", ".+")
        rules += [
            f"      - record: dashboard:query{number}",
            f"        expr: {json.dumps(concrete)}",
        ]
    path = tmp_path / "rules.yml"
    path.write_text("\n".join(rules) + "\n", encoding="utf-8")
    promtool = await asyncio.create_subprocess_exec(
        _promtool() or "promtool",
        "check",
        "rules",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await promtool.communicate()
    assert promtool.returncode == 0, output.decode()


SELECTOR = re.compile(r"\b(edge_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The series selectors of a query: metric name and label matchers."""
    concrete = expr.replace("$line", "L1").replace("$machine", ".+")
    return [(name, MATCHER.findall(labels or "")) for name, labels in SELECTOR.findall(concrete)]


def matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, value in matchers:
        have = labels.get(label, "")
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op in ("=~", "!~") and bool(re.fullmatch(value, have)) != (op == "=~"):
            return False
    return True


def _full_line_toml(
    sim_port: int, metrics_port: int, opc_port: int, mqtt_port: int, qmib_url: str
) -> str:
    text = simulated_line_toml(sim_port, metrics_port=metrics_port)
    return text.replace(
        "[opcua]\nenabled = false\n",
        f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{opc_port}/edge/"\nsecurity_policies = []\n'
        f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt_port}\n'
        "backoff_initial_s = 0.1\nbackoff_max_s = 0.5\nbatch_max_delay_s = 0.05\n"
        f'[qmib]\nenabled = true\nbase_url = "{qmib_url}"\ntoken = "t"\nretries = 0\n',
    )


async def test_no_panel_is_empty_against_a_real_scrape(
    tmp_path: Path, free_port_factory: Any
) -> None:
    from edge.runtime.service import default_components  # noqa: PLC0415 - what `edge run` starts
    from edge.serve.web import WebComponent  # noqa: PLC0415
    from tests.integration.mqtt.broker import Broker  # noqa: PLC0415
    from tests.integration.qmib.server import FakeQmib  # noqa: PLC0415

    sim_port, metrics_port, opc_port = free_port_factory(), free_port_factory(), free_port_factory()
    broker = Broker(tmp_path / "broker", free_port_factory())
    broker.start()
    try:
        async with FakeQmib(free_port_factory()) as fake_qmib:
            text = _full_line_toml(
                sim_port, metrics_port, opc_port, broker.port, fake_qmib.base_url
            )
            config = write_config(tmp_path, text)
            components = default_components(config)
            async with LineService(config, components=components) as service:
                endpoint = next(c for c in service.components if isinstance(c, WebComponent))
                await asyncio.sleep(1.0)
                # downtime by reason needs downtime: a link loss on M1 (OEE.md §3)
                await service.machine_ref("M1").tell(LinkChanged("M1", up=False, ts=time.time()))
                await asyncio.sleep(0.5)
                async with httpx.AsyncClient() as client:
                    text = (await client.get(endpoint.metrics_url + "/metrics")).text
    finally:
        broker.stop()
    series = [
        (s.name, dict(s.labels))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    empty: list[str] = []
    checked = set()
    for panel in panels():
        for target in panel["targets"]:
            for name, matchers in selectors(target["expr"]):
                checked.add(name)
                if not any(n == name and matches(labels, matchers) for n, labels in series):
                    empty.append(f"{panel['title']}: {name}{matchers}")
    assert empty == []
    # the components' own series, not stand-ins: these come from the real ones
    assert {
        "edge_opcua_sessions",
        "edge_mqtt_connected",
        "edge_outbox_depth_events",
        "edge_qmib_requests_failed_total",
        "edge_plc_poll_duration_seconds_bucket",
    } <= checked
    assert len(checked) >= 20
