"""Replay input handling: malformed lines, files and stdin, streaming in bounded memory."""

from __future__ import annotations

import io
import json
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import LineConfig
from edge.errors import TraceError
from edge.replay import EXIT_NO_DATA, MAX_REPORTED, iso_utc, replay_lines, run_replay
from edge.sources.trace import TraceParser, parse_timestamp
from tests.unit.replay.helpers import config, line, replay, shifts

BODY = """
    [calendar]
    timezone = "UTC"
    [[calendar.shifts]]
    name = "A"
    start = "06:00"
    end = "14:00"
    [[machines]]
    id = "SMT01"
    ideal_cycle_s = 2.0
"""


@pytest.fixture
def cfg(tmp_path: Path) -> LineConfig:
    return config(tmp_path, BODY)


def test_malformed_lines_are_skipped_with_their_numbers(cfg: LineConfig) -> None:
    d = "2025-08-22T"
    lines = [
        line(d + "06:00:00Z", "SMT01", "running", True),  # 1
        line(d + "06:00:00Z", "SMT01", "total_count", 0),  # 2
        '{"ts": "2025-08-22T06:10:00Z", "resource_id": "SMT01", "sens',  # 3 bad JSON
        line(d + "06:20:00Z", "XX99", "total_count", 50),  # 4 unknown machine
        line(d + "06:30:00Z", "SMT01", "total_count", "many"),  # 5 non-numeric value
        line("2025-08-22T06:40:00", "SMT01", "total_count", 70),  # 6 no zone
        line(d + "07:00:00Z", "SMT01", "total_count", 100),  # 7 fine: +100
        line(d + "06:50:00Z", "SMT01", "total_count", 90),  # 8 out of order
        "",  # 9 blank: ignored silently
        "[1, 2]",  # 10 not an object
        json.dumps({"ts": d + "07:10:00Z", "resource_id": "SMT01", "value": 1}),  # 11 no sensor
        line(d + "07:20:00Z", "SMT01", "temp", float("nan")),  # 12 NaN is not a number
        line(d + "08:00:00Z", "SMT01", "total_count", 160),  # 13 fine: +60
    ]
    report, err = replay(cfg, lines)
    reported = [text.split(":")[0] for text in err.splitlines() if text.startswith("line ")]
    assert reported == [f"line {n}" for n in (3, 4, 5, 6, 8, 10, 11, 12)]
    assert "line 3: not valid JSON" in err
    assert "line 4: unknown machine 'XX99'" in err
    assert "line 5: value of total_count must be a number, got 'many'" in err
    assert "line 6: ts '2025-08-22T06:40:00' has no time zone" in err
    assert "line 8: out of order: SMT01/total_count at 2025-08-22T06:50:00Z" in err
    assert "8 malformed line(s) skipped of 13" in err
    # The report is built from the good lines: 06:00-08:00, 160 pieces, all running.
    [a] = shifts(report, "SMT01")
    assert a["scheduled_s"] == 7200.0
    assert a["total_count"] == 160
    assert a["run_s"] == 7200.0


def test_many_malformed_lines_are_capped_then_counted(cfg: LineConfig) -> None:
    lines = [line("2025-08-22T06:00:00Z", "SMT01", "running", True)]
    lines += ["garbage"] * (MAX_REPORTED + 5)
    report, err = replay(cfg, lines)
    assert sum(text.startswith("line ") for text in err.splitlines()) == MAX_REPORTED
    assert "... 5 more malformed lines not shown" in err
    assert f"{MAX_REPORTED + 5} malformed line(s) skipped" in err
    assert report == {"machines": {"SMT01": {"shifts": []}}}  # a zero-length span


