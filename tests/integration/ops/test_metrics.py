"""/metrics, /healthz and /readyz of a running line service.

- a simulated run scraped over HTTP: every metric has its documented type, and
  the values are the engine's own KPIs (asked from the machine actors with
  ``GetStatus`` as of the same instant);
- a hand-driven machine with OEE.md §6 arithmetic written out: the exported
  shift KPIs and event counters equal the hand values;
- ``promtool check metrics`` accepts the exposition (where promtool is installed);
- metrics of components found by duck typing appear only with the component;
- ``/readyz`` says 503 while the service starts and names a component that is
  not ready; ``/healthz`` says 200.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sys
import textwrap
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from asyncua import Client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as PromSample

from actors.machine import GetStatus, MachineStatus, SampleBatch
from actors.messages import Sample
from actors.oee.state import MachineState
from edge import __version__, opcua_server
from edge.service import LineService
from edge.web import WebComponent
from tests.integration.ops.lines import simulated_line_toml, write_config

# ---------------------------------------------------------------------- helpers


def metrics_factory(port: int) -> Any:
    def factory(service: LineService) -> WebComponent:
        return WebComponent(service, metrics_port=port, display=False)

    return factory


@dataclass
class Scrape:
    types: dict[str, str]
    samples: list[PromSample]

    def value(self, name: str, **labels: str) -> float | None:
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert len(found) <= 1, f"{name}{labels}: {len(found)} samples"
        return found[0] if found else None

    def series(self, name: str) -> list[PromSample]:
        return [s for s in self.samples if s.name == name]


def parse(text: str) -> Scrape:
    types: dict[str, str] = {}
    samples: list[PromSample] = []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples.extend(family.samples)
    return Scrape(types, samples)


# ---------------------------------------------------------------------- a simulated run

# Metric family -> type (the parser names a counter family without its _total).
EXPECTED_TYPES = {
    "edge_build_info": "gauge",
    "edge_ready": "gauge",
    "edge_events_published": "counter",
    "edge_machine_state": "gauge",
    "edge_machine_state_since_timestamp_seconds": "gauge",
    "edge_machine_shift_start_timestamp_seconds": "gauge",
    "edge_machine_shift_updated_timestamp_seconds": "gauge",
    "edge_machine_shift_availability_ratio": "gauge",
    "edge_machine_shift_quality_ratio": "gauge",
    "edge_machine_shift_scheduled_seconds": "gauge",
    "edge_machine_shift_planned_stop_seconds": "gauge",
    "edge_machine_shift_planned_production_seconds": "gauge",
    "edge_machine_shift_run_seconds": "gauge",
    "edge_machine_shift_downtime_seconds": "gauge",
    "edge_machine_shift_micro_stop_seconds": "gauge",
    "edge_machine_shift_pieces": "gauge",
    "edge_machine_shift_good_pieces": "gauge",
    "edge_machine_shift_reject_pieces": "gauge",
    "edge_machine_shift_downtime_events": "gauge",
    "edge_machine_shift_micro_stops": "gauge",
    "edge_machine_pieces": "counter",
    "edge_machine_good_pieces": "counter",
    "edge_machine_reject_pieces": "counter",
    "edge_machine_planned_stops": "counter",
    "edge_machine_planned_stop_seconds": "counter",
    "edge_machine_unplanned_stops": "counter",
    "edge_machine_unplanned_stop_seconds": "counter",
    "edge_machine_downtime_events": "counter",
    "edge_machine_downtime_seconds": "counter",
    "edge_machine_micro_stops": "counter",
    "edge_machine_micro_stop_seconds": "counter",
    "edge_machine_warnings": "counter",
    "edge_actor_mailbox_depth": "gauge",
    "edge_actor_messages": "counter",
    "edge_actor_restarts": "counter",
    "edge_actors": "gauge",
    "edge_actors_mailbox_depth": "gauge",
    "edge_actors_restarts": "counter",
    "edge_plc_link_up": "gauge",
    "edge_plc_consecutive_failures": "gauge",
    "edge_plc_polls": "counter",
    "edge_plc_requests": "counter",
    "edge_plc_errors": "counter",
    "edge_plc_data_errors": "counter",
    "edge_plc_skipped_polls": "counter",
    "edge_plc_poll_duration_seconds": "histogram",
    "edge_plc_poll_lateness_seconds": "histogram",
    "edge_process_cpu_seconds": "counter",
    "edge_process_resident_memory_bytes": "gauge",
}
ALLOWED_LABELS = {"line", "machine", "station", "plc"}


async def consistent_scrape(
    service: LineService, url: str
) -> tuple[Scrape, dict[str, MachineStatus], str, str]:
    """Scrape, then ask each actor for its status as of the instant the scrape showed.

    The service's 1 s ticks move event time on; a tick handled between the
    scrape and the ask would make them differ, so retry until both describe the
    same instant (``KpiRecord.end``).
    """
    async with httpx.AsyncClient() as client:
        for _ in range(20):
            response = await client.get(url + "/metrics")
            assert response.status_code == 200
            scrape = parse(response.text)
            statuses = {}
            for machine in service.config.machines:
                as_of = scrape.value(
                    "edge_machine_shift_updated_timestamp_seconds", machine=machine.id
                )
                assert as_of is not None, f"{machine.id}: no current shift in the scrape"
                statuses[machine.id] = await service.machine_ref(machine.id).ask(GetStatus(as_of))
            if all(
                s.current_shift is not None
                and s.current_shift.end
                == scrape.value("edge_machine_shift_updated_timestamp_seconds", machine=m)
                for m, s in statuses.items()
            ):
                return scrape, statuses, response.text, response.headers["content-type"]
            await asyncio.sleep(0.05)
    raise AssertionError("no scrape matched an engine status of the same instant")


def check_shift_against_status(scrape: Scrape, status: MachineStatus) -> None:
    m = status.machine_id
    k = status.current_shift
    assert k is not None
    code = {MachineState.UNKNOWN: 0, MachineState.RUNNING: 1, MachineState.STOPPED: 2}
    assert scrape.value("edge_machine_state", machine=m) == code[status.state]
    assert scrape.value("edge_machine_state_since_timestamp_seconds", machine=m) == (
        status.state_since
    )
    assert scrape.value("edge_machine_shift_start_timestamp_seconds", machine=m) == k.start
    for ratio in ("availability", "performance", "quality", "oee", "teep"):
        # Exactly the engine's float (the exposition writes repr()); absent when null.
        assert scrape.value(f"edge_machine_shift_{ratio}_ratio", machine=m) == getattr(k, ratio)
    for stem, value in (
        ("scheduled", k.scheduled_s),
        ("planned_stop", k.planned_stop_s),
        ("planned_production", k.planned_production_s),
        ("run", k.run_s),
        ("downtime", k.downtime_s),
        ("micro_stop", k.micro_stop_s),
        ("mtbf", k.mtbf_s),
        ("mttr", k.mttr_s),
    ):
        assert scrape.value(f"edge_machine_shift_{stem}_seconds", machine=m) == value, stem
    assert scrape.value("edge_machine_shift_pieces", machine=m) == k.total_count
    assert scrape.value("edge_machine_shift_good_pieces", machine=m) == k.good_count
    assert scrape.value("edge_machine_shift_reject_pieces", machine=m) == k.reject_count
    assert scrape.value("edge_machine_shift_downtime_events", machine=m) == k.downtime_events
    assert scrape.value("edge_machine_shift_micro_stops", machine=m) == k.micro_stops


async def test_a_scrape_after_a_simulated_run_shows_the_engines_kpis(
    tmp_path: Path, free_port_factory: Any
) -> None:
    sim_port, metrics_port = free_port_factory(), free_port_factory()
    config = write_config(tmp_path, simulated_line_toml(sim_port, metrics_port=metrics_port))
    async with LineService(config, components=[metrics_factory(metrics_port)]) as service:
        component = service.components[0]
        assert component.metrics_url == f"http://127.0.0.1:{metrics_port}"
        await asyncio.sleep(3.0)  # ~60 s of simulated production at 20x
        service.simulator.pause()
        await asyncio.sleep(0.3)  # the last polls reach the actors
        scrape, statuses, text, content_type = await consistent_scrape(
            service, component.metrics_url
        )

    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    for name, kind in EXPECTED_TYPES.items():
        assert scrape.types.get(name) == kind, name
    assert all(s.name.startswith("edge_") for s in scrape.samples)
    for sample in scrape.samples:
        extra = set(sample.labels) - ALLOWED_LABELS - {"le"}
        if sample.name == "edge_build_info":
            assert extra == {"version", "python", "event_loop"}
        elif sample.name == "edge_machine_shift_downtime_by_reason_seconds":
            assert extra == {"reason"}
        else:
            assert not extra, sample
        if "machine" in sample.labels or "plc" in sample.labels:
            assert sample.labels["line"] == "L1"
    for name, kind in scrape.types.items():
        # _total only on counters (the parser strips it from a counter family's name)
        assert kind == "counter" or not name.endswith("_total"), name
    assert scrape.value("edge_build_info", version=__version__) == 1.0
    assert "edge_opcua_sessions" not in text  # no such component on this line

    for machine_id, status in statuses.items():
        shift = status.current_shift
        assert shift is not None
        check_shift_against_status(scrape, status)
        # Every piece since the start fell in this shift's PPT (one 24 h shift, no break).
        assert shift.total_count > 10, f"{machine_id} made too little to prove anything"
        assert scrape.value("edge_machine_pieces_total", machine=machine_id) == shift.total_count
        assert scrape.value("edge_machine_good_pieces_total", machine=machine_id) == (
            shift.good_count
        )
        assert scrape.value("edge_machine_reject_pieces_total", machine=machine_id) == (
            shift.reject_count
        )
        # Stops that ended are counted by their classification; the shift also
        # counts the stop still open (classified by its length so far).
        open_micro = open_downtime = 0
        if status.state is MachineState.STOPPED:
            assert status.state_since is not None
            length = shift.end - status.state_since
            open_micro, open_downtime = (1, 0) if length < 1.0 else (0, 1)
        micro = scrape.value("edge_machine_micro_stops_total", machine=machine_id)
        downtime = scrape.value("edge_machine_downtime_events_total", machine=machine_id)
        assert micro == shift.micro_stops - open_micro
        assert downtime == shift.downtime_events - open_downtime
        assert scrape.value("edge_machine_unplanned_stops_total", machine=machine_id) == (
            micro + downtime  # type: ignore[operator]
        )
        assert scrape.value("edge_machine_planned_stops_total", machine=machine_id) == 0
        # Downtime by reason sums to the downtime; M1's unnamed fault codes are "other".
        by_reason = {
            s.labels["reason"]: s.value
            for s in scrape.series("edge_machine_shift_downtime_by_reason_seconds")
            if s.labels["machine"] == machine_id
        }
        assert sum(by_reason.values()) == pytest.approx(shift.downtime_s, abs=1e-9)
        known = {"jam", "starved", "comm_loss", "unassigned", "other"}
        if machine_id == "M1":
            assert set(by_reason) <= known | {"Aborted", "Held", "Suspended"}
        expected_reasons: dict[str, float] = {}
        for reason, seconds in shift.downtime_by_reason.items():
            label = reason if not reason.isdigit() else "other"
            expected_reasons[label] = expected_reasons.get(label, 0.0) + seconds
        assert by_reason == pytest.approx(expected_reasons)

    assert scrape.value("edge_plc_link_up", plc="sim") == 1.0
    polls = scrape.value("edge_plc_polls_total", plc="sim")
    assert polls is not None and polls > 20  # 3 s at 50 ms
    observed = scrape.value("edge_plc_poll_duration_seconds_count", plc="sim")
    failed = scrape.value("edge_plc_errors_total", plc="sim")
    assert observed is not None and failed is not None and observed > 0
    # every successful poll once; a poll under way is counted as a poll already
    assert polls - failed - 1 <= observed <= polls - failed
    buckets = [s.value for s in scrape.series("edge_plc_poll_duration_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == observed
    # every poll that started, failed ones too, is observed for its lateness
    started = scrape.value("edge_plc_poll_lateness_seconds_count", plc="sim")
    assert started is not None and polls - 1 <= started <= polls
    assert scrape.value("edge_actors") == 2
    for machine_id in statuses:
        assert scrape.value("edge_actor_restarts_total", machine=machine_id) == 0
        handled = scrape.value("edge_actor_messages_total", machine=machine_id)
        assert handled is not None and handled > 10
    assert scrape.value("edge_ready") == 1.0


def _promtool() -> str | None:
    # `make test-servers` unpacks it next to the venv's python; else from PATH.
    beside = Path(sys.executable).with_name("promtool")
    return str(beside) if beside.exists() else shutil.which("promtool")


@pytest.mark.skipif(
    _promtool() is None,
    reason="promtool not found (Debian package 'prometheus'; `make test-servers` fetches it)",
)
async def test_promtool_accepts_the_exposition(tmp_path: Path, free_port_factory: Any) -> None:
    sim_port, metrics_port = free_port_factory(), free_port_factory()
    config = write_config(tmp_path, simulated_line_toml(sim_port, metrics_port=metrics_port))
    async with LineService(config, components=[metrics_factory(metrics_port)]) as service:
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient() as client:
            text = (await client.get(service.components[0].metrics_url + "/metrics")).text
    assert "edge_plc_poll_duration_seconds_bucket" in text
    assert "edge_machine_shift_oee_ratio" in text
    promtool = await asyncio.create_subprocess_exec(
        _promtool() or "promtool",
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await promtool.communicate(text.encode())
    # promtool prints lint findings (and exits non-zero on them); clean is silent.
    assert promtool.returncode == 0, output.decode()
    assert output.decode().strip() == "", output.decode()


# ---------------------------------------------------------------------- by hand

# One machine without a PLC, driven by samples the test sends to its actor. The
# timestamps lie in the future (02:00 UTC of a day ahead), so the service's
# wall-clock ticks, all older, never move this machine's event time.


def hand_line_toml(metrics_port: int) -> str:
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

        [[machines]]
        id = "H1"
        ideal_cycle_s = 0.8
        micro_stop_s = 120.0
        reasons = [
          {{ code = 17, name = "jam at infeed" }},
          {{ code = 40, name = "planned maintenance", category = "planned" }},
        ]

        [opcua]
        enabled = false
        [metrics]
        host = "127.0.0.1"
        port = {metrics_port}
        [storage]
        state_dir = "state"
        """
    )


