"""Live line benchmark: 50 simulated machines x 40 points polled every 100 ms (DESIGN.md §7).

Three processes, so each one's cost is its own:

- the simulator (``python -m edge simulate``): a real pymodbus server playing
  50 ``sim-line`` machines (40 points each, one holding-register block), one
  Modbus device id per machine;
- the service under test, ``python -m edge run --config ...`` as systemd
  starts it, with its OPC UA server and metrics endpoint on and one PLC
  connection per machine polled every 100 ms; it sends ``READY=1`` to a notify
  socket this benchmark owns;
- this process, which measures: start to ready (spawn to ``READY=1``) of a
  first start on an empty state directory, then over a few windows the
  service's CPU time (``/proc/<pid>/stat``) per wall second, its peak resident
  memory (``VmHWM``), and the poll requests it sent (``edge_plc_requests_total``
  from its own ``/metrics``); then it stops the service and measures restarts
  to ready (state and certificate present, as systemd's restarts find them) and
  more first starts on a wiped state directory, and reports the median of each.

Baselines measured in the same run: raw pymodbus reads of the same block from
the same simulator, back to back on one connection (reads/s, and this
process's CPU per read), and the start of a bare interpreter that only imports
the service's modules. Ratios: the service's CPU against raw pymodbus reads at
the same request rate (how many raw reads' worth of CPU one poll costs, with
decoding, actors, KPIs and metrics), poll requests/s against raw reads/s, and
start-to-ready against the bare import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO

from actors import loop as actor_loop
from edge.bench import Figure

MACHINES = 50
POINTS_PER_MACHINE = 40  # plc_maps/sim-line.toml
POLL_S = 0.1
REGISTERS = 56  # sim-line: holding registers 0..55, one block per machine
WARMUP_S = 3.0
WINDOW_S = 5.0
WINDOWS = 3
STARTS = 3  # of each kind: first starts (empty state directory) and restarts
STATE_DIR = "state"
RAW_S = 3.0
READY_TIMEOUT_S = 60.0
CPU_BAR_PERCENT = 50.0
RSS_BAR_MB = 200.0
READY_BAR_S = 5.0

SERVICE_COMMAND = (sys.executable, "-m", "edge", "run", "--config")
# What `edge run` imports for this config (the service, its PLC sources and components).
IMPORT_BASELINE = (
    sys.executable,
    "-c",
    "import edge.service, edge.plc, edge.web, edge.orders, edge.opcua_server",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def line_toml(
    sim_port: int, metrics_port: int, opcua_port: int, web_port: int, *, simulator: bool
) -> str:
    plcs = "".join(
        textwrap.dedent(
            f"""
            [[plcs]]
            id = "plc{n:02d}"
            protocol = "modbus"
            host = "127.0.0.1"
            port = {sim_port}
            poll_interval_s = {POLL_S}
            timeout_s = 1.0
            """
        )
        for n in range(1, MACHINES + 1)
    )
    machines = "".join(
        textwrap.dedent(
            f"""
            [[machines]]
            id = "M{n:02d}"
            ideal_cycle_s = {1.0 + (n % 5) * 0.25}
            plc = "plc{n:02d}"
            plc_map = "sim-line"
            unit_id = {n}
            """
        )
        for n in range(1, MACHINES + 1)
    )
    header = textwrap.dedent(
        f"""
        [line]
        site = "BENCH"
        area = "a"
        id = "L50"

        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "All"
        start = "00:00"
        end = "00:00"

        [simulator]
        enabled = {"true" if simulator else "false"}
        host = "127.0.0.1"
        port = {sim_port}
        seed = 3

        [opcua]
        enabled = true
        endpoint = "opc.tcp://127.0.0.1:{opcua_port}/edge/"
        security_none = true
        [mqtt]
        enabled = false
        [metrics]
        enabled = true
        host = "127.0.0.1"
        port = {metrics_port}
        [web]
        enabled = true
        host = "127.0.0.1"
        port = {web_port}
        [storage]
        state_dir = "{STATE_DIR}"
        """
    )
    return header + plcs + machines


# ---------------------------------------------------------------------- measuring


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _memory_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _scrape(url: str) -> dict[str, float]:
    """Sample name -> value summed over labels, from the service's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def _wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not listen on {port}") from None
            time.sleep(0.1)


