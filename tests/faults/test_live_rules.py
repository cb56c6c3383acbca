"""The fault rules on a live line: a real pymodbus simulator behind a TCP link that is
cut and restored (tests/integration/line's CuttableLink), the whole service in-process.

- time the edge did not see (OEE.md §5): the simulator makes pieces at half the
  ideal rate while the link is cut; the reading after it reveals them, and
  exactly ``pieces x ideal cycle`` of the gap becomes run time, the rest stays
  ``comm_loss``;
- counters restarted far from their old value (issue 20.1): the PLC is replaced
  by one whose counters start at 65300 (below the old ~70000): re-baselined, no
  phantom piece; then by one far above: capped at the allowance, the excess
  reported and never counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.oee.events import (
    CounterJumpCapped,
    CounterRebaselined,
    GapRunCredited,
    PiecesCounted,
)
from edge.config import LineConfig, load_config
from edge.service import LineService
from edge.simulator import SimulatedLine, machine_specs
from tests.integration.line.test_line_service import (
    CuttableLink,
    baseline_seen,
    counted,
    delta,
    settle,
    statuses,
)
from tests.integration.mqtt.helpers import Recorder

IDEAL_S = 0.5


def line_toml(link_port: int, sim_port: int, *, time_scale: float, counter_start: int) -> str:
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
        port = {link_port}
        poll_interval_s = 0.05
        timeout_s = 0.5
        backoff_initial_s = 0.05
        backoff_max_s = 0.2

        [[machines]]
        id = "M1"
        ideal_cycle_s = {IDEAL_S}
        plc = "sim"
        plc_map = "generic-modbus"

        [simulator]
        port = {sim_port}
        seed = 5
        time_scale = {time_scale}
        counter_start = {counter_start}
        micro_stops_per_hour = 0
        faults_per_hour = 0
        reject_ratio = 0.1

        [opcua]
        enabled = false
        [metrics]
        enabled = false
        [storage]
        state_dir = "state"
        """
    )


def make(
    tmp_path: Path, ports: Callable[[], int], **kwargs: Any
) -> tuple[LineConfig, CuttableLink]:
    link_port, sim_port = ports(), ports()
    path = tmp_path / "line.toml"
    path.write_text(line_toml(link_port, sim_port, **kwargs), encoding="utf-8")
    return load_config(path), CuttableLink(link_port, sim_port)


def of(recorder: Recorder, kind: type) -> list[Any]:
    return [e for e in recorder.events if isinstance(e, kind)]


