"""Start benchmark: ``edge run`` of a 50-machine line, spawn to READY=1 and to counting.

The service is the real ``edge run`` (OPC UA server and metrics on, one Modbus
PLC per machine on a simulator in its own process), timed on a notify socket
this process owns:

- **ready**: spawn to ``READY=1`` (everything up: actors, PLC sources, OPC UA
  server listening, metrics);
- **first sample counted**: spawn to ``STATUS=counting ...``, which the service
  sends once a machine actor has applied its first PLC samples.

Three kinds of start are measured separately:

- **restart**: state files, the OPC UA certificate and the line's standard node
  cache present, as systemd's restarts find them;
- **first start after an install**: empty state and cache directories (the
  certificate is made), the installation's node cache present, as
  ``make install-runtime`` leaves it (``edge prepare``, run here into a
  directory of this benchmark's own);
- **first start without any node cache** (an install that skipped ``edge
  prepare``): the standard nodes are built the slow way while a side process
  makes the line's cache. No bar: it is what ``edge prepare`` is for.

Baseline, interleaved with the starts: a bare interpreter that imports what
``edge run`` imports for this line.
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
from edge.serve.opcua.standard_nodes import COMPLETE_NAME, INSTALLED_CACHE_ENV, build, shelf_dir

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


@dataclass(frozen=True, slots=True)
class Measured:
    imports: list[float]
    restarts: list[StartTimes]
    after_install: list[StartTimes]
    uncached: list[StartTimes]


def _measure(work: Path) -> Measured:
    ports = Ports.free()
    config = work / "line.toml"
    config.write_text(line_toml(MACHINES, POLL_S, ports, simulator=False), "utf-8")
    notify = NotifySocket()
    log = (work / "service.log").open("ab")
    installed = work / "installed-cache"
    build(installed)  # what `edge prepare` does at install time
    with_install = {INSTALLED_CACHE_ENV: str(installed)}
    without_install = {INSTALLED_CACHE_ENV: ""}

    def start_and_stop(
        env: dict[str, str], *, first: bool, until_cached: bool = False
    ) -> StartTimes:
        if first:
            shutil.rmtree(work / STATE_DIR, ignore_errors=True)
        started: Started = start_service(config, work, notify, log, env=env)
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
            # Warms the page cache, byte-compiles, leaves the line's node cache.
            start_and_stop(without_install, first=True, until_cached=True)
            restarts = interleave(
                _import_s, lambda: start_and_stop(without_install, first=False), rounds=ROUNDS
            )
            after_install = interleave(
                _import_s, lambda: start_and_stop(with_install, first=True), rounds=ROUNDS
            )
            uncached = interleave(
                _import_s, lambda: start_and_stop(without_install, first=True), rounds=ROUNDS
            )
    finally:
        notify.close()
        log.close()
    imports = [*restarts.baseline, *after_install.baseline, *uncached.baseline]
    return Measured(
        imports, list(restarts.subject), list(after_install.subject), list(uncached.subject)
    )


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-start-") as tmp:
        measured = _measure(Path(tmp))
    import_s = statistics.median(measured.imports)
    figures = []
    for kind, starts, what, barred in (
        (
            "restart",
            measured.restarts,
            "state files, OPC UA certificate and node cache present",
            True,
        ),
        (
            "first start after an install",
            measured.after_install,
            "empty state and cache directories: the certificate is made; the standard "
            "OPC UA nodes from the installation's cache (`edge prepare`)",
            True,
        ),
        (
            "first start without a node cache",
            measured.uncached,
            "empty state and cache directories and no `edge prepare`: the standard OPC UA "
            "nodes built without their cache while a side process makes it",
            False,
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
                bar=f"<= {READY_BAR_S:g} s" if barred else "",
                meets_bar=ready <= READY_BAR_S if barred else None,
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
