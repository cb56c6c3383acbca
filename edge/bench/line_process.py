"""A simulated line and the service under test as real processes, for the benchmarks.

- :func:`line_toml`: the config of an N-machine line (one Modbus PLC per machine,
  each its own unit id on one simulator, the ``sim-line`` map: 40 points in one
  block of 56 holding registers), with the OPC UA server and metrics on;
- :func:`simulator`: ``edge simulate`` for that config, in its own process;
- :func:`start_service`: ``edge run`` as systemd starts it, with a notify socket
  this process owns, timed from spawn to ``READY=1`` and to the first samples
  counted (the service's ``STATUS=counting ...``);
- :func:`cpu_seconds`, :func:`memory_mb`, :func:`scrape`: what is measured of a
  running process (``/proc`` and its ``/metrics``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edge.histogram import HistogramSnapshot

POINTS_PER_MACHINE = 40  # plc_maps/sim-line.toml
REGISTERS = 56  # sim-line: holding registers 0..55, one block per machine
READY_TIMEOUT_S = 120.0
STATE_DIR = "state"
SERVICE_COMMAND = (sys.executable, "-m", "edge", "run", "--config")
SIMULATOR_COMMAND = (sys.executable, "-m", "edge", "simulate", "--config")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Ports:
    simulator: int
    metrics: int
    opcua: int
    web: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())


def line_toml(
    machines: int, poll_s: float, ports: Ports, *, simulator: bool, plc_map: str = "sim-line"
) -> str:
    """An N-machine line on one simulator; ``simulator``: the config of ``edge simulate``;
    ``plc_map``: the map's name or path (one with the ``sim-line`` layout)."""
    plcs = "".join(
        textwrap.dedent(
            f"""
            [[plcs]]
            id = "plc{n:03d}"
            protocol = "modbus"
            host = "127.0.0.1"
            port = {ports.simulator}
            poll_interval_s = {poll_s}
            timeout_s = 1.0
            """
        )
        for n in range(1, machines + 1)
    )
    machine_tables = "".join(
        textwrap.dedent(
            f"""
            [[machines]]
            id = "M{n:03d}"
            ideal_cycle_s = {1.0 + (n % 5) * 0.25}
            plc = "plc{n:03d}"
            plc_map = "{plc_map}"
            unit_id = {n}
            """
        )
        for n in range(1, machines + 1)
    )
    header = textwrap.dedent(
        f"""
        [line]
        site = "BENCH"
        area = "a"
        id = "L{machines}"

        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "All"
        start = "00:00"
        end = "00:00"

        [simulator]
        enabled = {"true" if simulator else "false"}
        host = "127.0.0.1"
        port = {ports.simulator}
        seed = 3

        [opcua]
        enabled = true
        endpoint = "opc.tcp://127.0.0.1:{ports.opcua}/edge/"
        security_none = true
        [mqtt]
        enabled = false
        [metrics]
        enabled = true
        host = "127.0.0.1"
        port = {ports.metrics}
        [web]
        enabled = true
        host = "127.0.0.1"
        port = {ports.web}
        [storage]
        state_dir = "{STATE_DIR}"
        """
    )
    return header + plcs + machine_tables


def bench_env() -> dict[str, str]:
    env = {**os.environ}
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    return env