async def _raw_reads(port: int, seconds: float) -> tuple[float, float]:
    """(reads/s, CPU seconds per read) of back-to-back pymodbus reads on one connection."""
    from pymodbus.client import AsyncModbusTcpClient  # noqa: PLC0415

    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2.0, reconnect_delay=0)
    await client.connect()
    try:
        reads = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            device = reads % MACHINES + 1
            response = await client.read_holding_registers(0, count=REGISTERS, device_id=device)
            if response.isError():
                raise RuntimeError(f"raw read failed: {response}")
            reads += 1
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        client.close()
    return reads / elapsed, cpu / reads


def _import_baseline_s() -> float:
    def once() -> float:
        start = time.perf_counter()
        subprocess.run(IMPORT_BASELINE, check=True, timeout=60)
        return time.perf_counter() - start

    return statistics.median(once() for _ in range(3))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _NotifySocket:
    def __init__(self) -> None:
        self.name = f"edge-bench-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)

    def wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with {process.returncode} before READY=1")
            self.sock.settimeout(min(left, 0.5))
            with contextlib.suppress(TimeoutError):
                if "READY=1" in self.sock.recv(4096).decode().split("\n"):
                    return time.perf_counter()
        raise RuntimeError(f"no READY=1 within {timeout_s} s")

    def close(self) -> None:
        self.sock.close()


def _start_service(
    config: Path, work: Path, env: dict[str, str], notify: _NotifySocket, log: IO[bytes]
) -> tuple[float, subprocess.Popen[bytes]]:
    """(spawn to READY=1 in seconds, the running service)."""
    started = time.perf_counter()
    service = subprocess.Popen(
        [*SERVICE_COMMAND, str(config)],
        cwd=work,
        env={**env, "NOTIFY_SOCKET": "@" + notify.name},
        stdout=log,
        stderr=log,
    )
    try:
        return notify.wait_ready(service, READY_TIMEOUT_S) - started, service
    except BaseException:
        _stop(service)
        raise


