"""Memory benchmark: where the resident memory of a 50-machine line goes.

The service runs as ``edge run`` does, under :mod:`tracemalloc` (one frame per
allocation), on the same simulated line as the live-line benchmark. After READY=1
and a warm-up, this process asks it (SIGUSR1) for a snapshot of the Python heap
and reports the ten source files that hold most of it, and the packages. What
tracemalloc cannot see (the interpreter, C libraries and their heaps, the
allocator's free lists) is the resident size minus the traced total.

tracemalloc makes the service slower and bigger while it runs, so the figures
of the live-line benchmark are measured without it; this one says where.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from edge.bench import Figure, Table
from edge.bench.line_process import (
    STATE_DIR,
    NotifySocket,
    Ports,
    line_toml,
    memory_mb,
    simulator,
    start_service,
    stop,
)
from edge.serve.opcua.standard_nodes import build as build_standard_nodes

MACHINES = 50
POLL_S = 0.1
WARMUP_S = 6.0
TOP = 10
SNAPSHOT_TIMEOUT_S = 60.0

# Runs `edge run` in this interpreter with tracemalloc on; SIGUSR1 writes the
# snapshot's statistics (by file) as JSON to the path in argv[1].
_WRAPPER = """
import json, signal, sys, tracemalloc
tracemalloc.start(1)
out = sys.argv.pop(1)
def dump(*_):
    stats = tracemalloc.take_snapshot().statistics("filename")
    rows = [(s.traceback[0].filename, s.size, s.count) for s in stats]
    with open(out + ".tmp", "w") as f:
        json.dump(rows, f)
    import os; os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR1, dump)
from edge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _package(filename: str) -> str:
    """The top-level package (or stdlib module) a source file belongs to."""
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    for project in ("edge", "actors"):
        if project in parts:
            return project
    if filename.startswith("<frozen"):
        return "code objects (imports)"
    return path.stem


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("site-packages", "edge", "actors"):
        if anchor in parts:
            start = parts.index(anchor) + (1 if anchor == "site-packages" else 0)
            return "/".join(parts[start:])
    return filename


def _snapshot(work: Path) -> tuple[list[tuple[str, int, int]], float]:
    ports = Ports.free()
    config = work / "line.toml"
    config.write_text(line_toml(MACHINES, POLL_S, ports, simulator=False), "utf-8")
    out = work / "tracemalloc.json"
    build_standard_nodes(work / STATE_DIR / "cache")  # as every start but the first finds it
    notify = NotifySocket()
    command = (sys.executable, "-c", _WRAPPER, str(out), "run", "--config")
    try:
        with simulator(work, MACHINES, POLL_S, ports), (work / "service.log").open("ab") as log:
            started = start_service(config, work, notify, log, command=command)
            try:
                time.sleep(WARMUP_S)
                rss, _ = memory_mb(started.process.pid)
                started.process.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
                while not out.exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the service wrote no tracemalloc snapshot")
                    time.sleep(0.2)
            finally:
                stop(started.process)
    finally:
        notify.close()
    rows = [(str(f), int(size), int(count)) for f, size, count in json.loads(out.read_text())]
    return rows, rss


def run() -> list[Figure | Table]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-memory-") as tmp:
        rows, rss = _snapshot(Path(tmp))
    traced = sum(size for _, size, _ in rows) / 1e6
    by_package: dict[str, float] = {}
    for filename, size, _ in rows:
        key = _package(filename)
        by_package[key] = by_package.get(key, 0.0) + size / 1e6
    top_files = sorted(rows, key=lambda r: -r[1])[:TOP]
    top_packages = sorted(by_package.items(), key=lambda kv: -kv[1])[:TOP]
    return [
        Figure(
            name=f"memory ({MACHINES} machines): Python heap traced",
            value=traced,
            unit="MB",
            note=f"tracemalloc, after READY=1 and {WARMUP_S:g} s; resident {rss:.0f} MB under "
            f"tracemalloc, of which {rss - traced:.0f} MB it cannot see (interpreter, "
            "C libraries, allocator free lists) and its own bookkeeping",
        ),
        Table(
            title=f"memory: the {TOP} source files holding most of the heap",
            columns=("file", "MB", "blocks"),
            rows=tuple((_short(f), size / 1e6, count) for f, size, count in top_files),
            note="where the allocation was made (one frame)",
        ),
        Table(
            title=f"memory: the {TOP} packages holding most of the heap",
            columns=("package", "MB"),
            rows=tuple((name, mb) for name, mb in top_packages),
            note="'code objects (imports)': the modules' code and constants, made at import",
        ),
    ]
