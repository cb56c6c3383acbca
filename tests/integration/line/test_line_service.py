"""The whole line against the simulated PLCs: a real pymodbus server on 127.0.0.1.

The simulator knows exactly what every machine produced (its ground truth);
the engine must count the same pieces, no more, no fewer — also across a
service restart, and across a 16-bit counter rollover.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.machine import GetStatus, MachineStatus
from actors.messages import LinkChanged, Sample
from edge.config import LineConfig, SimulatorConfig, load_config
from edge.errors import EdgeError
from edge.plc import MachineBinding, load_plc_map
from edge.service import LineService
from edge.simulator import SimTruth, SimulatedLine, machine_specs

POLL_S = 0.05


def line_toml(sim_port: int, *, simulator: bool = False) -> str:
    # One 24 h shift (start == end) in UTC with no break: every piece falls
    # inside planned production, so shift counts equal pieces counted.
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

        [simulator]
        enabled = {"true" if simulator else "false"}
        port = {sim_port}
        seed = 7
        time_scale = 20.0
        counter_start = 65500
        micro_stops_per_hour = 60
        faults_per_hour = 4
        reject_ratio = 0.05

        [opcua]
        enabled = false
        [metrics]
        enabled = false
        [web]
        enabled = false
        [storage]
        state_dir = "state"
        """
    )


def make_config(tmp_path: Path, sim_port: int, **kwargs: bool) -> LineConfig:
    path = tmp_path / "line.toml"
    path.write_text(line_toml(sim_port, **kwargs), encoding="utf-8")
    return load_config(path)


async def statuses(service: LineService) -> dict[str, MachineStatus]:
    now = time.time()
    return {
        m.id: await service.machine_ref(m.id).ask(GetStatus(now)) for m in service.config.machines
    }


async def settle(service: LineService, sim: SimulatedLine | None = None) -> None:
    """With the simulator paused: until the engine has seen its final register values.

    Several polls at least; with ``sim``, until every machine's last counter reading
    is the simulator's (a reconnect under load may take longer than a fixed wait).
    """
    await asyncio.sleep(10 * POLL_S)
    if sim is None:
        await statuses(service)  # the ask queues behind every sample already routed
        return
    deadline = time.monotonic() + 15
    while True:
        seen = await statuses(service)
        if all(
            s.counters.get("total_count") == sim.ground_truth(m).total_reading
            for m, s in seen.items()
        ):
            return
        assert time.monotonic() < deadline, "the engine never saw the final readings"
        await asyncio.sleep(0.05)


async def baseline_seen(service: LineService) -> None:
    async def ready() -> bool:
        return all(s.counters for s in (await statuses(service)).values())

    deadline = time.monotonic() + 10
    while not await ready():
        assert time.monotonic() < deadline, "machines never got their first counter reading"
        await asyncio.sleep(0.05)


def counted(status: MachineStatus) -> tuple[int, int, int]:
    shift = status.current_shift
    assert shift is not None
    return shift.total_count, shift.good_count, shift.reject_count


def delta(after: SimTruth, before: SimTruth) -> tuple[int, int, int]:
    return (after.total - before.total, after.good - before.good, after.reject - before.reject)


async def test_engine_counts_equal_the_simulators_ground_truth(
    tmp_path: Path, free_port: int
) -> None:
    config = make_config(tmp_path, free_port)
    sim_config = SimulatorConfig(**{**_sim_fields(config.simulator), "enabled": True})
    async with SimulatedLine(sim_config, machine_specs(config)) as sim:
        sim.pause()
        async with LineService(config) as service:
            await baseline_seen(service)
            # The first reading is the baseline (OEE.md §5): count from here.
            before = {m: sim.ground_truth(m) for m in ("M1", "M2")}
            sim.resume()
            # 20x time: ~60 simulated seconds, enough for M2's 16-bit counter
            # (65500 + n) to roll over after 36 pieces.
            await asyncio.sleep(3.0)
            sim.pause()
            await settle(service, sim)
            after = {m: sim.ground_truth(m) for m in ("M1", "M2")}
            result = await statuses(service)

    for machine in ("M1", "M2"):
        expected = delta(after[machine], before[machine])
        assert expected[0] > 20, f"{machine} produced too little to prove anything: {expected}"
        assert counted(result[machine]) == expected, machine
        # The engine's last raw reading is the PLC register the simulator wrote.
        assert result[machine].counters["total_count"] == after[machine].total_reading
    assert after["M2"].total_reading < before["M2"].total_reading, "M2 did not roll over"


