"""Shared pieces of the OPC UA server tests: a line config, a LineCommands double,
an asyncua client helper and a wait loop.

The LineCommands double is a small hand-written implementation of OUR interface
(edge.commands.LineCommands), never a mock of asyncua: the server under test is
the real asyncua server on 127.0.0.1, the clients are real clients.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from asyncua import Client, ua

from edge.commands import CommandAudit, OrderInfo, OrderSpec
from edge.config import LineConfig, load_config
from edge.errors import CommandError
from tests.integration.conftest import _free_port

NAMESPACE = "urn:T:a:L1"
PASSWORDS = {"op": "op-pw", "lead": "lead-pw", "maint": "maint-pw"}


def free_port() -> int:
    return _free_port()


def endpoint(port: int) -> str:
    return f"opc.tcp://127.0.0.1:{port}/edge/"


def line_toml(
    opc_port: int,
    *,
    sim_port: int | None = None,
    opcua: str = "",
    machines_reversed: bool = False,
) -> str:
    """Two machines (M1 generic Modbus map, M2 PackML map) and a quality station.

    One 24 h UTC shift without breaks: every piece is inside planned production.
    Without ``sim_port`` there is no PLC: tests drive the machine actors directly.
    """
    plc = (
        textwrap.dedent(
            f"""
            [[plcs]]
            id = "sim"
            protocol = "modbus"
            host = "127.0.0.1"
            port = {sim_port}
            poll_interval_s = 0.05
            timeout_s = 0.3
            retries = 0
            backoff_initial_s = 0.05
            backoff_max_s = 0.2
            """
        )
        if sim_port is not None
        else ""
    )
    bind = 'plc = "sim"\n' if sim_port is not None else ""
    machines = [
        f'[[machines]]\nid = "M1"\nname = "Filler"\nideal_cycle_s = 1.0\n{bind}'
        'plc_map = "generic-modbus"\nunit_id = 1\n'
        'manufacturer = "Acme Filling GmbH"\nmodel = "AF-400"\nserial_number = "AF4-2019-0042"\n'
        "year_of_construction = 2019\n"
        'reasons = [{ code = 17, name = "jam at infeed" }, { name = "cleaning", '
        'category = "planned" }, { name = "waiting for material" }]\n',
        f'[[machines]]\nid = "M2"\nideal_cycle_s = 0.5\n{bind}plc_map = "packml-modbus"\n'
        "unit_id = 2\n",
    ]
    if machines_reversed:
        machines.reverse()
    return (
        textwrap.dedent(
            """
            [line]
            site = "T"
            area = "a"
            id = "L1"
            name = "Test line"

            [calendar]
            timezone = "UTC"
            [[calendar.shifts]]
            name = "All"
            start = "00:00"
            end = "00:00"
            """
        )
        + plc
        + "\n"
        + "\n".join(machines)
        + textwrap.dedent(
            """
            [[quality_stations]]
            id = "QS1"
            name = "Vision check"
            machine = "M1"
            """
        )
        + textwrap.dedent(
            f"""
            [opcua]
            endpoint = "{endpoint(opc_port)}"
            status_interval_s = 0.2
            """
        )
        + textwrap.dedent(opcua)
        + textwrap.dedent(
            """
            [metrics]
            enabled = false
            [storage]
            state_dir = "state"
            """
        )
    )


USERS = "".join(
    f'[[opcua.users]]\nname = "{name}"\npassword = "{pw}"\nroles = ["{role}"]\n'
    for (name, pw), role in zip(
        PASSWORDS.items(), ("operator", "supervisor", "maintenance"), strict=True
    )
)


def make_config(tmp_path: Path, opc_port: int, **kwargs: object) -> LineConfig:
    path = tmp_path / "line.toml"
    path.write_text(line_toml(opc_port, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return load_config(path)


def client(port: int, user: str | None = None) -> Client:
    c = Client(endpoint(port), timeout=5)
    if user is not None:
        c.set_user(user)
        c.set_password(PASSWORDS[user])
    return c


async def node_of(c: Client, text: str) -> ua.NodeId:
    idx = await c.get_namespace_index(NAMESPACE)
    return ua.NodeId(text, idx)


async def wait_for(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], within_s: float = 15.0
) -> None:
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"not within {within_s} s"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- LineCommands double

_TRANSITIONS = {
    "start": ({"released", "held"}, "running"),
    "hold": ({"running"}, "held"),
    "resume": ({"held"}, "running"),
    "complete": ({"running", "held"}, "completed"),
}


@dataclass
class OrdersDouble:
    """A tiny order book with the real lifecycle's rules, implementing LineCommands."""

    orders: dict[str, OrderInfo] = field(default_factory=dict)
    calls: list[tuple[str, tuple[object, ...], str, str]] = field(default_factory=list)
    audits: list[CommandAudit] = field(default_factory=list)

    def add(self, order_id: str, status: str = "released") -> None:
        self.orders[order_id] = OrderInfo(order_id, status, "bottle-1l", 100, 0, 0, ("M1",))

    def _move(self, action: str, order_id: str, user: str, source: str) -> OrderInfo:
        self.calls.append((action, (order_id,), user, source))
        info = self.orders.get(order_id)
        if info is None:
            raise CommandError(f"order_id: unknown order {order_id!r}")
        allowed, target = _TRANSITIONS[action]
        if info.status not in allowed:
            raise CommandError(f"order {order_id!r} is {info.status}; cannot {action}")
        self.orders[order_id] = replace(info, status=target)
        return self.orders[order_id]

    async def download_order(self, spec: OrderSpec, *, source: str, user: str) -> OrderInfo:
        self.add(spec.order_id, "created")
        return self.orders[spec.order_id]

    async def release_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return self.orders[order_id]

    async def start_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return self._move("start", order_id, user, source)

    async def hold_order(self, order_id: str, reason: str, *, source: str, user: str) -> OrderInfo:
        return self._move("hold", order_id, user, source)

    async def resume_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return self._move("resume", order_id, user, source)

    async def complete_order(self, order_id: str, *, source: str, user: str) -> OrderInfo:
        return self._move("complete", order_id, user, source)

    async def abort_order(self, order_id: str, reason: str, *, source: str, user: str) -> OrderInfo:
        raise CommandError("not in this double")

    async def set_stop_reason(
        self,
        machine_id: str,
        reason: str,
        *,
        stop_id: int | None = None,
        ts: float | None = None,
        source: str,
        user: str,
    ) -> None:
        self.calls.append(("set_stop_reason", (machine_id, reason, stop_id, ts), user, source))
        if reason == "no such reason":
            raise CommandError(f"reason: {reason!r} is not in {machine_id}'s reason table")

    async def acknowledge_alarm(self, alarm_id: str, *, source: str, user: str) -> None:
        self.calls.append(("acknowledge_alarm", (alarm_id,), user, source))
        if not alarm_id.startswith("M1."):
            raise CommandError(f"alarm_id: no open alarm {alarm_id!r}")