def hand_samples(t0: float) -> list[Sample]:
    def s(offset: float, signal: str, value: object) -> Sample:
        return Sample("H1", signal, value, t0 + offset)  # type: ignore[arg-type]

    return [
        # baselines (OEE.md §5: the first reading counts nothing)
        s(0, "running", True),
        s(0, "fault_code", 0),
        s(0, "total_count", 1000),
        s(0, "good_count", 990),
        # +500 pieces, 490 good; then a 60 s stop with fault 17: a micro-stop
        s(600, "total_count", 1500),
        s(600, "good_count", 1480),
        s(600, "fault_code", 17),
        s(600, "running", False),
        s(660, "fault_code", 0),
        s(660, "running", True),
        # a 300 s stop with fault 3 (not in the reason table): a downtime event
        s(900, "fault_code", 3),
        s(900, "running", False),
        s(1200, "fault_code", 0),
        s(1200, "running", True),
        # a 60 s planned stop (fault 40, category planned)
        s(1500, "fault_code", 40),
        s(1500, "running", False),
        s(1560, "fault_code", 0),
        s(1560, "running", True),
        # +1000 pieces, 970 good
        s(1800, "total_count", 2500),
        s(1800, "good_count", 2450),
    ]


async def test_exported_values_equal_oee_md_arithmetic_by_hand(
    tmp_path: Path, free_port: int
) -> None:
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    t0 = dt.datetime.combine(tomorrow, dt.time(2, 0), tzinfo=dt.UTC).timestamp()
    config = write_config(tmp_path, hand_line_toml(free_port))
    # No wall-clock tick: the machine's clock starts at t0 and only the samples move it.
    async with LineService(
        config, components=[metrics_factory(free_port)], tick_interval_s=None
    ) as service:
        await service.machine_ref("H1").tell(SampleBatch(tuple(hand_samples(t0))))
        metrics = service.components[0].metrics
        scrape = parse((await metrics.render(now=t0 + 1800)).decode())

    def v(name: str, **labels: str) -> float | None:
        return scrape.value(name, machine="H1", **labels)

    # Window t0..t0+1800 inside the 24 h shift, no break:
    #   scheduled        = 1800 s
    #   planned stop     = 60 s (fault 40, planned)        -> PPT = 1800 - 60 = 1740 s
    #   downtime         = 300 s (fault 3: 300 s >= 120 s micro-stop limit)
    #   micro-stops      = 1, 60 s (fault 17: 60 s < 120 s), performance bucket:
    #                      stays inside run time
    #   run              = 1740 - 300 = 1440 s
    #   pieces           = (1500-1000) + (2500-1500) = 1500 total,
    #                      (1480-990) + (2450-1480) = 1460 good, 40 rejects
    #   availability     = 1440 / 1740
    #   performance      = 0.8 s x 1500 / 1440 s = 1200 / 1440
    #   quality          = 1460 / 1500
    #   oee              = availability x performance x quality
    #   teep             = oee x 1740 / 1800
    #   mtbf, mttr       = 1440 / 1 event, 300 / 1 event
    availability = 1440 / 1740
    performance = 1200 / 1440
    quality = 1460 / 1500
    oee = availability * performance * quality
    assert v("edge_machine_shift_scheduled_seconds") == pytest.approx(1800)
    assert v("edge_machine_shift_planned_stop_seconds") == pytest.approx(60)
    assert v("edge_machine_shift_planned_production_seconds") == pytest.approx(1740)
    assert v("edge_machine_shift_downtime_seconds") == pytest.approx(300)
    assert v("edge_machine_shift_run_seconds") == pytest.approx(1440)
    assert v("edge_machine_shift_micro_stop_seconds") == pytest.approx(60)
    assert v("edge_machine_shift_micro_stops") == 1
    assert v("edge_machine_shift_downtime_events") == 1
    assert v("edge_machine_shift_pieces") == 1500
    assert v("edge_machine_shift_good_pieces") == 1460
    assert v("edge_machine_shift_reject_pieces") == 40
    assert v("edge_machine_shift_availability_ratio") == pytest.approx(availability)
    assert v("edge_machine_shift_performance_ratio") == pytest.approx(performance)
    assert v("edge_machine_shift_quality_ratio") == pytest.approx(quality)
    assert v("edge_machine_shift_oee_ratio") == pytest.approx(oee)
    assert v("edge_machine_shift_teep_ratio") == pytest.approx(oee * 1740 / 1800)
    assert v("edge_machine_shift_mtbf_seconds") == pytest.approx(1440)
    assert v("edge_machine_shift_mttr_seconds") == pytest.approx(300)
    assert v("edge_machine_shift_start_timestamp_seconds") == pytest.approx(t0)
    assert v("edge_machine_shift_updated_timestamp_seconds") == pytest.approx(t0 + 1800)
    # Downtime by reason: fault 3 has no name in the table -> "3" -> label "other".
    assert v("edge_machine_shift_downtime_by_reason_seconds", reason="other") == pytest.approx(300)
    assert len(scrape.series("edge_machine_shift_downtime_by_reason_seconds")) == 1
    # Running again since the planned stop ended.
    assert v("edge_machine_state") == 1
    assert v("edge_machine_state_since_timestamp_seconds") == pytest.approx(t0 + 1560)
    # Event counters: the same pieces; the three stops that ended.
    assert v("edge_machine_pieces_total") == 1500
    assert v("edge_machine_good_pieces_total") == 1460
    assert v("edge_machine_reject_pieces_total") == 40
    assert v("edge_machine_unplanned_stops_total") == 2
    assert v("edge_machine_unplanned_stop_seconds_total") == pytest.approx(60 + 300)
    assert v("edge_machine_planned_stops_total") == 1
    assert v("edge_machine_planned_stop_seconds_total") == pytest.approx(60)
    assert v("edge_machine_micro_stops_total") == 1
    assert v("edge_machine_micro_stop_seconds_total") == pytest.approx(60)
    assert v("edge_machine_downtime_events_total") == 1
    assert v("edge_machine_downtime_seconds_total") == pytest.approx(300)