async def test_restart_continues_the_shift_without_losing_or_doubling_pieces(
    tmp_path: Path, free_port: int
) -> None:
    config = make_config(tmp_path, free_port)
    sim_config = SimulatorConfig(**{**_sim_fields(config.simulator), "enabled": True})
    async with SimulatedLine(sim_config, machine_specs(config)) as sim:
        sim.pause()
        async with LineService(config) as first:
            await baseline_seen(first)
            before = {m: sim.ground_truth(m) for m in ("M1", "M2")}
            sim.resume()
            await asyncio.sleep(1.5)
            sim.pause()
            await settle(first, sim)
            mid = await statuses(first)
        # The edge is down while the line keeps producing.
        sim.resume()
        await asyncio.sleep(1.0)
        sim.pause()
        async with LineService(config) as second:
            await asyncio.sleep(0.2)
            sim.resume()
            await asyncio.sleep(1.0)
            sim.pause()
            await settle(second, sim)
            after = {m: sim.ground_truth(m) for m in ("M1", "M2")}
            result = await statuses(second)

    for machine in ("M1", "M2"):
        assert counted(mid[machine])[0] > 0
        # Nothing lost (pieces made while the edge was down are counted at the
        # first reading after restart), nothing counted twice.
        assert counted(result[machine]) == delta(after[machine], before[machine]), machine
        shift = result[machine].current_shift
        assert shift is not None
        # The edge did not see the line while it was down, but the pieces revealed
        # after the restart (made at 20 x the ideal rate) prove it ran all that
        # time: run time, not comm_loss (OEE.md §5, time the edge did not see).
        assert shift.downtime_by_reason.get("comm_loss", 0.0) == pytest.approx(0.0, abs=1e-6)
        assert shift.run_s == pytest.approx(shift.planned_production_s)


def _sim_fields(sim: SimulatorConfig) -> dict[str, object]:
    return {name: getattr(sim, name) for name in sim.__dataclass_fields__}


