"""The fault campaign: real processes, faults at seeded random moments, truth from outside.

::

    python -m tests.faults.campaign            # the short run (also a pytest: test_campaign.py)
    python -m tests.faults.campaign --long     # >= 20 edge kills, >= 5 broker kills, 50 machines
    python -m tests.faults.campaign --seed 7 --json report.json

What runs, each as its own process (nothing in-process with the edge):

- a real mosquitto (``tests/integration/mqtt/broker.py``) with persistence, so
  the MES's persistent session survives the broker's crashes;
- the simulated PLCs, ``edge simulate`` (one pymodbus server playing every
  machine), started held (``--paused``) so its counters are exactly
  ``counter_start`` until the edge has read them;
- the line service, ``edge run``, pointed at that simulator and that broker;
- and in this process, outside the edge: an MQTT consumer with a persistent
  session that records every batch, status and KPI snapshot (the MES), and a
  Modbus client that reads the simulator's registers (the ground truth).

Faults, at random moments drawn from the seed: ``kill -9`` of the edge (down a
few seconds while the line produces), SIGTERM of the edge under load, ``kill
-9`` of the broker (down a few seconds), and a PLC link cut: the simulator is
held, the edge reads its final counters, the simulator is killed and a new one
started after a few seconds — with its counters at 0 or far from their old
values (a PLC replaced or restarted) — held until the edge has read it —, and
a machine actor crashed inside the running edge (its ``EDGE_DEBUG_CRASH_ACTOR``
hook: ``SIGUSR1`` makes one actor's handler raise), restarted by the supervisor.

Checks, per machine, from what the consumer received (duplicates dropped by
``(epoch, seq)``, as docs/mqtt-and-qmib.md tells an MES to):

- pieces (good, reject, total) == the simulator's counter movement, exactly;
- every stop the simulator made while the edge could see the machine is
  reported once, with its start within the edge's poll interval of the truth;
  no stop reported twice;
- ``seq`` continuous per epoch: no gap, no number under a new batch id;
- each link cut's ``unknown`` span starts and ends within a poll interval of
  the cut and of the PLC's return, and its ``comm_loss`` is that span less the
  run time credited for the pieces revealed (OEE.md §5);
- MQTT offline time <= broker downtime + 2 s for each broker crash.

The report is a table (and JSON with ``--json``); the exit status is 0 when
every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge.wire import Batch, WireError, decode_batch, decode_kpi_snapshot, decode_status
from tests.integration.conftest import _free_port
from tests.integration.mqtt.broker import Broker

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("total_count", "good_count", "reject_count")
SITE, LINE = "FC", "L1"
BASE = f"edge/{SITE}/{LINE}"
READY_LINE = "status      a line per machine"
RESTARTED_LINE = "restarted (restart"  # the actor runtime's log of a restart
MQTT_BAR_S = 2.0  # offline <= broker downtime + this, per broker crash
STEADY_S = 2.0  # after a fault has been recovered from, the least time before the next
FIRST_COUNTER = 5_000_000  # the first simulator's counters; later ones lower (re-baselined)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    seed: int
    machines: int
    duration_s: float  # of production; faults happen inside it
    edge_kills: int
    sigterms: int
    broker_kills: int
    link_cuts: int
    actor_crashes: int
    poll_s: float
    truth_poll_s: float

    @classmethod
    def short(cls, seed: int = 1) -> Plan:
        return cls("short", seed, 4, 55.0, 3, 1, 1, 1, 1, 0.25, 0.1)

    @classmethod
    def long(cls, seed: int = 1) -> Plan:
        return cls("long", seed, 50, 540.0, 20, 2, 5, 4, 4, 0.5, 0.25)

    def faults(self) -> list[tuple[float, str]]:
        """(seconds into production, kind), in time order, drawn from the seed."""
        rng = random.Random(self.seed)
        kinds = (
            ["edge_kill"] * self.edge_kills
            + ["sigterm"] * self.sigterms
            + ["broker_kill"] * self.broker_kills
            + ["link_cut"] * self.link_cuts
            + ["actor_crash"] * self.actor_crashes
        )
        rng.shuffle(kinds)
        moments = sorted(rng.uniform(3.0, self.duration_s - 5.0) for _ in kinds)
        return list(zip(moments, kinds, strict=True))


def ideal_cycle_s(number: int) -> float:
    return 1.0 + (number % 4) * 0.25


def machine_ids(plan: Plan) -> list[str]:
    return [f"M{n:02d}" for n in range(1, plan.machines + 1)]


def line_toml(plan: Plan, sim_port: int, mqtt_port: int, counter_start: int) -> str:
    """One file for both processes: ``edge simulate`` serves it, ``edge run`` reads it."""
    header = f"""
        [line]
        site = "{SITE}"
        area = "a"
        id = "{LINE}"

        [calendar]
        timezone = "UTC"
        [[calendar.shifts]]
        name = "All"
        start = "00:00"
        end = "00:00"

        [simulator]
        enabled = false
        port = {sim_port}
        seed = {plan.seed}
        counter_start = {counter_start}
        micro_stops_per_hour = 90
        faults_per_hour = 6
        reject_ratio = 0.05

        [opcua]
        enabled = false
        [metrics]
        enabled = false
        [web]
        enabled = false
        [storage]
        state_dir = "state"

        [mqtt]
        enabled = true
        host = "127.0.0.1"
        port = {mqtt_port}
        kpi_interval_s = 1.0
        """
    parts = [textwrap.dedent(header)]
    for number, machine in enumerate(machine_ids(plan), start=1):
        parts.append(
            textwrap.dedent(
                f"""
                [[plcs]]
                id = "plc{number:02d}"
                protocol = "modbus"
                host = "127.0.0.1"
                port = {sim_port}
                poll_interval_s = {plan.poll_s}
                timeout_s = 1.0
                backoff_initial_s = 0.1
                backoff_max_s = {plan.poll_s}

                [[machines]]
                id = "{machine}"
                ideal_cycle_s = {ideal_cycle_s(number)}
                plc = "plc{number:02d}"
                plc_map = "sim-line"
                unit_id = {number}
                """
            )
        )
    return "".join(parts)


# --------------------------------------------------------------------------- processes


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env["EDGE_DEBUG_CRASH_ACTOR"] = "1"  # SIGUSR1 crashes a machine actor (actor_crash)
    env.pop("NOTIFY_SOCKET", None)
    return env


class Process:
    """A child ``python -m edge ...``; its output appended to ``log``."""

    def __init__(self, args: list[str], log: Path, cwd: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.offset = out.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
                cwd=cwd,
            )

    def text(self) -> str:
        return self.log.read_bytes()[self.offset :].decode(errors="replace")

    def count(self, line: str) -> int:
        return self.text().count(line)

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait_for_line(self, line: str, within: float) -> None:
        deadline = time.monotonic() + within
        while line not in self.text():
            if self.proc.poll() is not None:
                raise CampaignError(
                    f"{self.log.name}: exited {self.proc.returncode}:\n{self.text()}"
                )
            if time.monotonic() > deadline:
                raise CampaignError(f"{self.log.name}: no {line!r} within {within:g} s")
            await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals, within: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
            await asyncio.sleep(0.02)
        return self.proc.returncode


class CampaignError(Exception):
    """The campaign could not run as planned (not a finding about the edge)."""


async def _listening(port: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise CampaignError(f"nothing listens on {port} after {within:g} s") from None
            await asyncio.sleep(0.02)
        else:
            writer.close()
            return


# --------------------------------------------------------------------------- the MES


@dataclass(slots=True)
class Received:
    """What the consumer got, as it arrived (time, decoded)."""

    batches: list[tuple[float, Batch]] = field(default_factory=list)
    statuses: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    kpis: dict[str, dict[str, Any]] = field(default_factory=dict)  # machine -> last snapshot
    errors: list[str] = field(default_factory=list)


class Consumer:
    """The MES: one persistent MQTT session, reconnecting on its own, recording everything."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received = Received()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Consumer:
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        while True:
            client = aiomqtt.Client(
                "127.0.0.1",
                self.port,
                identifier="mes-fault-campaign",
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=properties,
                timeout=3.0,
            )
            try:
                async with client:
                    for topic in (f"{BASE}/events", f"{BASE}/status", f"{BASE}/machines/+/oee"):
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        self._record(str(message.topic), message.payload)
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.1)

    def _record(self, topic: str, payload: object) -> None:
        now = time.time()
        data = payload if isinstance(payload, bytes) else b""
        got = self.received
        try:
            if topic.endswith("/events"):
                got.batches.append((now, decode_batch(data)))
            elif topic.endswith("/status"):
                got.statuses.append((now, decode_status(data)))
            elif topic.endswith("/oee"):
                doc = decode_kpi_snapshot(data)
                got.kpis[topic.split("/")[-2]] = doc
        except WireError as exc:
            got.errors.append(f"{topic}: {exc}")

    def edge_has_read(self, expected: dict[str, dict[str, int]]) -> bool:
        """Every machine's last KPI snapshot shows these raw counter readings."""
        for machine, counters in expected.items():
            shown = self.received.kpis.get(machine, {}).get("counters", {})
            if any(shown.get(role) != value for role, value in counters.items()):
                return False
        return True