def test_run_replay_reads_a_file_and_prints_one_json_document(
    cfg: LineConfig, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        "\n".join(
            [
                line("2025-08-22T06:00:00Z", "SMT01", "running", True),
                "not json",
                line("2025-08-22T06:30:00Z", "SMT01", "running", True),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out, err = io.StringIO(), io.StringIO()
    assert run_replay(str(trace), cfg, out, err) == 0
    report = json.loads(out.getvalue())
    assert report["machines"]["SMT01"]["shifts"][0]["run_s"] == 1800.0
    assert "line 2: not valid JSON" in err.getvalue()


def test_run_replay_reads_stdin_for_dash(
    cfg: LineConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (
        line("2025-08-22T06:00:00Z", "SMT01", "running", True)
        + "\n"
        + line("2025-08-22T06:00:10Z", "SMT01", "running", False)
        + "\n"
    ).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out, err = io.StringIO(), io.StringIO()
    assert run_replay("-", cfg, out, err) == 0
    [a] = json.loads(out.getvalue())["machines"]["SMT01"]["shifts"]
    assert a["micro_stops"] == 0  # the stop is open at the end, 0 s long: no time in PPT
    assert a["scheduled_s"] == 10.0


def test_run_replay_reports_an_unreadable_trace(cfg: LineConfig, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_replay(str(tmp_path / "missing.jsonl"), cfg, out, err) == 1
    assert "cannot read" in err.getvalue()
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "the trace has no samples"),
        ("\n\n  \n", "the trace has no samples"),
        ('not json\n{"ts": "2025-08-22T06:00:00", "resource_id": "SMT01"}\n', "all 2"),
    ],
    ids=["empty", "blank", "all-rejected"],
)
def test_a_trace_with_nothing_usable_is_a_failure(
    cfg: LineConfig, tmp_path: Path, content: str, says: str
) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text(content, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert run_replay(str(trace), cfg, out, err) == EXIT_NO_DATA
    assert out.getvalue() == ""  # no report built from nothing
    assert says in err.getvalue()
    assert "no report" in err.getvalue()
    with pytest.raises(TraceError):
        replay_lines(content.splitlines(), cfg)


def test_a_sensor_name_close_to_a_role_is_warned_about_once(cfg: LineConfig) -> None:
    d = "2025-08-22T"
    lines = [
        line(d + "06:00:00Z", "SMT01", "Running", True),  # meant: running
        line(d + "06:10:00Z", "SMT01", "Running", False),
        line(d + "06:20:00Z", "SMT01", "total_cont", 5),  # meant: total_count
        line(d + "06:30:00Z", "SMT01", "temp_zone1", 41.5),  # a process value: no warning
    ]
    report, err = replay(cfg, lines)
    warnings = [w for w in err.splitlines() if "sensor" in w]
    assert len(warnings) == 2, err
    assert "sensor 'Running'" in warnings[0] and "did you mean 'running'?" in warnings[0]
    assert "line 1:" in warnings[0]
    assert "did you mean 'total_count'?" in warnings[1]
    # Still taken as process values, as the trace format says, so 'Running' did not
    # make the machine run 06:00-06:10 (600 s). With no state signal it is counts-only:
    # running from its first sample, stopped back-dated to one ideal cycle (2 s) later.
    [a] = shifts(report, "SMT01")
    assert a["run_s"] == 2.0


def test_a_machine_whose_state_signal_never_appears_is_warned_about(tmp_path: Path) -> None:
    cfg = config(tmp_path, BODY + '    state_source = "running"\n')
    lines = [
        line("2025-08-22T06:00:00Z", "SMT01", "Running", True),
        line("2025-08-22T07:00:00Z", "SMT01", "total_count", 10),
    ]
    report, err = replay(cfg, lines)
    assert "SMT01: its state_source is 'running' but the trace has no 'running' sample" in err
    [a] = shifts(report, "SMT01")
    assert a["downtime_by_reason"] == {"comm_loss": 3600.0}


def test_trace_parser_accepts_offsets_and_optional_fields() -> None:
    parser = TraceParser()
    sample = parser.parse(
        '{"ts":"2025-08-22T07:37:41+07:00","resource_id":"SMT01","work_order_id":"WO123",'
        '"operation_id":"OP10","sensor":"total_count","value":4711,"unit":"pcs",'
        '"meta":{"site":"BKK"},"quality":"uncertain"}'
    )
    assert sample.ts == parse_timestamp("2025-08-22T00:37:41Z")
    assert (sample.machine_id, sample.signal, sample.value) == ("SMT01", "total_count", 4711)
    assert sample.work_order_id == "WO123"
    assert sample.quality.value == "uncertain"
    with pytest.raises(TraceError, match="quality"):
        parser.parse(
            '{"ts":"2025-08-22T00:00:00Z","resource_id":"A","sensor":"x","value":1,"quality":"meh"}'
        )


def _long_trace(polls: int, every_s: int = 15) -> Iterator[str]:
    """A generated trace: one machine polled every ``every_s`` seconds, a stop now and then."""
    base = 1755842400  # 2025-08-22T06:00:00Z
    count = 0
    for i in range(polls):
        ts = iso_utc(base + i * every_s)
        running = "true" if i % 97 > 2 else "false"
        count += 7 if running == "true" else 0
        yield f'{{"ts":"{ts}","resource_id":"SMT01","sensor":"running","value":{running}}}'
        yield f'{{"ts":"{ts}","resource_id":"SMT01","sensor":"total_count","value":{count}}}'
        yield f'{{"ts":"{ts}","resource_id":"SMT01","sensor":"temp","value":{20 + i % 7}.5}}'


def _peak_bytes(cfg: LineConfig, polls: int) -> tuple[int, int]:
    tracemalloc.start()
    try:
        report = replay_lines(_long_trace(polls), cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, len(shifts(report, "SMT01"))


def test_replay_streams_in_bounded_memory(cfg: LineConfig) -> None:
    # 10x the lines and 10x the time span (a few hours vs. a day and a half with
    # two shift instances) must not need more than a small constant on top:
    # lines are not kept, and closed windows are dropped as they settle.
    small, small_shifts = _peak_bytes(cfg, 800)  # 2,400 lines, 3.3 h
    large, large_shifts = _peak_bytes(cfg, 8_000)  # 24,000 lines, 33 h
    assert (small_shifts, large_shifts) == (1, 2)
    assert large < small + 32 * 1024, (small, large)