async def test_undefined_ratios_have_no_sample(tmp_path: Path, free_port: int) -> None:
    """OEE.md §6: a ratio with a zero denominator is null, never 0 or 1 — so no sample."""
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    t0 = dt.datetime.combine(tomorrow, dt.time(2, 0), tzinfo=dt.UTC).timestamp()
    config = write_config(tmp_path, hand_line_toml(free_port))
    async with LineService(
        config, components=[metrics_factory(free_port)], tick_interval_s=None
    ) as service:
        # Running 600 s, no piece counted: quality = 0/0 (null), performance = 0/600 = 0.
        batch = (Sample("H1", "running", True, t0), Sample("H1", "total_count", 7, t0))
        await service.machine_ref("H1").tell(SampleBatch(batch))
        scrape = parse((await service.components[0].metrics.render(now=t0 + 600)).decode())
    assert scrape.value("edge_machine_shift_availability_ratio", machine="H1") == 1.0
    assert scrape.value("edge_machine_shift_performance_ratio", machine="H1") == 0.0
    assert scrape.value("edge_machine_shift_quality_ratio", machine="H1") is None
    assert scrape.value("edge_machine_shift_oee_ratio", machine="H1") is None
    assert scrape.value("edge_machine_shift_mtbf_seconds", machine="H1") is None
    assert scrape.value("edge_machine_shift_pieces", machine="H1") == 0


