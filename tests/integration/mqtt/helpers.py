"""Shared pieces of the MQTT integration tests: line configs, a bus recorder, a consumer."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from edge.config import LineConfig, load_config
from edge.mqtt.connection import ClientSettings
from edge.service import LineService
from edge.tail import TailConsumer, TailMessage
from edge.wire import WireEvent, event_body

POLL_S = 0.05


def line_toml(
    mqtt_port: int,
    *,
    sim_port: int | None = None,
    mqtt_extra: str = "",
    extra: str = "",
    state_dir: str = "state",
    backoff: tuple[float, float] | None = (0.1, 0.5),
) -> str:
    """A one-machine line (two with the simulator) forwarding to 127.0.0.1:``mqtt_port``.

    One 24 h shift in UTC, so every piece is in planned production time.
    ``backoff``: the MQTT reconnect backoff (initial, max); None: the defaults.
    """
    mqtt_backoff = (
        f"backoff_initial_s = {backoff[0]}\nbackoff_max_s = {backoff[1]}\n" if backoff else ""
    )
    plc = ""
    if sim_port is not None:
        plc = f"""
        [[plcs]]
        id = "sim"
        protocol = "modbus"
        host = "127.0.0.1"
        port = {sim_port}
        poll_interval_s = {POLL_S}
        timeout_s = 0.5
        backoff_initial_s = 0.05
        backoff_max_s = 0.2

        [simulator]
        enabled = true
        port = {sim_port}
        seed = 11
        time_scale = 20.0
        micro_stops_per_hour = 60
        faults_per_hour = 4
        reject_ratio = 0.05
        """
    machines = (
        """
        [[machines]]
        id = "M1"
        ideal_cycle_s = 1.0
        max_rate_factor = 50.0  # the simulator runs 20 x faster than event time
        plc = "sim"
        plc_map = "generic-modbus"
        unit_id = 1

        [[machines]]
        id = "M2"
        ideal_cycle_s = 0.8
        max_rate_factor = 50.0  # the simulator runs 20 x faster than event time
        plc = "sim"
        plc_map = "packml-modbus"
        unit_id = 2
        """
        if sim_port is not None
        else """
        [[machines]]
        id = "M1"
        ideal_cycle_s = 1.0
        """
    )
    return textwrap.dedent(
        """
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
        """
        + textwrap.dedent(plc)
        + textwrap.dedent(machines)
        + textwrap.dedent(
            f"""
        [opcua]
        enabled = false
        [metrics]
        enabled = false
        [web]
        enabled = false
        [storage]
        state_dir = "{state_dir}"

        [mqtt]
        enabled = true
        host = "127.0.0.1"
        port = {mqtt_port}
        publish_timeout_s = 3.0
        batch_max_delay_s = 0.05
        """
        )
        + mqtt_backoff
        + textwrap.dedent(mqtt_extra)
        + textwrap.dedent(extra)
    )


def make_config(tmp_path: Path, text: str) -> LineConfig:
    path = tmp_path / "line.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


class Recorder:
    """A component that keeps every event published on the bus, in order."""

    def __init__(self, service: LineService) -> None:
        self.service = service
        self.events: list[Any] = []
        self._unsubscribe: Callable[[], None] | None = None

    async def __aenter__(self) -> Recorder:
        self._unsubscribe = self.service.bus.subscribe("test-recorder", self.events.extend)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def bodies(self) -> list[tuple[str, dict[str, Any]]]:
        """What the wire should carry for each recorded event (msgpack turns tuples to lists)."""
        return [event_body(event) for event in self.events]


def consumer(port: int, *topics: str, session: bool = False, client_id: str = "") -> TailConsumer:
    return TailConsumer(
        ClientSettings("127.0.0.1", port, timeout_s=3.0),
        topics or ("edge/T/L1/events",),
        client_id=client_id or None,
        persistent_session_s=600 if session else None,
        backoff_s=0.1,
    )


class Received:
    """What a consumer delivered: events in order (resends dropped), batches, findings."""

    def __init__(self) -> None:
        self.events: list[WireEvent] = []
        self.batches: list[TailMessage] = []
        self.resends = 0
        self.statuses: list[dict[str, Any]] = []
        self.errors: list[str] = []

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    def harmful(self) -> list[str]:
        return [f"{f.kind}: {f.detail}" for m in self.batches for f in m.findings if f.harmful]

    def add(self, message: TailMessage) -> None:
        if message.error is not None:
            self.errors.append(message.error)
        elif message.status is not None:
            self.statuses.append(message.status)
        elif message.batch is not None:
            self.batches.append(message)
            if message.deliver:
                self.events.extend(message.batch.events)
            else:
                self.resends += 1

    async def until(
        self, tail: TailConsumer, done: Callable[[Received], bool], within: float, what: str
    ) -> None:
        deadline = time.monotonic() + within
        while not done(self):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out waiting for {what}; last seq {self.last_seq}"
            try:
                self.add(await tail.next_message(remaining))
            except TimeoutError:
                continue


def plain(bodies: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any]]:
    """Tuples as lists, as they come back from msgpack."""

    def norm(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [norm(v) for v in value]
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        return value

    return [(t, norm(d)) for t, d in bodies]


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