def _edge(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge", *args]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_edge_run_reports_ready_and_stops_cleanly(
    tmp_path: Path, free_port: int, stop_signal: signal.Signals
) -> None:
    path = tmp_path / "line.toml"
    path.write_text(line_toml(free_port, simulator=True), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(
        _edge("run", "--config", str(path)),
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if "ready: line T/a/L1" in line:
                break
        else:
            raise AssertionError("no ready line:\n" + "".join(seen))
        time.sleep(1.0)
        proc.send_signal(stop_signal)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(seen) + rest
    assert "stopped cleanly" in rest
    assert (tmp_path / "state" / "state.db").is_file()


def test_invalid_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(line_toml(5020).replace("ideal_cycle_s = 1.0", "ideal_cycle_s = -1"))
    run = subprocess.run(
        _edge("run", "--config", str(path)), check=False, capture_output=True, text=True
    )
    assert run.returncode == 78
    assert "machines[0].ideal_cycle_s: must be > 0, got -1" in run.stderr
    check = subprocess.run(
        _edge("check-config", str(path)), check=False, capture_output=True, text=True
    )
    assert check.returncode == 78
    assert "machines[0].ideal_cycle_s" in check.stderr


class CuttableLink:
    """A TCP proxy between the edge and the PLC that can be cut and restored."""

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.listen_port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_plc_link_cut_is_comm_loss_for_that_span_and_counts_no_phantom_piece(
    tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    sim_port, proxy_port = free_port_factory(), free_port_factory()
    config = make_config(tmp_path, proxy_port)
    sim_config = SimulatorConfig(
        **{**_sim_fields(config.simulator), "enabled": True, "port": sim_port}
    )
    link = CuttableLink(proxy_port, sim_port)
    await link.up()
    async with SimulatedLine(sim_config, machine_specs(config)) as sim:
        sim.pause()
        async with LineService(config) as service:
            await baseline_seen(service)
            before = {m: sim.ground_truth(m) for m in ("M1", "M2")}
            sim.resume()
            await asyncio.sleep(1.0)
            cut_at = time.monotonic()
            await link.cut()
            await asyncio.sleep(1.5)
            during = await statuses(service)
            await link.up()
            restored_at = time.monotonic()
            deadline = restored_at + 15
            while not service.sources[0].statistics().link_up:
                assert time.monotonic() < deadline, "the source never reconnected"
                await asyncio.sleep(0.01)
            reconnected_at = time.monotonic()
            await asyncio.sleep(1.0)
            sim.pause()
            await settle(service, sim)
            after = {m: sim.ground_truth(m) for m in ("M1", "M2")}
            result = await statuses(service)

    assert reconnected_at > restored_at > cut_at
    for machine in ("M1", "M2"):
        assert during[machine].state.value == "unknown", machine
        # Pieces made during the cut are counted once, at the first reading after it.
        assert counted(result[machine]) == delta(after[machine], before[machine]), machine
        shift = result[machine].current_shift
        assert shift is not None
        # The loss is stamped at the first failed poll (within a poll of the cut)
        # and ends with the first reading after the reconnect; the pieces that
        # reading revealed (made at 20 x the ideal rate) prove the machine ran all
        # that time, so none of it stays comm_loss (OEE.md §5). The exact split of
        # a partly explained gap is tests/faults/test_live_rules.py.
        assert shift.downtime_by_reason.get("comm_loss", 0.0) == pytest.approx(0.0, abs=1e-6)


async def test_a_crashed_machine_actor_is_back_on_the_next_poll(
    tmp_path: Path, free_port: int
) -> None:
    config = make_config(tmp_path, free_port)
    sim_config = SimulatorConfig(**{**_sim_fields(config.simulator), "enabled": True})
    async with SimulatedLine(sim_config, machine_specs(config)) as sim:
        sim.pause()
        async with LineService(config) as service:
            await baseline_seen(service)
            before = sim.ground_truth("M1")
            sim.resume()
            await asyncio.sleep(1.5)  # a snapshot is taken every second
            ref = service.machine_ref("M1")
            await ref.tell("poison")  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
            back = (await statuses(service))["M1"]
            sim.pause()
            await settle(service, sim)
            after = sim.ground_truth("M1")
            result = (await statuses(service))["M1"]
            assert ref.statistics().restarts == 1
    # Without the full value set re-sent, the restored actor would stay unknown
    # until the running signal next changed.
    assert back.state.value != "unknown"
    assert counted(result) == delta(after, before)


async def test_process_values_reach_sample_consumers(tmp_path: Path, free_port: int) -> None:
    config = make_config(tmp_path, free_port)
    sim_config = SimulatorConfig(**{**_sim_fields(config.simulator), "enabled": True})
    seen: list[Sample | LinkChanged] = []
    async with SimulatedLine(sim_config, machine_specs(config)), LineService(config) as service:
        service.samples.subscribe("test", seen.extend)
        await asyncio.sleep(1.5)
    signals = {(s.machine_id, s.signal) for s in seen if isinstance(s, Sample)}
    # generic-modbus maps process values besides the roles (e.g. a temperature).
    process = {name for machine, name in signals if machine == "M1"} - {
        "running",
        "fault_code",
        "total_count",
        "good_count",
        "reject_count",
        "state",
    }
    assert process, signals


async def test_attached_bindings_must_come_before_the_sources_and_not_reuse_an_id(
    tmp_path: Path, free_port: int
) -> None:
    config = make_config(tmp_path, free_port)
    plc_id = config.machines[0].plc
    assert plc_id is not None

    def binding(binding_id: str) -> MachineBinding:
        return MachineBinding(
            binding_id, load_plc_map("generic-modbus", config.plc_map_dirs), unit_id=9
        )

    async def ignore(batch: object) -> None:
        return None

    service = LineService(config)
    with pytest.raises(EdgeError, match=r"ids \['M1'\] already read"):
        service.attach_bindings(plc_id, [binding("M1")], ignore)
    service.attach_bindings(plc_id, [binding("QS")], ignore)
    with pytest.raises(EdgeError, match=r"ids \['QS'\] already read"):
        service.attach_bindings(plc_id, [binding("QS")], ignore)
    async with service:
        (source,) = [s for s in service.sources if s.plc_id == plc_id]
        assert "QS" in source.binding_ids
        with pytest.raises(EdgeError, match="after the PLC sources started"):
            service.attach_bindings(plc_id, [binding("QT")], ignore)