# ---------------------------------------------------------------------- components, readiness


@dataclass(frozen=True)
class OutboxRecord:
    depth: int
    oldest_age_s: float
    dropped: int


@dataclass(frozen=True)
class ForwarderRecord:
    mqtt_connected: bool
    mqtt_published_events: int
    outbox: OutboxRecord
    something_else: str = "ignored"


@dataclass
class FakeComponent(AbstractAsyncContextManager["FakeComponent"]):
    """Stands in for the OPC UA server / MQTT forwarder / QMIB client of other modules."""

    stats: object = None
    values: Mapping[str, float | int | bool | None] | None = None
    is_ready: bool | None = None
    seen_while_starting: list[tuple[int, str]] = field(default_factory=list)
    probe_url: str | None = None

    async def __aenter__(self) -> FakeComponent:
        if self.probe_url is not None:
            async with httpx.AsyncClient() as client:
                response = await client.get(self.probe_url)
                self.seen_while_starting.append((response.status_code, response.text))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def statistics(self) -> object:
        return self.stats


class QmibLike(FakeComponent):
    def metric_values(self) -> Mapping[str, float | int | bool | None]:
        return self.values or {}


async def test_component_metrics_appear_with_their_components(
    tmp_path: Path, free_port: int
) -> None:
    forwarder = FakeComponent(
        stats=ForwarderRecord(True, 1234, OutboxRecord(depth=42, oldest_age_s=1.5, dropped=7))
    )
    opcua = FakeComponent(stats={"opcua_sessions": 3, "opcua_nodes": 5000})
    qmib = QmibLike(
        values={"qmib_requests_succeeded": 5, "qmib_requests_failed": 1, "no_such_key": 9}
    )
    config = write_config(tmp_path, hand_line_toml(free_port))
    components = [metrics_factory(free_port), lambda s: forwarder, lambda s: opcua, lambda s: qmib]
    async with (
        LineService(config, components=components) as service,
        httpx.AsyncClient() as client,
    ):
        text = (await client.get(service.components[0].metrics_url + "/metrics")).text
    scrape = parse(text)
    assert scrape.value("edge_mqtt_connected") == 1.0
    assert scrape.value("edge_mqtt_published_events_total") == 1234
    assert scrape.value("edge_outbox_depth_events") == 42
    assert scrape.value("edge_outbox_oldest_age_seconds") == 1.5
    assert scrape.value("edge_outbox_dropped_events_total") == 7
    assert scrape.value("edge_opcua_sessions") == 3
    assert scrape.value("edge_opcua_nodes") == 5000
    assert scrape.value("edge_qmib_requests_succeeded_total") == 5
    assert scrape.value("edge_qmib_requests_failed_total") == 1
    assert scrape.types["edge_outbox_dropped_events"] == "counter"
    assert scrape.types["edge_outbox_depth_events"] == "gauge"
    assert "no_such_key" not in text and "something_else" not in text
    assert "edge_qmib_requests_rejected" not in text  # nobody provides it

    # Without the components, none of their metrics.
    (tmp_path / "alone").mkdir()
    config = write_config(tmp_path / "alone", hand_line_toml(free_port))
    async with LineService(config, components=[metrics_factory(free_port)]) as service:
        text = (await service.components[0].metrics.render()).decode()
    for prefix in ("edge_mqtt_", "edge_outbox_", "edge_opcua_", "edge_qmib_"):
        assert prefix not in text


