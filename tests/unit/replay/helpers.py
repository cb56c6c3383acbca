"""Small builders for replay tests: a TOML line config and JSONL trace lines."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

from edge.config import LineConfig, load_config
from edge.replay import replay_lines

HEADER = """
[line]
site = "BKK"
area = "smt"
id = "L1"
"""


def config(tmp_path: Path, body: str) -> LineConfig:
    """A line config from ``HEADER`` plus ``body`` (calendar and machines), loaded for real."""
    path = tmp_path / "line.toml"
    path.write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return load_config(path)


def line(ts: str, machine: str, sensor: str, value: Any, **extra: Any) -> str:
    """One hot-log line in the OEE.md §7 shape."""
    record = {"ts": ts, "resource_id": machine, "sensor": sensor, "value": value}
    record.update(extra)
    return json.dumps(record)


def replay(cfg: LineConfig, lines: list[str]) -> tuple[dict[str, Any], str]:
    """The report (through a JSON round trip, as printed) and what went to stderr."""
    err = io.StringIO()
    report = replay_lines(lines, cfg, err)
    return json.loads(json.dumps(report)), err.getvalue()


def shifts(report: dict[str, Any], machine: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = report["machines"][machine]["shifts"]
    return result
