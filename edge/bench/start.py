"""Start benchmark: ``edge run`` of a 50-machine line, spawn to READY=1 and to counting.

The service is the real ``edge run`` (OPC UA server and metrics on, one Modbus
PLC per machine on a simulator in its own process), timed on a notify socket
this process owns:

- **ready**: spawn to ``READY=1`` (everything up: actors, PLC sources, OPC UA
  server listening, metrics);
- **first sample counted**: spawn to ``STATUS=counting ...``, which the service
  sends once a machine actor has applied its first PLC samples.

Restarts (state files, the OPC UA certificate and the standard node cache
present, as systemd's restarts find them) and first starts after an install
(empty state and cache directories: the certificate is made, and the standard
nodes are built the slow way while a side process makes their cache) are
measured separately. Baseline, interleaved with the starts: a bare
interpreter that imports what ``edge run`` imports for this line.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edge.bench import Figure
from edge.bench.interleave import interleave
from edge.bench.line_process import (
    STATE_DIR,
    NotifySocket,
    Ports,
    Started,
    line_toml,
    simulator,
    start_service,
    stop,
)
from edge.serve.opcua.standard_nodes import COMPLETE_NAME, shelf_dir

MACHINES = 50
POLL_S = 0.1
ROUNDS = 3
READY_BAR_S = 2.0
COUNTING_BAR_S = 1.0
CACHE_TIMEOUT_S = 60.0
# What `edge run` imports for this config (the service, its PLC sources and components).
IMPORT_BASELINE = (
    sys.executable,
    "-c",
    "import edge.cli, edge.runtime.service, edge.sources.plc, edge.serve.metrics, edge.orders,"
    " edge.serve.opcua, edge.serve.web",
)


@dataclass(frozen=True, slots=True)
class StartTimes:
    ready_s: float
    counting_s: float


def _import_s() -> float:
    started = time.perf_counter()
    subprocess.run(IMPORT_BASELINE, check=True, timeout=60)
    return time.perf_counter() - started


def _measure(work: Path) -> tuple[list[float], list[StartTimes], list[StartTimes]]:
    ports = Ports.free()
    config = work / "line.toml"
    config.write_text(line_toml(MACHINES, POLL_S, ports, simulator=False), "utf-8")
    notify = NotifySocket()
    log = (work / "service.log").open("ab")

    def start_and_stop(*, first: bool, until_cached: bool = False) -> StartTimes:
        if first:
            shutil.rmtree(work / STATE_DIR, ignore_errors=True)
        started: Started = start_service(config, work, notify, log)
        if until_cached:  # as a service that runs longer than its first seconds leaves it
            marker = shelf_dir(work / STATE_DIR / "cache") / COMPLETE_NAME
            deadline = time.monotonic() + CACHE_TIMEOUT_S
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        stop(started.process)
        if started.first_counted_s is None:
            raise RuntimeError("the service was ready without reporting samples counted")
        return StartTimes(started.ready_s, started.first_counted_s)

    try:
        with simulator(work, MACHINES, POLL_S, ports):
            # Warms the page cache, byte-compiles, leaves the OPC UA standard node cache.
            start_and_stop(first=True, until_cached=True)
            restarts = interleave(_import_s, lambda: start_and_stop(first=False), rounds=ROUNDS)
            firsts = interleave(_import_s, lambda: start_and_stop(first=True), rounds=ROUNDS)
    finally:
        notify.close()
        log.close()
    imports = [*restarts.baseline, *firsts.baseline]
    return imports, list(restarts.subject), list(firsts.subject)


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-start-") as tmp:
        imports, restarts, firsts = _measure(Path(tmp))
    import_s = statistics.median(imports)
    figures = []
    for kind, starts, what in (
        ("restart", restarts, "state files, OPC UA certificate and node cache present"),
        (
            "first start",
            firsts,
            "empty state and cache directories: the certificate is made, the standard "
            "OPC UA nodes built without their cache",
        ),
    ):
        ready = statistics.median(s.ready_s for s in starts)
        counting = statistics.median(s.counting_s for s in starts)
        spread = ", ".join(f"{s.ready_s:.2f}" for s in starts)
        figures.append(
            Figure(
                name=f"{kind} to ready ({MACHINES} machines)",
                value=ready,
                unit="s",
                bar=f"<= {READY_BAR_S:g} s",
                meets_bar=ready <= READY_BAR_S,
                baseline_name="python start + import of the service",
                baseline_value=import_s,
                ratio=ready / import_s,
                note=f"spawn of `edge run` to READY=1; median of {len(starts)} ({spread} s); "
                f"{what}",
            )
        )
        figures.append(
            Figure(
                name=f"{kind}: first PLC samples counted ({MACHINES} machines)",
                value=counting,
                unit="s",
                bar=f"<= {COUNTING_BAR_S:g} s",
                meets_bar=counting <= COUNTING_BAR_S,
                note="spawn to the service's STATUS=counting (a machine actor applied its "
                f"first samples); median of {len(starts)} "
                f"({', '.join(f'{s.counting_s:.2f}' for s in starts)} s)",
            )
        )
    return figures
