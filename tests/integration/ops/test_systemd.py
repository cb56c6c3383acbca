"""The service under systemd's eyes: the notify protocol, the watchdog, the unit file.

The service runs as systemd would run it — ``python -m edge run --config ...``
as a child process — with ``NOTIFY_SOCKET`` pointing at a datagram socket this
test owns and ``WATCHDOG_USEC`` set. The test plays systemd's part: it reads
``READY=1``, the periodic ``WATCHDOG=1`` and ``STOPPING=1``.

To block the event loop on purpose the child runs with the documented debug
hook ``EDGE_DEBUG_BLOCK_LOOP_S`` (edge/sd_notify.py): SIGUSR2 makes the loop
sleep. That blocks the event loop itself, the thing the watchdog guards, while
the process stays alive; stopping the whole process (SIGSTOP) would prove only
that a stopped process sends nothing.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.integration.ops.lines import simulated_line_toml

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "systemd" / "edge@.service"
INGEST_UNIT = REPO / "systemd" / "edge-ingest@.service"
WATCHDOG_USEC = 300_000  # the service pings every 0.15 s (half of it)
BLOCK_S = 2.0


class NotifyListener:
    """systemd's end of the notify protocol: an abstract datagram socket."""

    def __init__(self) -> None:
        self.name = f"edge-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.received: list[tuple[float, str]] = []  # (monotonic time, one KEY=VALUE)

    @property
    def env_value(self) -> str:
        return "@" + self.name

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            now = time.monotonic()
            self.received.extend((now, field) for field in data.decode().split("\n"))

    def wait_for(self, field: str, timeout: float) -> float:
        """Collect until ``field`` arrives; its arrival time."""
        deadline = time.monotonic() + timeout
        while True:
            for at, seen in self.received:
                if seen == field:
                    return at
            left = deadline - time.monotonic()
            assert left > 0, f"no {field} within {timeout} s; got {self.fields()}"
            self.collect(min(left, 0.2))

    def fields(self) -> list[str]:
        return [f for _, f in self.received]

    def pings(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [at for at, f in self.received if f == "WATCHDOG=1" and start <= at < end]

    def close(self) -> None:
        self.sock.close()


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_ready_watchdog_stopping_and_no_pings_while_the_loop_is_blocked(
    tmp_path: Path, free_port: int
) -> None:
    config = tmp_path / "line.toml"
    config.write_text(simulated_line_toml(free_port, metrics=False), encoding="utf-8")
    listener = NotifyListener()
    env = {
        **os.environ,
        "NOTIFY_SOCKET": listener.env_value,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "EDGE_DEBUG_BLOCK_LOOP_S": str(BLOCK_S),
        "PYTHONPATH": str(REPO),
    }
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        ready_at = listener.wait_for("READY=1", timeout=60)
        assert not listener.pings(end=ready_at), "WATCHDOG=1 before READY=1"

        # Periodic: every ~0.15 s while the line polls.
        listener.collect(1.5)
        before = listener.pings(start=ready_at)
        assert len(before) >= 4, listener.fields()
        assert max(_gaps(before)) < 1.0, _gaps(before)

        # Block the loop for 2 s: no ping for that long, then they come back.
        blocked_at = time.monotonic()
        child.send_signal(signal.SIGUSR2)
        listener.collect(BLOCK_S + 1.5)
        around = listener.pings(start=before[-1])
        gaps = _gaps(around)
        assert gaps, "no ping at all after the block"
        longest = max(gaps)
        assert longest >= BLOCK_S - 0.3, f"pings went on while the loop was blocked: {gaps}"
        silent_from = around[gaps.index(longest)]
        assert silent_from <= blocked_at + 0.5, "the silence did not start with the block"
        assert len(listener.pings(start=blocked_at + BLOCK_S)) >= 2, "pings did not resume"

        child.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1", timeout=30)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
        listener.close()
    assert "debug hook armed" in stderr


def test_ready_carries_a_status_line(tmp_path: Path, free_port: int) -> None:
    """READY=1 comes with STATUS= for `systemctl status`, and no watchdog without WATCHDOG_USEC."""
    config = tmp_path / "line.toml"
    config.write_text(simulated_line_toml(free_port, metrics=False), encoding="utf-8")
    listener = NotifyListener()
    env = {**os.environ, "NOTIFY_SOCKET": listener.env_value, "PYTHONPATH": str(REPO)}
    env.pop("WATCHDOG_USEC", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listener.wait_for("READY=1", timeout=60)
        listener.collect(0.5)
        assert "STATUS=line L1: 2 machines" in listener.fields()
        assert not listener.pings()
        child.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1", timeout=30)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        listener.close()


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: the systemd package)",
)
@pytest.mark.parametrize("shipped", [UNIT, INGEST_UNIT], ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, shipped: Path) -> None:
    # The unit runs /opt/edge/.venv/bin/edge (the install location in
    # systemd/README.md); verify checks that ExecStart exists, so point it at
    # this checkout's entry point. Everything else is verified as shipped.
    edge = Path(sys.executable).with_name("edge")
    assert edge.exists(), f"{edge}: the project is not installed in this environment"
    text = shipped.read_text(encoding="utf-8")
    assert "/opt/edge/.venv/bin/edge" in text
    unit = tmp_path / shipped.name
    unit.write_text(text.replace("/opt/edge/.venv/bin/edge", str(edge)), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", unit.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on mere parse warnings ("Unknown key name ..."), so any
    # output at all fails the test.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_unit_has_what_the_service_relies_on() -> None:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    assert settings["Type"] == ["notify"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == ["78"]  # EX_CONFIG from edge.cli
    # ...which applies to the main process only: a config check in ExecStartPre
    # failing with 78 would be restarted until the start limit. `edge run` checks.
    assert "ExecStartPre" not in settings
    assert settings["ExecStart"][0].endswith(" run --config /etc/edge/%i.toml")
    assert "WatchdogSec" in settings
    assert settings["NotifyAccess"] == ["main"]
    assert "StartLimitBurst" in settings and "StartLimitIntervalSec" in settings
    assert settings["DynamicUser"] == ["yes"]
    assert settings["StateDirectory"][0].startswith("edge/")
    assert settings["CacheDirectory"][0].startswith("edge/")  # the OPC UA node cache
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert "AF_UNIX" in settings["RestrictAddressFamilies"][0]  # sd_notify's datagram


def test_the_runtime_install_installs_no_test_tools() -> None:
    """`make install-runtime` (systemd/README.md) installs the project without extras."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        [make, "-n", "-C", str(REPO), "install-runtime"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    installs = [line for line in dry.splitlines() if " pip install " in line]
    assert installs, dry
    assert not any("[" in line for line in installs), installs  # no '.[test]'
    assert any(line.rstrip().endswith("-e .") for line in installs), installs
    # ... and builds the installation's OPC UA node cache every line's first start reads
    assert any(line.rstrip().endswith("/edge prepare") for line in dry.splitlines()), dry
    # what a plain install pulls in: the runtime requirements, none of the test tools
    runtime = [Requirement(r) for r in requires("edge-line-controller") or []]
    names = {r.name for r in runtime if r.marker is None or "extra" not in str(r.marker)}
    assert "asyncua" in names
    assert not names & {"pytest", "ruff", "mypy", "hypothesis", "pytest-asyncio"}
