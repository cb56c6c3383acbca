"""Live line benchmark: the scaling curve of the real service against raw pymodbus.

Each load of the curve (:data:`CURVE`: 50, 100 and 200 machines x 40 points
every 100 ms, and 50 machines every 20 ms) runs three processes, so each one's
cost is its own:

- the simulator (``edge simulate``): a real pymodbus server playing N
  ``sim-line`` machines (40 points in one block of 56 holding registers), one
  Modbus device id per machine;
- the service under test (``edge run``, as systemd starts it: OPC UA server and
  metrics on, one PLC connection per machine), or its baseline, raw pymodbus
  reading the same blocks on the same connections and schedule and doing
  nothing with them (:mod:`edge.bench.raw_poller`);
- this process, which measures a window after a warm-up: CPU time per wall
  second (``/proc/<pid>/stat``), peak resident memory (``VmHWM``), polls/s and
  the poll-cycle jitter (how late polls start after their slot, p99) from the
  service's own ``/metrics``.

Baseline and service runs alternate (:func:`edge.bench.interleave.interleave`),
three pairs per load; the ratio is the service's CPU per poll over the
baseline's in each pair (the same as CPU over CPU while both poll at the full
rate), reported as the median with its spread. The sizing rule for a line PC is
a least-squares line through the curve: CPU % = fixed + per-1,000-tag-values/s
x rate, and MB = fixed + per-1,000-tags x tags.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.bench import Figure, Table
from edge.bench.interleave import Pairs, Ratio, interleave
from edge.bench.line_process import (
    POINTS_PER_MACHINE,
    REGISTERS,
    STATE_DIR,
    NotifySocket,
    Ports,
    cpu_seconds,
    line_toml,
    map_without_deadbands,
    memory_mb,
    scrape,
    simulator,
    start_service,
    stop,
)
from edge.serve.opcua.standard_nodes import build as build_standard_nodes


@dataclass(frozen=True, slots=True)
class Load:
    """One point of the curve."""

    machines: int
    poll_s: float
    deadbands: bool = True  # the sim-line map's deadbands on its analog values

    @property
    def tags(self) -> int:
        return self.machines * POINTS_PER_MACHINE

    @property
    def polls_per_s(self) -> float:
        return self.machines / self.poll_s

    @property
    def label(self) -> str:
        label = f"{self.machines} x {POINTS_PER_MACHINE} @ {self.poll_s * 1000:g} ms"
        return label if self.deadbands else f"{label}, no deadbands"


# The last load: the first one with every noisy change delivered, to show what the
# deadbands save.
CURVE = (
    Load(50, 0.1),
    Load(100, 0.1),
    Load(200, 0.1),
    Load(50, 0.02),
    Load(50, 0.1, deadbands=False),
)
ROUNDS = 3
WARMUP_S = 4.0
WINDOW_S = 10.0  # 6 s windows left a spread of +-20 % on a shared machine
CPU_RATIO_BAR = 1.5
SPREAD_BAR_PERCENT = 10.0
RSS_BAR_MB = 150.0
STRETCH_TAG_VALUES = 100_000
STRETCH_CPU_PERCENT = 50.0


@dataclass(frozen=True, slots=True)
class Run:
    """One measured window of the service or of the baseline."""

    cpu_percent: float
    polls_per_s: float
    errors_per_s: float
    jitter_p99_s: float
    rss_mb: float
    rss_peak_mb: float
    simulator_cpu_percent: float = math.nan

    @property
    def cpu_per_poll(self) -> float:
        return self.cpu_percent / self.polls_per_s if self.polls_per_s > 0 else math.inf

    @property
    def tag_values_per_s(self) -> float:
        return self.polls_per_s * POINTS_PER_MACHINE


@dataclass(frozen=True, slots=True)
class Measured:
    load: Load
    pairs: Pairs[Run, Run]

    @property
    def ratio(self) -> Ratio:
        return self.pairs.ratio(lambda r: r.cpu_per_poll)

    def service(self, field: str) -> float:
        return self.pairs.subject_median(lambda r: float(getattr(r, field)))

    def raw(self, field: str) -> float:
        return self.pairs.baseline_median(lambda r: float(getattr(r, field)))


# ---------------------------------------------------------------------- runs


def _raw_run(load: Load, ports: Ports) -> Run:
    command = [
        sys.executable,
        "-m",
        "edge.bench.raw_poller",
        f"--port={ports.simulator}",
        f"--units={load.machines}",
        f"--registers={REGISTERS}",
        f"--interval={load.poll_s}",
        f"--warmup={WARMUP_S}",
        f"--window={WINDOW_S}",
    ]
    done = subprocess.run(command, check=False, capture_output=True, timeout=300)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-4000:]
        raise RuntimeError(f"raw poller exited with {done.returncode}:\n{tail}")
    m = json.loads(done.stdout)
    return Run(
        cpu_percent=m["cpu_percent"],
        polls_per_s=m["polls_per_s"],
        errors_per_s=m["errors"] / WINDOW_S,
        jitter_p99_s=m["lateness_p99_s"],
        rss_mb=m["rss_mb"],
        rss_peak_mb=m["rss_peak_mb"],
    )


def _service_run(
    config: Path, work: Path, ports: Ports, simulator_pid: int, notify: NotifySocket
) -> Run:
    url = f"http://127.0.0.1:{ports.metrics}/metrics"
    with (work / "service.log").open("ab") as log:
        started = start_service(config, work, notify, log)
        pid = started.process.pid
        try:
            time.sleep(WARMUP_S)
            # Scrapes outside the CPU window: a scrape of a big line costs the service.
            before = scrape(url)
            cpu0, sim0, t0 = cpu_seconds(pid), cpu_seconds(simulator_pid), time.perf_counter()
            time.sleep(WINDOW_S)
            cpu1, sim1, t1 = cpu_seconds(pid), cpu_seconds(simulator_pid), time.perf_counter()
            after = scrape(url)
            rss, peak = memory_mb(pid)
        finally:
            stop(started.process)
    span = after.at - before.at

    def rate(name: str) -> float:
        return (after.sums.get(name, 0.0) - before.sums.get(name, 0.0)) / span

    late_after = after.histogram("edge_plc_poll_lateness_seconds")
    late_before = before.histogram("edge_plc_poll_lateness_seconds")
    jitter = (
        late_after.minus(late_before).quantile(0.99)
        if late_after is not None and late_before is not None
        else math.nan
    )
    return Run(
        cpu_percent=100.0 * (cpu1 - cpu0) / (t1 - t0),
        polls_per_s=rate("edge_plc_polls_total"),
        errors_per_s=rate("edge_plc_errors_total"),
        jitter_p99_s=jitter,
        rss_mb=rss,
        rss_peak_mb=peak,
        simulator_cpu_percent=100.0 * (sim1 - sim0) / (t1 - t0),
    )


def measure(load: Load, work: Path, rounds: int = ROUNDS) -> Measured:
    """Baseline and service alternately, ``rounds`` pairs, on one simulator."""
    ports = Ports.free()
    work = work / f"line-{load.machines}-{load.poll_s * 1000:g}ms-{load.deadbands}"
    work.mkdir(parents=True, exist_ok=True)
    plc_map = "sim-line" if load.deadbands else str(map_without_deadbands(work))
    config = work / "line.toml"
    config.write_text(
        line_toml(load.machines, load.poll_s, ports, simulator=False, plc_map=plc_map), "utf-8"
    )
    # What every start but the first finds (edge.serve.opcua.standard_nodes).
    build_standard_nodes(work / STATE_DIR / "cache")
    notify = NotifySocket()
    try:
        with simulator(work, load.machines, load.poll_s, ports, plc_map) as simulator_pid:
            pairs = interleave(
                lambda: _raw_run(load, ports),
                lambda: _service_run(config, work, ports, simulator_pid, notify),
                rounds=rounds,
            )
    finally:
        notify.close()
    return Measured(load, pairs)


# ---------------------------------------------------------------------- report


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through ``points``."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if len(set(xs)) < 2:
        return statistics.fmean(ys), math.nan
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


def _ms(seconds: float) -> float:
    return 1000.0 * seconds


def curve_table(results: Sequence[Measured]) -> Table:
    rows = []
    for m in results:
        rate = m.service("tag_values_per_s")
        cpu, peak = m.service("cpu_percent"), m.service("rss_peak_mb")
        ratio = m.ratio
        rows.append(
            (
                m.load.label,
                rate,
                m.service("polls_per_s"),
                cpu,
                m.raw("cpu_percent"),
                f"{ratio.median:.2f} +-{ratio.spread_percent:.0f}%",
                peak,
                _ms(m.service("jitter_p99_s")),
                _ms(m.raw("jitter_p99_s")),
                1000.0 * cpu / rate if rate > 0 else math.nan,
                1000.0 * peak / rate if rate > 0 else math.nan,
                m.service("simulator_cpu_percent"),
            )
        )
    return Table(
        title="live line: scaling curve (medians of the service runs; ratio to raw pymodbus "
        "reading the same blocks in the same run)",
        columns=(
            "load",
            "tag values/s",
            "polls/s",
            "CPU %",
            "raw CPU %",
            "ratio",
            "RSS peak MB",
            "jitter p99 ms",
            "raw jitter p99 ms",
            "CPU % per 1k tag values/s",
            "MB per 1k tag values/s",
            "simulator CPU %",
        ),
        rows=tuple(rows),
        note=f"{ROUNDS} baseline/service pairs per load, {WINDOW_S:g} s windows after "
        f"{WARMUP_S:g} s; CPU in % of one core; jitter: how late a poll starts after its "
        "slot on the poll grid",
    )


def figures(results: Sequence[Measured]) -> list[Figure | Table]:
    out: list[Figure | Table] = []
    for m in results:
        ratio = m.ratio
        cpu = m.service("cpu_percent")
        expected = m.load.polls_per_s
        polls = m.service("polls_per_s")
        # The load without deadbands shows what they save; the bar is on the others.
        barred = m.load.deadbands
        out.append(
            Figure(
                name=f"live line {m.load.label}: service CPU",
                value=cpu,
                unit="% of one core",
                bar=f"<= {CPU_RATIO_BAR:g} x raw, spread <= +-{SPREAD_BAR_PERCENT:g} %"
                if barred
                else "(for comparison)",
                meets_bar=ratio.median <= CPU_RATIO_BAR
                and ratio.spread_percent <= SPREAD_BAR_PERCENT
                and polls >= 0.95 * expected
                if barred
                else None,
                baseline_name="raw pymodbus, same blocks and schedule",
                baseline_value=m.raw("cpu_percent"),
                ratio=ratio.median,
                ratio_low=ratio.low,
                ratio_high=ratio.high,
                ratio_spread_percent=ratio.spread_percent,
                note=f"ratio of CPU per poll, {len(ratio.ratios)} interleaved pairs "
                f"({', '.join(f'{r:.2f}' for r in ratio.ratios)}); {polls:.0f} of "
                f"{expected:.0f} polls/s, {m.service('errors_per_s'):.1f} failed/s",
            )
        )
    first = results[0]
    if first.load == CURVE[0]:
        peak = first.service("rss_peak_mb")
        out.append(
            Figure(
                name=f"live line {first.load.label}: service RSS (peak)",
                value=peak,
                unit="MB",
                bar=f"<= {RSS_BAR_MB:g} MB",
                meets_bar=peak <= RSS_BAR_MB,
                baseline_name="raw pymodbus poller",
                baseline_value=first.raw("rss_peak_mb"),
                ratio=peak / first.raw("rss_peak_mb"),
                note=f"VmHWM; {first.service('rss_mb'):.0f} MB resident at the end of the window",
            )
        )
    for m in results:
        if m.load.machines * POINTS_PER_MACHINE / m.load.poll_s >= STRETCH_TAG_VALUES:
            cpu = m.service("cpu_percent")
            out.append(
                Figure(
                    name=f"live line {m.load.label} (stretch): CPU at "
                    f"{m.service('tag_values_per_s'):,.0f} tag values/s",
                    value=cpu,
                    unit="% of one core",
                    bar=f"<= {STRETCH_CPU_PERCENT:g} %",
                    meets_bar=cpu <= STRETCH_CPU_PERCENT,
                )
            )
    sized = [m for m in results if m.load.deadbands]
    if len(sized) > 1:
        cpu_fixed, cpu_slope = _fit(
            [(m.service("tag_values_per_s") / 1000.0, m.service("cpu_percent")) for m in sized]
        )
        mb_fixed, mb_slope = _fit([(m.load.tags / 1000.0, m.service("rss_peak_mb")) for m in sized])
        out.append(
            Figure(
                name="sizing: CPU per 1,000 tag values/s",
                value=cpu_slope,
                unit="% of one core",
                note=f"least-squares over the curve (deadbands on): CPU % = {cpu_fixed:.1f} + "
                f"{cpu_slope:.2f} x (tag values/s / 1000)",
            )
        )
        out.append(
            Figure(
                name="sizing: memory per 1,000 tags",
                value=mb_slope,
                unit="MB",
                note=f"least-squares over the curve (deadbands on): RSS peak MB = {mb_fixed:.0f} + "
                f"{mb_slope:.1f} x (tags / 1000), tags = machines x {POINTS_PER_MACHINE}",
            )
        )
    out.append(curve_table(results))
    return out


def run_curve(loads: Sequence[Load]) -> list[Figure | Table]:
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-bench-live-") as tmp:
        for load in loads:
            print(f"  live line {load.label} ...", file=sys.stderr, flush=True)
            results.append(measure(load, Path(tmp)))
    return figures(results)


def run() -> list[Figure | Table]:
    return run_curve(CURVE)


def run_50() -> list[Figure | Table]:
    """Only the first load (50 machines at 100 ms): the quick figure."""
    return run_curve(CURVE[:1])
