"""Line configs for the operations tests (TOML written to the test's tmp dir)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from edge.config import LineConfig, load_config

POLL_S = 0.05


def simulated_line_toml(sim_port: int, *, metrics_port: int = 0, metrics: bool = True) -> str:
    # One 24 h shift (start == end) in UTC with no break: every piece falls
    # inside planned production. The simulator runs in-process at 20x speed with
    # frequent micro-stops and faults, so a few seconds show stops of both kinds.
    # The engine sees real time: micro-stops last 0.5..5 s and faults 9..60 s
    # of it, hence a 1 s micro-stop limit; pieces come 20x faster than the ideal
    # cycle, so performance reads ~20 (and warns), which these tests do not mind.
    return textwrap.dedent(
        f"""
        [line]
        site = "T"
        area = "a"
        id = "L1"

        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "All"
        start = "00:00"
        end = "00:00"

        [[plcs]]
        id = "sim"
        protocol = "modbus"
        host = "127.0.0.1"
        port = {sim_port}
        poll_interval_s = {POLL_S}
        timeout_s = 0.5
        backoff_initial_s = 0.05
        backoff_max_s = 0.2

        [[machines]]
        id = "M1"
        ideal_cycle_s = 1.0
        max_rate_factor = 50.0  # the simulator runs 20 x faster than event time
        micro_stop_s = 1.0
        plc = "sim"
        plc_map = "sim-line"
        unit_id = 1
        reasons = [{{ code = 11, name = "jam" }}, {{ code = 17, name = "starved" }}]

        [[machines]]
        id = "M2"
        ideal_cycle_s = 0.8
        max_rate_factor = 50.0  # the simulator runs 20 x faster than event time
        micro_stop_s = 1.0
        plc = "sim"
        plc_map = "packml-modbus"
        unit_id = 2

        [simulator]
        enabled = true
        port = {sim_port}
        seed = 11
        time_scale = 20.0
        micro_stops_per_hour = 120
        faults_per_hour = 20
        reject_ratio = 0.05

        [opcua]
        enabled = false
        [metrics]
        enabled = {"true" if metrics else "false"}
        host = "127.0.0.1"
        port = {metrics_port}
        [web]
        enabled = false
        [storage]
        state_dir = "state"
        """
    )


def write_config(tmp_path: Path, text: str) -> LineConfig:
    path = tmp_path / "line.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)