def _measure(work: Path) -> dict[str, float]:
    ports = (_free_port(), _free_port(), _free_port(), _free_port())
    sim_port, metrics_port = ports[0], ports[1]
    sim_config = work / "sim.toml"
    sim_config.write_text(line_toml(*ports, simulator=True), encoding="utf-8")
    service_config = work / "line.toml"
    service_config.write_text(line_toml(*ports, simulator=False), encoding="utf-8")
    env = {**os.environ}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    log = (work / "service.log").open("wb")
    simulator = subprocess.Popen(
        [sys.executable, "-m", "edge", "simulate", "--config", str(sim_config)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    notify = _NotifySocket()
    service: subprocess.Popen[bytes] | None = None
    try:
        _wait_for_port(sim_port, 30)
        raw_rate, raw_cpu_per_read = actor_loop.run(_raw_reads(sim_port, RAW_S))
        import_s = _import_baseline_s()

        first_ready_s, service = _start_service(service_config, work, env, notify, log)
        time.sleep(WARMUP_S)

        url = f"http://127.0.0.1:{metrics_port}/metrics"
        cpu_percent: list[float] = []
        request_rates: list[float] = []
        error_rates: list[float] = []
        opcua_nodes = _scrape(url).get("edge_opcua_nodes", -1.0)
        for _ in range(WINDOWS):
            cpu0, before, t0 = _cpu_seconds(service.pid), _scrape(url), time.time()
            time.sleep(WINDOW_S)
            cpu1, after, t1 = _cpu_seconds(service.pid), _scrape(url), time.time()
            cpu_percent.append(100.0 * (cpu1 - cpu0) / (t1 - t0))
            for rates, name in (
                (request_rates, "edge_plc_requests_total"),
                (error_rates, "edge_plc_errors_total"),
            ):
                rates.append((after.get(name, 0.0) - before.get(name, 0.0)) / (t1 - t0))
        rss_now, rss_peak = _memory_mb(service.pid)
        _stop(service)
        service = None

        def start_and_stop() -> float:
            ready_s, started = _start_service(service_config, work, env, notify, log)
            _stop(started)
            return ready_s

        # Restarts, as systemd's after a failure or an update: the state files and
        # the OPC UA certificate are there now.
        restarts = [start_and_stop() for _ in range(STARTS)]
        first_starts = [first_ready_s]
        for _ in range(STARTS - 1):
            state = work / STATE_DIR
            if not state.is_dir():
                raise RuntimeError(f"the service kept no state in {state}")
            shutil.rmtree(state)
            first_starts.append(start_and_stop())
    finally:
        if service is not None:
            _stop(service)
        _stop(simulator)
        notify.close()
        log.close()
    return {
        "raw_rate": raw_rate,
        "raw_cpu_per_read": raw_cpu_per_read,
        "import_s": import_s,
        "first_ready_s": statistics.median(first_starts),
        "restart_ready_s": statistics.median(restarts),
        "cpu_percent": statistics.median(cpu_percent),
        "request_rate": statistics.median(request_rates),
        "error_rate": statistics.median(error_rates),
        "rss_now": rss_now,
        "rss_peak": rss_peak,
        "opcua_nodes": opcua_nodes,
    }


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-live-") as tmp:
        m = _measure(Path(tmp))
    rate = m["request_rate"]
    expected = MACHINES / POLL_S
    raw_cpu_percent = 100.0 * m["raw_cpu_per_read"] * rate
    setup = f"{MACHINES} machines x {POINTS_PER_MACHINE} points, one PLC each, {POLL_S:g} s polls"
    return [
        Figure(
            name="live line: service CPU",
            value=m["cpu_percent"],
            unit="% of one core",
            bar=f"<= {CPU_BAR_PERCENT:.0f} %",
            meets_bar=m["cpu_percent"] <= CPU_BAR_PERCENT,
            baseline_name="raw pymodbus reads at the same rate",
            baseline_value=raw_cpu_percent,
            ratio=m["cpu_percent"] / raw_cpu_percent if raw_cpu_percent > 0 else None,
            note=f"{setup}; median of {WINDOWS} x {WINDOW_S:g} s windows; simulator in its own "
            "process",
        ),
        Figure(
            name="live line: service RSS (peak)",
            value=m["rss_peak"],
            unit="MB",
            bar=f"<= {RSS_BAR_MB:.0f} MB",
            meets_bar=m["rss_peak"] <= RSS_BAR_MB,
            note=f"VmHWM; {m['rss_now']:.0f} MB resident at the end",
        ),
        Figure(
            name="live line: poll requests/s",
            value=rate,
            unit="requests/s",
            bar=f"~{expected:.0f} ({MACHINES} x {1 / POLL_S:g}/s)",
            meets_bar=rate >= 0.95 * expected and m["error_rate"] == 0,
            baseline_name="raw pymodbus reads/s, one connection",
            baseline_value=m["raw_rate"],
            ratio=rate / m["raw_rate"] if m["raw_rate"] > 0 else None,
            note=f"{m['error_rate']:.1f} failed polls/s; "
            "counted by the service's edge_plc_requests_total",
        ),
        _ready_figure(
            "start to ready (50 machines)",
            m["restart_ready_s"],
            m,
            f"median of {STARTS} restarts: state files and the OPC UA certificate present",
        ),
        _ready_figure(
            "first start to ready (50 machines)",
            m["first_ready_s"],
            m,
            f"median of {STARTS} first starts on an empty state directory: the OPC UA "
            "server's RSA key and certificate are generated too",
        ),
    ]


def _ready_figure(name: str, value: float, m: dict[str, float], what: str) -> Figure:
    nodes = (
        f"{m['opcua_nodes']:,.0f} nodes"
        if m["opcua_nodes"] >= 0
        else "an address space of unreported size"
    )
    return Figure(
        name=name,
        value=value,
        unit="s",
        bar=f"<= {READY_BAR_S:g} s",
        meets_bar=value <= READY_BAR_S,
        baseline_name="python start + import of the service",
        baseline_value=m["import_s"],
        ratio=value / m["import_s"] if m["import_s"] > 0 else None,
        note=f"spawn of `edge run` to READY=1 on the notify socket; {what}; OPC UA server "
        f"with {nodes}",
    )