# ---------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int | str = "self") -> tuple[float, float]:
    """(current, peak) resident set size of a process in MB (VmRSS, VmHWM)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


@dataclass(frozen=True, slots=True)
class Scrape:
    """One read of the service's /metrics: counters summed over labels, and one
    histogram summed over its ``plc`` label."""

    at: float  # time.perf_counter() when it was read
    sums: dict[str, float]
    buckets: dict[str, dict[float, float]]  # histogram name -> le -> cumulative count

    def histogram(self, name: str) -> HistogramSnapshot | None:
        cumulative = self.buckets.get(name)
        if not cumulative:
            return None
        bounds = sorted(b for b in cumulative if b != float("inf"))
        counts, below = [], 0.0
        for bound in [*bounds, float("inf")]:
            counts.append(int(cumulative.get(bound, below) - below))
            below = cumulative.get(bound, below)
        return HistogramSnapshot(tuple(bounds), tuple(counts), self.sums.get(f"{name}_sum", 0.0))


def scrape(url: str) -> Scrape:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    at = time.perf_counter()
    sums: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
            if sample.name.endswith("_bucket") and "le" in sample.labels:
                le = float(sample.labels["le"])
                per_le = buckets.setdefault(family.name, {})
                per_le[le] = per_le.get(le, 0.0) + sample.value
    return Scrape(at, sums, buckets)


def wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------- processes


def map_without_deadbands(directory: Path) -> Path:
    """The ``sim-line`` map with its deadbands taken out: every change is delivered."""
    from edge.config import BUILTIN_PLC_MAPS  # noqa: PLC0415
    from edge.sources.plc import find_plc_map  # noqa: PLC0415

    found = find_plc_map("sim-line", [BUILTIN_PLC_MAPS])
    if found is None:
        raise RuntimeError(f"no sim-line map in {BUILTIN_PLC_MAPS}")
    text = found.read_text(encoding="utf-8")
    path = directory / "sim-line-no-deadband.toml"
    lines = [line for line in text.splitlines() if not line.startswith("deadband")]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def simulator(
    work: Path, machines: int, poll_s: float, ports: Ports, plc_map: str = "sim-line"
) -> Iterator[int]:
    """``edge simulate`` playing the line; yields its pid once it listens."""
    config = work / f"sim-{machines}.toml"
    config.write_text(
        line_toml(machines, poll_s, ports, simulator=True, plc_map=plc_map), encoding="utf-8"
    )
    process = subprocess.Popen(
        [*SIMULATOR_COMMAND, str(config)],
        cwd=work,
        env=bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(ports.simulator, 60)
        yield process.pid
    finally:
        stop(process)


class NotifySocket:
    """The systemd notify socket the service reports to (an abstract unix socket)."""

    def __init__(self) -> None:
        self.name = f"edge-bench-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)

    def drain(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while self.sock.recv(4096):
                pass
        self.sock.setblocking(True)

    def wait_ready(
        self, process: subprocess.Popen[bytes], timeout_s: float
    ) -> tuple[float, float | None]:
        """(perf_counter at READY=1, at the first STATUS=counting... or None)."""
        deadline = time.monotonic() + timeout_s
        counting: float | None = None
        while (left := deadline - time.monotonic()) > 0:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with {process.returncode} before READY=1")
            self.sock.settimeout(min(left, 0.5))
            try:
                fields = self.sock.recv(4096).decode().split("\n")
            except TimeoutError:
                continue
            now = time.perf_counter()
            if counting is None and any(f.startswith("STATUS=counting") for f in fields):
                counting = now
            if "READY=1" in fields:
                return now, counting
        raise RuntimeError(f"no READY=1 within {timeout_s} s")

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True, slots=True)
class Started:
    process: subprocess.Popen[bytes]
    ready_s: float  # spawn to READY=1
    first_counted_s: float | None  # spawn to the first samples counted


def start_service(
    config: Path,
    work: Path,
    notify: NotifySocket,
    log: IO[bytes],
    *,
    command: Sequence[str] = SERVICE_COMMAND,
    env: Mapping[str, str] | None = None,
) -> Started:
    """Spawn ``edge run --config`` (or ``command`` with the config's path; ``env``
    added to its environment) and wait for READY=1."""
    notify.drain()
    started = time.perf_counter()
    process = subprocess.Popen(
        [*command, str(config)],
        cwd=work,
        env={**bench_env(), **(env or {}), "NOTIFY_SOCKET": "@" + notify.name},
        stdout=log,
        stderr=log,
    )
    try:
        ready, counting = notify.wait_ready(process, READY_TIMEOUT_S)
    except BaseException:
        stop(process)
        raise
    return Started(process, ready - started, None if counting is None else counting - started)
