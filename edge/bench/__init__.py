"""``edge bench``: the performance figures of docs/performance.md.

Every benchmark measures, in the same run, the baseline it is judged against
(a bare asyncio queue loop, raw pymodbus reads, ...) and reports the ratio:
absolute figures drift on a shared 2-core machine, ratios hold. Where a ratio
is the bar, baseline and subject runs alternate (:mod:`edge.bench.interleave`)
and the figure carries the median ratio with its spread.

A benchmark returns :class:`Figure` rows and, where a grid of numbers says more
than rows (the live line's scaling curve), :class:`Table` objects. Both are
printed and put into one JSON document; they are never asserted in tests.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edge import __version__


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, with its bar and its in-run baseline."""

    name: str
    value: float
    unit: str
    bar: str = ""
    meets_bar: bool | None = None
    baseline_name: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    note: str = ""
    # Of an interleaved ratio (edge.bench.interleave.Ratio): the lowest and highest
    # pair and the farthest pair from the median in % of it.
    ratio_low: float | None = None
    ratio_high: float | None = None
    ratio_spread_percent: float | None = None


@dataclass(frozen=True, slots=True)
class Table:
    """A grid of figures (one row per measured configuration), printed after the figures."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[float | str | None, ...], ...]
    note: str = ""


Benchmark = Callable[[], Sequence[Figure | Table]]


def _registry() -> dict[str, Benchmark]:
    # Imported lazily: each benchmark pulls in the parts it measures.
    from edge.bench import (  # noqa: PLC0415
        actor_pipeline,
        core,
        ingest,
        live_line,
        memory,
        mqtt,
        opcua,
        outbox,
        start,
        wire,
    )

    return {
        "core": core.run,
        "actor": actor_pipeline.run,
        "live-line": live_line.run,
        "live-line-50": live_line.run_50,
        "start": start.run,
        "memory": memory.run,
        "opcua": opcua.run,
        "outbox": outbox.run,
        "mqtt": mqtt.run,
        "mqtt-drain": mqtt.run_drain,
        "ingest": ingest.run,
        "wire": wire.run,
    }


def _format_number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _format_ratio(figure: Figure) -> str:
    text = _format_number(figure.ratio)
    if figure.ratio_spread_percent is not None:
        text += f" +-{figure.ratio_spread_percent:.0f}%"
    return text


def _grid(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def render_table(figures: list[Figure]) -> str:
    headers = ("figure", "value", "unit", "bar", "ok", "baseline", "ratio")
    rows = [
        (
            f.name,
            _format_number(f.value),
            f.unit,
            f.bar,
            {True: "yes", False: "NO", None: "-"}[f.meets_bar],
            f"{f.baseline_name} {_format_number(f.baseline_value)}".strip()
            if f.baseline_name
            else "-",
            _format_ratio(f),
        )
        for f in figures
    ]
    return _grid(headers, rows)


def render_grid(table: Table) -> str:
    rows = [
        tuple(cell if isinstance(cell, str) else _format_number(cell) for cell in row)
        for row in table.rows
    ]
    text = f"{table.title}\n{_grid(table.columns, rows)}"
    return f"{text}\n{table.note}" if table.note else text


def run_benchmarks(names: list[str], json_path: Path | None = None) -> int:
    registry = _registry()
    unknown = [n for n in names if n not in registry]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(registry)}")
        return 2
    figures: list[Figure] = []
    tables: list[Table] = []
    failed = False
    for name in names or list(registry):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            items = registry[name]()
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            failed = True
            traceback.print_exc()
            figures.append(Figure(name=f"{name}: failed", value=math.nan, unit="", note=str(exc)))
            continue
        for item in items:
            if isinstance(item, Figure):
                figures.append(item)
            else:
                tables.append(item)
    document = {
        "version": __version__,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "figures": [asdict(f) for f in figures],
        "tables": [
            {
                "title": t.title,
                "note": t.note,
                "rows": [dict(zip(t.columns, r, strict=True)) for r in t.rows],
            }
            for t in tables
        ],
    }
    print(render_table(figures))
    for table in tables:
        print()
        print(render_grid(table))
    print(json.dumps(document, indent=2))
    if json_path is not None:
        json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0