# --------------------------------------------------------------------------- the truth


@dataclass(frozen=True, slots=True)
class Reading:
    ts: float
    running: bool
    counters: dict[str, int]


class Truth:
    """The simulator's registers over Modbus (sim-line map: holding registers 0..8)."""

    def __init__(self, port: int, machines: list[str], poll_s: float) -> None:
        self.port = port
        self.machines = machines
        self.poll_s = poll_s
        # What the registers showed: machine -> [(last seen before, first seen, running,
        # first reading of a simulator)]; a change happened between the two instants.
        self.transitions: dict[str, list[tuple[float, float, bool, bool]]] = defaultdict(list)
        self._last: dict[str, Reading] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: AsyncModbusTcpClient | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Truth:
        # pymodbus logs every refused connect while the simulator is down (a link cut).
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            self._client.close()

    async def read_all(self) -> dict[str, dict[str, int]]:
        """One exact reading of every machine's counters (the simulator must be up)."""
        deadline = time.monotonic() + 15
        while True:
            try:
                return {m: (await self._read(m)).counters for m in self.machines}
            except (ModbusException, OSError, CampaignError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _connect(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            if self._client is not None:
                self._client.close()
            self._client = AsyncModbusTcpClient("127.0.0.1", port=self.port, timeout=1, retries=0)
            if not await self._client.connect():
                raise CampaignError("simulator not reachable")
        return self._client

    async def _read(self, machine: str) -> Reading:
        unit = self.machines.index(machine) + 1
        async with self._lock:
            client = await self._connect()
            response = await client.read_holding_registers(0, count=9, device_id=unit)
        if response.isError():
            raise CampaignError(f"{machine}: {response}")
        r = response.registers
        return Reading(
            time.time(),
            bool(r[8] & 1),
            {
                "total_count": (r[2] << 16) | r[3],
                "good_count": (r[4] << 16) | r[5],
                "reject_count": (r[6] << 16) | r[7],
            },
        )

    async def _run(self) -> None:
        while True:
            try:
                for machine in self.machines:
                    reading = await self._read(machine)
                    last = self._last.get(machine)
                    if last is None:
                        self.transitions[machine].append(
                            (reading.ts, reading.ts, reading.running, True)
                        )
                    elif last.running != reading.running:
                        self.transitions[machine].append(
                            (last.ts, reading.ts, reading.running, False)
                        )
                    self._last[machine] = reading
            except (ModbusException, OSError, CampaignError):
                # A read that failed (a loaded machine, or the simulator is down): the
                # next reading compares with the last one seen, so a change meanwhile
                # is a transition over the wider window. A new simulator: forget().
                await asyncio.sleep(0.1)
                continue
            await asyncio.sleep(self.poll_s)

    def forget(self) -> None:
        """The next reading starts afresh (a new simulator: its first state is no transition)."""
        self._last.clear()


# --------------------------------------------------------------------------- faults


@dataclass(slots=True)
class Fault:
    kind: str
    at: float  # wall clock, when injected
    back: float = 0.0  # when the thing was back (edge ready, broker listening, PLC up)
    detail: dict[str, Any] = field(default_factory=dict)


class Campaign:
    def __init__(self, plan: Plan, workdir: Path, *, say: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.dir = workdir
        self.say = say
        self.rng = random.Random(plan.seed * 7919)
        self.machines = machine_ids(plan)
        self.mqtt_port = _free_port()
        self.sim_port = _free_port()
        self.faults: list[Fault] = []
        # Each simulator's counters: (first, last) exact readings, per machine.
        self.segments: list[tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]] = []
        self.edge_exits: list[tuple[str, int]] = []
        self._counter_start = FIRST_COUNTER
        self._sims = 0
        self._config: Path | None = None
        self.sim_listening_at = 0.0

    # -- processes ---------------------------------------------------------------

    def _write_config(self, counter_start: int) -> Path:
        self._sims += 1
        path = self.dir / f"line-{self._sims}.toml"
        path.write_text(
            line_toml(self.plan, self.sim_port, self.mqtt_port, counter_start), encoding="utf-8"
        )
        return path

    async def _start_sim(self, counter_start: int) -> Process:
        config = self._write_config(counter_start)
        args = ["simulate", "--config", str(config), "--paused"]
        sim = Process(args, self.dir / "sim.log", self.dir)
        await _listening(self.sim_port, 30)
        self.sim_listening_at = time.time()
        self._config = config
        first = await self.truth.read_all() if hasattr(self, "truth") else None
        if first is not None and any(
            value != counter_start for counters in first.values() for value in counters.values()
        ):
            raise CampaignError(f"the new simulator does not hold at {counter_start}: {first}")
        return sim

    async def _start_edge(self) -> Process:
        assert self._config is not None
        edge = Process(["run", "--config", str(self._config)], self.dir / "edge.log", self.dir)
        await edge.wait_for_line(READY_LINE, 90)
        return edge

    async def _until(self, condition: Callable[[], bool], within: float, what: str) -> bool:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                self.say(f"  ! timed out after {within:g} s waiting for {what}")
                return False
            await asyncio.sleep(0.05)
        return True

    # -- the run -------------------------------------------------------------------

    async def run(self) -> Report:
        plan = self.plan
        self.dir.mkdir(parents=True, exist_ok=True)
        broker = Broker(self.dir / "broker", self.mqtt_port, ("autosave_interval 1",))
        broker.start()
        self.broker = broker
        started = time.time()
        try:
            async with Consumer(self.mqtt_port) as mes:
                self.mes = mes
                self.sim = await self._start_sim(self._counter_start)
                async with Truth(self.sim_port, self.machines, plan.truth_poll_s) as truth:
                    self.truth = truth
                    first = await truth.read_all()
                    self.edge = await self._start_edge()
                    await self._until(lambda: mes.edge_has_read(first), 60, "the first readings")
                    self.sim.send(signal.SIGUSR2)
                    segment_first = first
                    production = time.time()
                    steady = time.time()
                    for offset, kind in plan.faults():
                        # At the drawn moment, but never before the line was steady again
                        # for a while after the previous fault.
                        wait = max(production + offset, steady + STEADY_S) - time.time()
                        if wait > 0:
                            await asyncio.sleep(wait)
                        self.say(f"{time.time() - started:7.1f} s  {kind}")
                        if kind == "link_cut":
                            segment_first = await self._link_cut(segment_first)
                        else:
                            await getattr(self, f"_{kind}")()
                        if kind in ("edge_kill", "sigterm", "broker_kill"):
                            await self._settled(self.faults[-1])  # connected again
                        steady = time.time()
                    wait = production + plan.duration_s - time.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    last = await self._hold_and_read()
                    self.segments.append((segment_first, last))
                    await self._finish()
        finally:
            for name in ("edge", "sim"):
                process = getattr(self, name, None)
                if process is not None and process.proc.poll() is None:
                    process.proc.kill()
                    process.proc.wait()
            broker.stop()
        return analyse(self, time.time() - started)

    async def _hold_and_read(self) -> dict[str, dict[str, int]]:
        """Hold the simulator; its exact counters once the edge has read them too."""
        held = self.sim.count("simulated time held")
        self.sim.send(signal.SIGUSR1)
        await self._until(lambda: self.sim.count("simulated time held") > held, 10, "the hold")
        final = await self.truth.read_all()
        await self._until(lambda: self.mes.edge_has_read(final), 60, "the edge to read them")
        return final

    async def _finish(self) -> None:
        """Stop the edge cleanly once the MES has everything (restart it if it could not send)."""

        def stopped() -> int:
            return sum(1 for _, s in self.mes.received.statuses if s.get("reason") == "stopped")

        for _ in range(3):
            before = stopped()
            code = await self.edge.stop(signal.SIGTERM)
            self.edge_exits.append(("final SIGTERM", code))
            # Published after the last batch, on the same connection: all came before it.
            await self._until(lambda: stopped() > before, 15, "the edge's offline status")  # noqa: B023
            if "events still in the outbox" not in self.edge.text():
                return
            self.edge = await self._start_edge()

    async def _settled(self, fault: Fault) -> None:
        """Until the edge is connected again after ``fault`` (its birth after the fault)."""

        def born() -> bool:
            return any(
                s.get("status") == "online" and s.get("ts", 0.0) >= fault.back - 0.05
                for _, s in self.mes.received.statuses
            )

        fault.detail["settled"] = await self._until(born, 30, "the edge's birth")

    async def _edge_kill(self) -> None:
        fault = Fault("edge_kill", time.time())
        self.edge.send(signal.SIGKILL)
        self.edge.proc.wait()
        down = self.rng.uniform(1.0, 4.0)
        await asyncio.sleep(down)  # the line keeps producing while the edge is down
        self.edge = await self._start_edge()
        fault.back = time.time()
        self.faults.append(fault)

    async def _sigterm(self) -> None:
        fault = Fault("sigterm", time.time())
        code = await self.edge.stop(signal.SIGTERM)
        self.edge_exits.append(("SIGTERM", code))
        fault.detail["exit"] = code
        self.edge = await self._start_edge()
        fault.back = time.time()
        self.faults.append(fault)

    async def _broker_kill(self) -> None:
        fault = Fault("broker_kill", time.time())
        self.broker.kill()
        await asyncio.sleep(self.rng.uniform(2.0, 8.0))
        await asyncio.to_thread(self.broker.start)
        fault.back = time.time()
        self.faults.append(fault)

    async def _actor_crash(self) -> None:
        """One machine actor's handler raises (the edge's debug hook); the supervisor
        restarts it inside the running process."""
        fault = Fault("actor_crash", time.time())
        restarts = self.edge.count(RESTARTED_LINE)
        self.edge.send(signal.SIGUSR1)
        restarted = await self._until(
            lambda: self.edge.count(RESTARTED_LINE) > restarts, 15, "the actor's restart"
        )
        fault.detail["restarted"] = restarted
        fault.back = time.time()
        self.faults.append(fault)

    async def _link_cut(
        self, segment_first: dict[str, dict[str, int]]
    ) -> dict[str, dict[str, int]]:
        """Hold, let the edge read, kill the simulator; a new one later, held until read."""
        final = await self._hold_and_read()
        self.segments.append((segment_first, final))
        fault = Fault("link_cut", time.time())
        self.sim.send(signal.SIGKILL)
        self.sim.proc.wait()
        await asyncio.sleep(self.rng.uniform(2.0, 6.0))
        cuts = sum(1 for f in self.faults if f.kind == "link_cut")
        if cuts == self.plan.link_cuts - 1 and self.plan.link_cuts > 1:
            start = 0  # the last one: a PLC reset to 0
        else:
            self._counter_start -= 500_000  # far below the old values: re-baselined
            start = self._counter_start
        fault.detail["counter_start"] = start
        self.truth.forget()
        self.sim = await self._start_sim(start)
        fault.back = self.sim_listening_at
        first = await self.truth.read_all()
        read = await self._until(lambda: self.mes.edge_has_read(first), 60, "the new PLC read")
        fault.detail["read"] = read
        self.sim.send(signal.SIGUSR2)
        self.faults.append(fault)
        return first


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    type: str
    data: dict[str, Any]


@dataclass(slots=True)
class Report:
    plan: Plan
    seconds: float
    faults: dict[str, int]
    pieces_plc: dict[str, int]
    pieces_mes: dict[str, int]
    lost: dict[str, int]
    duplicated: dict[str, int]
    stops: dict[str, int]
    seq: dict[str, int]
    link_cuts: list[dict[str, float]]
    broker: list[dict[str, float]]
    edge_gaps: list[dict[str, Any]]
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        f = self.faults
        rows = [
            f"fault campaign {self.plan.name}: seed {self.plan.seed}, "
            f"{self.plan.machines} machines, {self.seconds:.0f} s",
            "",
            "faults injected      "
            + ", ".join(f"{name} {count}" for name, count in f.items())
            + f" (total {sum(f.values())})",
            "",
            f"{'pieces':<20} {'at the PLC':>12} {'at the MES':>12} {'lost':>8} {'duplicated':>11}",
        ]
        for role in ROLES:
            rows.append(
                f"{role:<20} {self.pieces_plc[role]:>12} {self.pieces_mes[role]:>12}"
                f" {self.lost[role]:>8} {self.duplicated[role]:>11}"
            )
        s = self.stops
        rows += [
            "",
            f"stops                true {s['true']}, seen by the edge {s['observable']}, "
            f"reported once {s['once']}, missed {s['missed']}, start off {s['start_off']}, "
            f"duplicated {s['duplicated']}, unmatched {s['unmatched']}",
            f"sequence             epochs {self.seq['epochs']}, gaps {self.seq['gaps']}, "
            f"missing {self.seq['missing']}, duplicates {self.seq['duplicates']}, "
            f"resends dropped {self.seq['resends']}",
        ]
        for cut in self.link_cuts:
            how = "re-baselined" if cut["counter_start"] else "reset"
            rows.append(
                f"link cut             down {cut['outage_s']:.2f} s: unknown starts +"
                f"{cut['start_off_max_s']:.2f} s, ends +{cut['end_off_max_s']:.2f} s "
                f"(poll {self.plan.poll_s:g} s); comm_loss off by {cut['comm_loss_off_s']:.3f} s;"
                f" new counters at {cut['counter_start']}: {cut['counters_told']:.0f} {how}"
            )
        for gap in self.edge_gaps:
            what = "edge kill -9" if gap["kill"] else "edge SIGTERM"
            since = (
                f"from {gap['unknown_before_s']:.2f} s before it"
                if gap["start_reported"]
                else "start never reported"
            )
            rows.append(
                f"{what:<20} down {gap['down_s']:.2f} s: unknown {since} to "
                f"+{gap['unknown_after_s']:.2f} s after ready; credited "
                f"{gap['credited_s']:.2f} of {gap['unknown_s']:.2f} s"
            )
        for outage in self.broker:
            rows.append(
                f"broker down          {outage['downtime_s']:.2f} s: edge offline "
                f"{outage['offline_s']:.2f} s (+{outage['extra_s']:.2f} s, bar {MQTT_BAR_S:g} s)"
            )
        rows.append("")
        rows += [f"FAIL {failure}" for failure in self.failures] or ["all checks passed"]
        return "\n".join(rows)


def _events(received: Received) -> tuple[list[Event], dict[str, int]]:
    """Every event once, by (epoch, seq); and the continuity figures."""
    seen: set[tuple[str, int]] = set()
    batch_ids: set[str] = set()
    events: list[Event] = []
    epochs: dict[str, int] = {}  # epoch -> highest seq
    figures = {"epochs": 0, "gaps": 0, "missing": 0, "duplicates": 0, "resends": 0}
    for _, batch in received.batches:
        if batch.batch_id in batch_ids:
            figures["resends"] += 1
            continue
        batch_ids.add(batch.batch_id)
        last = epochs.get(batch.epoch)
        if last is None:
            figures["epochs"] += 1
            last = batch.seq_first - 1
        if batch.seq_first > last + 1:
            figures["gaps"] += 1
            figures["missing"] += batch.seq_first - last - 1
        for event in batch.events:
            key = (batch.epoch, event.seq)
            if key in seen:
                figures["duplicates"] += 1
                continue
            seen.add(key)
            events.append(Event(event.seq, event.type, event.data))
        epochs[batch.epoch] = max(last, batch.seq_last)
    return events, figures


def _unknown_spans(events: list[Event], machine: str, end: float) -> list[tuple[float, float]]:
    """When the MES was told the machine was ``unknown``: (start, end) spans.

    A span ends with a StateChanged whose ``previous`` is ``unknown``; it starts with
    the StateChanged to ``unknown`` before it, or, when that never arrived, at the
    gap's start a GapRunCredited names, else at the last state change the MES had.
    """
    changes = sorted(
        (e.data["ts"], e.seq, e.data["state"], e.data["previous"])
        for e in events
        if e.type == "StateChanged" and e.data["machine_id"] == machine
    )
    gap_starts = {
        e.data["gap_end"]: e.data["gap_start"]
        for e in events
        if e.type == "GapRunCredited" and e.data["machine_id"] == machine
    }
    spans: list[tuple[float, float]] = []
    since: float | None = None
    last = -float("inf")
    for ts, _, state, previous in changes:
        if state == "unknown":
            since = ts if since is None else since
        elif previous == "unknown":
            spans.append((since if since is not None else gap_starts.get(ts, last), ts))
            since = None
        last = ts
    if since is not None:
        spans.append((since, end))
    return spans


def _unreported_unknown(events: list[Event], machine: str, low: float, high: float) -> bool:
    """No StateChanged to ``unknown`` reached the MES for a span ending in low..high."""
    told = any(
        e.type == "StateChanged"
        and e.data["machine_id"] == machine
        and e.data["state"] == "unknown"
        and low - 5.0 <= e.data["ts"] <= high
        for e in events
    )
    return not told


def _overlaps(low: float, high: float, spans: list[tuple[float, float]], slack: float) -> bool:
    return any(low < b + slack and high > a - slack for a, b in spans)


@dataclass(slots=True)
class _View:
    """What the analysis looks at: the campaign, the MES's events once each, the findings."""

    campaign: Campaign
    events: list[Event]
    end: float
    failures: list[str] = field(default_factory=list)

    def of(self, kind: str, machine: str) -> Iterator[Event]:
        return (e for e in self.events if e.type == kind and e.data["machine_id"] == machine)

    def spans(self, machine: str) -> list[tuple[float, float]]:
        return _unknown_spans(self.events, machine, self.end)


def _check_pieces(view: _View) -> dict[str, dict[str, int]]:
    """Per role: pieces at the PLC (the simulators' counters) and at the MES."""
    figures = {name: dict.fromkeys(ROLES, 0) for name in ("plc", "mes", "lost", "duplicated")}
    wrong: list[str] = []
    for machine in view.campaign.machines:
        counted = dict.fromkeys(ROLES, 0)
        for event in view.of("PiecesCounted", machine):
            counted[event.data["role"]] += event.data["count"]
        for role in ROLES:
            truth = sum(b[machine][role] - a[machine][role] for a, b in view.campaign.segments)
            figures["plc"][role] += truth
            figures["mes"][role] += counted[role]
            figures["lost"][role] += max(truth - counted[role], 0)
            figures["duplicated"][role] += max(counted[role] - truth, 0)
            if truth != counted[role]:
                wrong.append(f"{machine} {role}: PLC {truth}, MES {counted[role]}")
    if wrong:
        view.failures.append(f"pieces differ on {len(wrong)} machine counters: {wrong[:6]}")
    return figures


def _check_stops(view: _View) -> dict[str, int]:
    """Every stop the truth shows starting while the edge saw the machine: reported once."""
    plan = view.campaign.plan
    tolerance = plan.poll_s + plan.truth_poll_s + 0.3
    names = ("true", "observable", "once", "missed", "start_off", "duplicated", "unmatched")
    stops = dict.fromkeys(names, 0)
    unmatched: list[str] = []
    for machine in view.campaign.machines:
        spans = view.spans(machine)
        reported = [e.data["ts"] for e in view.of("StopStarted", machine)]
        stops["duplicated"] += len(reported) - len(set(reported))  # the same start twice
        matched: set[int] = set()
        for low, high, running, initial in view.campaign.truth.transitions[machine]:
            if running or initial:
                continue  # a start of running, or the first state a simulator showed
            stops["true"] += 1
            hits = [i for i, at in enumerate(reported) if low - tolerance <= at <= high + tolerance]
            if _overlaps(low, high, spans, tolerance):
                # It started while (or just as) the edge could not see the machine: not
                # checked, but what the edge reported for it is no phantom either.
                matched.update(hits)
                continue
            stops["observable"] += 1
            if not hits:
                near = any(low - 5 <= at <= high + 5 for at in reported)
                stops["start_off" if near else "missed"] += 1
            elif len(hits) == 1:
                stops["once"] += 1
            else:
                stops["duplicated"] += len(hits) - 1
            matched.update(hits)
        for index, at in enumerate(reported):
            # A stop starting as the edge sees the machine again, still stopped, is the
            # engine's rule after a loss of sight (docs/engine.md), not a phantom.
            resumed = any(abs(at - b) <= tolerance for _, b in spans)
            if index not in matched and not resumed and not _overlaps(at, at, spans, tolerance):
                stops["unmatched"] += 1
                unmatched.append(f"{machine} at {at:.2f}")
    for name in ("missed", "start_off", "duplicated", "unmatched"):
        if stops[name]:
            detail = f" ({', '.join(unmatched[:5])})" if name == "unmatched" else ""
            view.failures.append(f"stops: {stops[name]} {name}{detail}")
    return stops


def _check_credits(view: _View) -> list[Event]:
    """Every GapRunCredited is min(pieces x ideal cycle, gap) (OEE.md §5)."""
    credits = [e for e in view.events if e.type == "GapRunCredited"]
    ideal = {m: ideal_cycle_s(n) for n, m in enumerate(view.campaign.machines, start=1)}
    for credit in credits:
        d = credit.data
        expected = min(d["pieces"] * ideal[d["machine_id"]], d["unknown_s"])
        if abs(d["running_s"] - expected) > 1e-6:
            view.failures.append(f"gap credit {d}: expected {expected:.3f} s of run time")
    return credits


def _credited(credits: list[Event], machine: str, low: float, high: float) -> float:
    return max(
        (
            c.data["running_s"]
            for c in credits
            if c.data["machine_id"] == machine and low <= c.data["gap_end"] <= high + 0.01
        ),
        default=0.0,
    )


def _check_link_cuts(view: _View, credits: list[Event]) -> list[dict[str, float]]:
    """Each machine's unknown span against the outage; nothing credited (the PLC was held)."""
    plan = view.campaign.plan
    rows: list[dict[str, float]] = []
    for fault in (f for f in view.campaign.faults if f.kind == "link_cut"):
        start_off = end_off = credited = 0.0
        for machine in view.campaign.machines:
            spans = [s for s in view.spans(machine) if fault.at - 1.0 <= s[0] <= fault.back]
            if len(spans) != 1:
                view.failures.append(f"link cut at {fault.at:.1f}: {machine} unknown {spans}")
                continue
            a, b = spans[0]
            start_off, end_off = max(start_off, a - fault.at), max(end_off, b - fault.back)
            if not -0.05 <= a - fault.at <= plan.poll_s + 0.3:
                view.failures.append(f"link cut: {machine} unknown from {a - fault.at:+.2f} s")
            if not -0.05 <= b - fault.back <= 2 * plan.poll_s + 0.5:
                view.failures.append(f"link cut: {machine} unknown until {b - fault.back:+.2f} s")
            credited = max(credited, _credited(credits, machine, a, b))
        start = fault.detail.get("counter_start", 0)
        kind = "CounterRebaselined" if start else "Warning"
        told = sum(
            1
            for e in view.events
            if e.type == kind
            and fault.at <= e.data["ts"] <= fault.back + 30
            and (start or e.data["kind"] == "counter_reset")
        )
        rows.append(
            {
                "outage_s": fault.back - fault.at,
                "start_off_max_s": start_off,
                "end_off_max_s": end_off,
                "comm_loss_off_s": credited,
                "counter_start": start,
                "counters_told": told,
            }
        )
        if credited > 0:
            view.failures.append(f"link cut: {credited:.2f} s credited though the PLC made nothing")
        if not fault.detail.get("read", True):
            view.failures.append("link cut: the edge never read the new PLC's counters")
    return rows


def _check_restarts(view: _View, credits: list[Event]) -> list[dict[str, Any]]:
    """The unknown span each restart of the edge left (per restart, the widest machine)."""
    rows: list[dict[str, Any]] = []
    unreported = 0
    for fault in (f for f in view.campaign.faults if f.kind in ("edge_kill", "sigterm")):
        worst: dict[str, Any] = {}
        for machine in view.campaign.machines:
            spans = [
                s
                for s in view.spans(machine)
                if s[0] <= fault.at + 3.0 and s[1] >= fault.back - 0.5
            ]
            if not spans:
                view.failures.append(f"{fault.kind} at {fault.at:.1f}: {machine} never unknown")
                continue
            a, b = min(spans, key=lambda span: span[1])  # the one the restart ended
            reported = not _unreported_unknown(view.events, machine, fault.at - 3.0, b)
            unreported += not reported
            row = {
                "kill": fault.kind == "edge_kill",
                "start_reported": reported,
                "down_s": fault.back - fault.at,
                "unknown_before_s": fault.at - a,
                "unknown_after_s": b - fault.back,
                "unknown_s": b - a,
                "credited_s": _credited(credits, machine, a, b),
            }
            if not worst or row["unknown_before_s"] > worst["unknown_before_s"]:
                worst = row
        if worst:
            rows.append(worst)
    if unreported:
        view.failures.append(
            f"restarts: {unreported} machine restores whose StateChanged to unknown (and the "
            "StopEnded of a stop open at the snapshot) never reached the MES"
        )
    return rows


def _check_broker_outages(view: _View) -> list[dict[str, float]]:
    """MQTT offline (crash to the edge's next birth) against the broker's downtime."""
    rows: list[dict[str, float]] = []
    births = sorted(
        s["ts"]
        for _, s in view.campaign.mes.received.statuses
        if s.get("status") == "online" and "ts" in s
    )
    for fault in (f for f in view.campaign.faults if f.kind == "broker_kill"):
        back = next((ts for ts in births if ts >= fault.back - 0.05), None)
        if back is None:
            view.failures.append(f"broker kill at {fault.at:.1f}: no birth afterwards")
            continue
        downtime, offline = fault.back - fault.at, back - fault.at
        rows.append({"downtime_s": downtime, "offline_s": offline, "extra_s": offline - downtime})
        if offline - downtime > MQTT_BAR_S:
            view.failures.append(
                f"MQTT offline {offline:.2f} s > broker downtime {downtime:.2f} s "
                f"+ {MQTT_BAR_S:g} s"
            )
    return rows


def analyse(campaign: Campaign, seconds: float) -> Report:
    received = campaign.mes.received
    events, seq = _events(received)
    view = _View(campaign, events, time.time())
    if received.errors:
        view.failures.append(f"{len(received.errors)} undecodable: {received.errors[:3]}")
    for name in ("gaps", "duplicates"):
        if seq[name]:
            view.failures.append(f"sequence: {seq[name]} {name}")
    if seq["epochs"] != 1:
        view.failures.append(f"sequence: {seq['epochs']} epochs (the outbox was recreated)")
    pieces = _check_pieces(view)
    stops = _check_stops(view)
    credits = _check_credits(view)
    link_cuts = _check_link_cuts(view, credits)
    restarts = _check_restarts(view, credits)
    broker = _check_broker_outages(view)
    for what, code in campaign.edge_exits:
        if code != 0:
            view.failures.append(f"{what}: edge exited {code}")
    injected: dict[str, int] = defaultdict(int)
    for fault in campaign.faults:
        injected[fault.kind] += 1
        if fault.kind == "actor_crash" and not fault.detail.get("restarted"):
            view.failures.append("actor crash: the supervisor did not restart the actor")
    with (campaign.dir / "mes-events.jsonl").open("w") as out:
        for event in events:
            out.write(json.dumps({"seq": event.seq, "type": event.type, **event.data}) + "\n")
    with (campaign.dir / "truth.jsonl").open("w") as out:
        for machine, transitions in campaign.truth.transitions.items():
            for low, high, running, initial in transitions:
                row = {"machine": machine, "low": low, "high": high, "running": running}
                out.write(json.dumps({**row, "initial": initial}) + "\n")
    return Report(
        plan=campaign.plan,
        seconds=seconds,
        faults=dict(injected),
        pieces_plc=pieces["plc"],
        pieces_mes=pieces["mes"],
        lost=pieces["lost"],
        duplicated=pieces["duplicated"],
        stops=stops,
        seq=seq,
        link_cuts=link_cuts,
        broker=broker,
        edge_gaps=restarts,
        failures=view.failures,
    )


# --------------------------------------------------------------------------- command line


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="edge-faults-") as name:
        yield Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.campaign", description=__doc__)
    parser.add_argument("--long", action="store_true", help="the long run (make faults)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--keep", type=Path, default=None, help="work (and keep logs) here")
    args = parser.parse_args(argv)
    plan = Plan.long(args.seed) if args.long else Plan.short(args.seed)
    with _workdir(args.keep) as directory:
        report = asyncio.run(Campaign(plan, directory).run())
    print(report.table())
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