async def wait_until(condition: Callable[[], Any], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_link_cut_keeps_as_comm_loss_only_what_the_revealed_pieces_do_not_explain(
    tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    # The simulator runs at half speed: its machine makes a piece every ~1.0-1.1 s
    # against an ideal of 0.5 s, so the pieces revealed explain about half the gap.
    config, link = make(tmp_path, free_port_factory, time_scale=0.5, counter_start=1000)
    sim_config = dataclasses.replace(config.simulator, enabled=True)
    await link.up()
    try:
        async with SimulatedLine(sim_config, machine_specs(config)) as sim:
            sim.pause()
            async with LineService(config, components=[Recorder]) as service:
                recorder = service.components[0]
                assert isinstance(recorder, Recorder)
                await baseline_seen(service)
                before = sim.ground_truth("M1")
                sim.resume()
                await asyncio.sleep(1.0)
                cut_at = time.time()
                await link.cut()
                await asyncio.sleep(4.0)  # the outage: the machine keeps producing
                await link.up()
                restored_at = time.time()

                async def reconnected() -> bool:
                    return (await statuses(service))["M1"].state.value != "unknown"

                await wait_until(reconnected, 15, "the first reading after the cut")
                await asyncio.sleep(0.5)
                sim.pause()
                await settle(service, sim)
                after = sim.ground_truth("M1")
                result = (await statuses(service))["M1"]
    finally:
        await link.cut()

    assert counted(result) == delta(after, before)  # nothing lost, nothing invented
    [credit] = of(recorder, GapRunCredited)
    revealed = sum(
        e.count
        for e in of(recorder, PiecesCounted)
        if e.ts == credit.ts and e.role in ("good_count", "reject_count")
    )
    # With good and reject counters the pieces are their sum; each ran >= 0.5 s.
    assert revealed >= 2 and credit.pieces == revealed
    assert credit.running_s == min(revealed * IDEAL_S, credit.unknown_s)
    assert 0 < credit.running_s < credit.unknown_s, "half speed: part of the gap is unexplained"
    # The gap: from the first failed poll (within a poll of the cut) to the first
    # reading after the link came back.
    assert cut_at - 0.1 <= credit.gap_start <= cut_at + 0.6
    assert restored_at <= credit.gap_end <= restored_at + 3.0
    assert credit.unknown_s == pytest.approx(credit.gap_end - credit.gap_start)
    shift = result.current_shift
    assert shift is not None
    assert shift.downtime_by_reason["comm_loss"] == pytest.approx(
        credit.unknown_s - credit.running_s, abs=1e-6
    )


async def test_a_plc_back_with_counters_far_from_their_old_values_counts_no_phantom_piece(
    tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    config, link = make(tmp_path, free_port_factory, time_scale=1.0, counter_start=70_000)
    first = dataclasses.replace(config.simulator, enabled=True)
    specs = machine_specs(config)
    truth = [0, 0, 0]

    async def produce(sim: SimulatedLine, service: LineService) -> None:
        """Let the machine make pieces from the values the edge has read, then hold it."""
        start = sim.ground_truth("M1")
        sim.resume()
        await asyncio.sleep(1.5)
        sim.pause()
        await settle(service, sim)
        made = delta(sim.ground_truth("M1"), start)
        for role in range(3):
            truth[role] += made[role]

    async def replace_plc(
        service: LineService, plcs: contextlib.AsyncExitStack, counter_start: int
    ) -> SimulatedLine:
        """Cut the link, put another PLC behind it, held at its first values, restore."""
        await link.cut()
        port = free_port_factory()
        replacement = dataclasses.replace(first, counter_start=counter_start, port=port)
        sim = await plcs.enter_async_context(SimulatedLine(replacement, specs))
        sim.pause()  # before its clock ever ticks: the counters read counter_start
        await asyncio.sleep(1.0)
        link.target_port = port
        await link.up()

        async def read() -> bool:
            seen = (await statuses(service))["M1"].counters.get("total_count")
            return seen == counter_start

        await wait_until(read, 15, f"the edge to read the new PLC's {counter_start}")
        return sim

    await link.up()
    try:
        async with contextlib.AsyncExitStack() as plcs:
            sim = await plcs.enter_async_context(SimulatedLine(first, specs))
            sim.pause()
            service = await plcs.enter_async_context(LineService(config, components=[Recorder]))
            recorder = service.components[0]
            assert isinstance(recorder, Recorder)
            await baseline_seen(service)
            await produce(sim, service)
            old = (await statuses(service))["M1"].counters
            await produce(await replace_plc(service, plcs, 65_300), service)
            middle = (await statuses(service))["M1"].counters
            await produce(await replace_plc(service, plcs, 5_000_000), service)
            result = (await statuses(service))["M1"]
    finally:
        await link.cut()

    # 70000 + n to 65300 after ~1 s: neither a rollover nor near 0 (allowance
    # 2 x (elapsed / 0.5 + 1)): re-baselined, one event per counter, 0 pieces.
    rebased = of(recorder, CounterRebaselined)
    assert {(e.role, e.old, e.new) for e in rebased} == {
        (role, old[role], 65_300) for role in ("total_count", "good_count", "reject_count")
    }
    for event in rebased:
        assert event.allowance == pytest.approx(2 * (event.elapsed_s / IDEAL_S + 1))
    # 65300 + m to 5,000,000: an increase far beyond the allowance: capped.
    capped = of(recorder, CounterJumpCapped)
    assert {e.role for e in capped} == {"total_count", "good_count", "reject_count"}
    for event in capped:
        assert (event.old, event.new) == (middle[event.role], 5_000_000)
        allowance = 2 * (event.elapsed_s / IDEAL_S + 1)
        assert event.counted == math.floor(allowance)
        assert event.counted + event.excess == 5_000_000 - middle[event.role]
    # What the PLCs made, plus what the cap let through (reported, at most the
    # allowance per counter); never the 65,300 or 4.9 million of the new values.
    phantom = {e.role: e.counted for e in capped}
    shift = result.current_shift
    assert shift is not None
    assert shift.good_count == truth[1] + phantom["good_count"]
    assert shift.reject_count == truth[2] + phantom["reject_count"]
