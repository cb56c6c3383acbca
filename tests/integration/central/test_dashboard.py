"""The plant dashboard (grafana/edge-plant.json): every SQL query runs against the real
schema and the key panels show what the data says.

Grafana's macros are expanded as its PostgreSQL data source expands them
($__timeFilter, $__timeGroupAlias) and the ``line`` variable as a multi-value
list of quoted strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from edge.ingest.decode import decode_message
from edge.ingest.schema import apply_migrations
from edge.ingest.writer import StoreWriter
from tests.integration.central.batches import T0, encode, pieces
from tests.integration.central.test_store import kpis

DASHBOARD = Path(__file__).resolve().parents[3] / "grafana" / "edge-plant.json"
FROM, TO = "2025-12-25T00:00:00Z", "2026-01-08T00:00:00Z"
_INTERVALS = {"'1h'": 3600, "'1m'": 60}


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def queries() -> dict[str, str]:
    found = {p["title"]: p["targets"][0]["rawSql"] for p in load()["panels"] if p["type"] != "row"}
    for variable in load()["templating"]["list"]:
        if variable["type"] == "query":
            found[f"variable {variable['name']}"] = variable["query"]
    return found


def expand(sql: str, lines: list[str]) -> str:
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m[1]} BETWEEN '{FROM}'::timestamptz AND '{TO}'::timestamptz",
        sql,
    )
    sql = re.sub(
        r"\$__timeGroupAlias\(([^,]+),\s*('[^']+')\)",
        lambda m: (
            f'floor(extract(epoch FROM {m[1]}) / {_INTERVALS[m[2]]}) * {_INTERVALS[m[2]]} AS "time"'
        ),
        sql,
    )
    sql = sql.replace("$line", ", ".join(f"'{line}'" for line in lines))
    assert "$" not in sql, f"a macro or variable left unexpanded: {sql}"
    return sql


@pytest.fixture
async def conn(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    await apply_migrations(connection)
    pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
    writer = StoreWriter(pool, "test")
    stop = {"machine_id": "M1", "stop_id": 1, "category": "unplanned"}
    for line, reasons, run_s in (
        ("L1", {"jam": 600.0}, 3000.0),
        ("L2", {"jam": 300.0, "starved": 1500.0}, 1800.0),
    ):
        events = [
            pieces("M1", T0 + 10, 50),
            ("StopStarted", {**stop, "ts": T0 + 100, "reason": "jam"}),
            (
                "StopEnded",
                {
                    **stop,
                    "ts": T0 + 700,
                    "start": T0 + 100,
                    "end": T0 + 700,
                    "duration_s": 600.0,
                    "kind": "downtime",
                    "reason": "jam",
                },
            ),
            (
                "ShiftClosed",
                {
                    "machine_id": "M1",
                    "ts": T0 + 3600,
                    "kpis": kpis("Day@2026-01-01", T0, run_s, 50, reasons),
                },
            ),
        ]
        await writer.write(
            decode_message(
                f"edge/T/{line}/events", encode(events, first=1, edge_id=f"edge-T-{line}")
            )
        )
    await pool.close()
    try:
        yield connection
    finally:
        await connection.close()


async def test_every_query_of_the_dashboard_runs_against_the_schema(
    conn: asyncpg.Connection,
) -> None:
    found = queries()
    assert len(found) >= 9
    for title, sql in found.items():
        try:
            await conn.fetch(expand(sql, ["L1", "L2"]))
        except asyncpg.PostgresError as exc:
            pytest.fail(f"{title}: {exc}\n{sql}")


async def test_the_plant_panels_show_oee_per_line_and_the_downtime_pareto(
    conn: asyncpg.Connection,
) -> None:
    found = queries()
    lines = await conn.fetch(found["variable line"])
    assert [r[0] for r in lines] == ["L1", "L2"]
    pareto = await conn.fetch(expand(found["Downtime Pareto by reason, all lines"], ["L1", "L2"]))
    assert [(r["reason"], r["hours"]) for r in pareto] == [
        ("starved", 1500 / 3600),
        ("jam", 900 / 3600),
    ]
    oee = await conn.fetch(expand(found["Shift OEE per line"], ["L1", "L2"]))
    assert sorted((r["metric"], r["oee"]) for r in oee) == [("L1", 3000 / 3600), ("L2", 0.5)]
    only_l2 = await conn.fetch(expand(found["Shift KPIs per line"], ["L2"]))
    assert [(r["line"], r["availability"], r["pieces"]) for r in only_l2] == [("L2", 0.5, 50)]
    stops = await conn.fetch(expand(found["Longest stops"], ["L1", "L2"]))
    assert {(r["line"], r["duration_s"], r["reason"]) for r in stops} == {
        ("L1", 600.0, "jam"),
        ("L2", 600.0, "jam"),
    }
    per_hour = await conn.fetch(expand(found["Pieces per hour per line"], ["L1"]))
    assert [(r["time"], r["metric"], r["pieces"]) for r in per_hour] == [(T0, "L1", 50)]


def test_the_dashboard_uses_the_postgresql_data_source_variable() -> None:
    document = load()
    datasource = document["templating"]["list"][0]
    assert (datasource["type"], datasource["query"]) == (
        "datasource",
        "grafana-postgresql-datasource",
    )
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