class Server(FakeComponent):
    """A component that says whether it is ready (read on every /readyz)."""

    @property
    def ready(self) -> bool:
        return bool(self.is_ready)


class Broken(FakeComponent):
    def statistics(self) -> object:
        raise RuntimeError("statistics bug")

    @property
    def ready(self) -> bool:
        raise RuntimeError("readiness bug")


async def test_a_broken_component_does_not_break_the_scrape(
    tmp_path: Path, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, hand_line_toml(free_port))
    working = FakeComponent(stats={"mqtt_connected": False})
    components = [metrics_factory(free_port), lambda s: Broken(), lambda s: working]
    async with (
        LineService(config, components=components) as service,
        httpx.AsyncClient() as client,
    ):
        base = service.components[0].metrics_url
        for _ in range(2):
            response = await client.get(base + "/metrics")
            assert response.status_code == 200
            assert parse(response.text).value("edge_mqtt_connected") == 0.0
        ready = await client.get(base + "/readyz")
    assert ready.status_code == 503
    assert "readiness bug" in ready.json()["checks"]["component Broken"]
    logged = [r for r in caplog.records if "statistics bug" in r.getMessage()]
    assert len(logged) == 1  # once, not per scrape


async def test_readyz_and_healthz(tmp_path: Path, free_port: int) -> None:
    base = f"http://127.0.0.1:{free_port}"
    # A component started after the metrics endpoint asks /readyz while the
    # service is still starting; another one says it is not ready.
    probe = FakeComponent(probe_url=base + "/readyz")
    server = Server(is_ready=False)
    config = write_config(tmp_path, hand_line_toml(free_port))
    components = [metrics_factory(free_port), lambda s: probe, lambda s: server]
    async with LineService(config, components=components), httpx.AsyncClient() as client:
        [(status, body)] = probe.seen_while_starting
        assert status == 503
        assert '"service": "service is starting"' in body

        response = await client.get(base + "/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["component Server"] == "not ready"
        assert response.json()["checks"]["machine actors"] == "ok"
        metrics_text = (await client.get(base + "/metrics")).text
        assert 'edge_ready{line="L1"} 0.0' in metrics_text

        server.is_ready = True
        response = await client.get(base + "/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["ready"] is True
        assert all(v == "ok" for v in response.json()["checks"].values())

        response = await client.get(base + "/healthz")
        assert (response.status_code, response.text) == (200, "ok\n")
        head = await client.head(base + "/metrics")
        assert head.status_code == 200 and head.content == b""


async def test_disabled_metrics_serve_nothing(tmp_path: Path, free_port: int) -> None:
    text = hand_line_toml(free_port).replace("[metrics]\n", "[metrics]\nenabled = false\n")
    config = write_config(tmp_path, text)
    async with LineService(config, components=[metrics_factory(free_port)]) as service:
        assert "metrics     disabled ([metrics] enabled = false)" in service.components[0].banner()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(f"http://127.0.0.1:{free_port}/metrics")


async def test_openmetrics_is_negotiated_and_gzip_given_when_accepted(
    tmp_path: Path, free_port: int
) -> None:
    config = write_config(tmp_path, hand_line_toml(free_port))
    async with (
        LineService(config, components=[metrics_factory(free_port)]) as service,
        httpx.AsyncClient() as client,
    ):
        url = service.components[0].metrics_url + "/metrics"
        # What Prometheus 3 sends: OpenMetrics first, the text format as a fallback.
        accept = (
            "application/openmetrics-text;version=1.0.0;q=0.6,"
            "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=0.0.4;q=0.4"
        )
        response = await client.get(url, headers={"Accept": accept, "Accept-Encoding": "gzip"})
        plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.headers["content-encoding"] == "gzip"  # httpx inflated it for us
    assert response.text.rstrip().endswith("# EOF")  # OpenMetrics ends so
    assert "# TYPE edge_machine_pieces counter" in response.text
    assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in plain.headers
    assert "# EOF" not in plain.text and "edge_machine_pieces_total" in plain.text


async def test_the_opcua_server_exports_sessions_subscriptions_nodes_and_a_named_check(
    tmp_path: Path, free_port_factory: Any
) -> None:
    metrics_port, opc_port = free_port_factory(), free_port_factory()
    text = hand_line_toml(metrics_port).replace(
        "[opcua]\nenabled = false\n",
        f'[opcua]\nendpoint = "opc.tcp://127.0.0.1:{opc_port}/edge/"\nsecurity_policies = []\n',
    )
    config = write_config(tmp_path, text)
    components = [metrics_factory(metrics_port), opcua_server.component]
    async with (
        LineService(config, components=components) as service,
        httpx.AsyncClient() as http,
    ):
        base = service.components[0].metrics_url

        async def scrape() -> Any:
            return parse((await http.get(base + "/metrics")).text)

        before = await scrape()
        assert before.value("edge_opcua_sessions") == 0.0
        assert before.value("edge_opcua_subscriptions") == 0.0
        server = next(c for c in service.components if isinstance(c, opcua_server.OpcUaServer))
        nodes = before.value("edge_opcua_nodes")
        # every node of the line's namespace, counted in the node store itself
        every = server.server.iserver.aspace.keys()
        assert nodes == sum(1 for n in every if n.NamespaceIndex == server.idx) > 100
        async with Client(f"opc.tcp://127.0.0.1:{opc_port}/edge/", timeout=5) as c:
            subscription = await c.create_subscription(100, None)
            during = await scrape()
            assert during.value("edge_opcua_sessions") == 1.0
            assert during.value("edge_opcua_subscriptions") == 1.0
            await subscription.delete()
        after = await scrape()
        assert after.value("edge_opcua_sessions") == 0.0
        ready = (await http.get(base + "/readyz")).json()
    assert ready["checks"]["opcua server"] == "ok"
    assert ready["checks"]["metrics endpoint"] == "ok"
    assert not [name for name in ready["checks"] if name.startswith("component ")]
