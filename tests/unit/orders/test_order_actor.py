"""OrderActor under a real supervisor: a crash restart keeps what it had handled."""

from __future__ import annotations

from actors.orders import OrderAction as A
from actors.orders import OrderCore
from actors.orders import OrderStatus as S
from actors.orders.actor import ApplyAction, AttributePieces, GetOrderView, OrderActor
from actors.supervisor import ChildSpec, Supervisor
from tests.unit.actors_runtime.helpers import eventually
from tests.unit.orders.test_order_core import order_in, spec


async def test_an_order_actor_restart_keeps_the_pieces_handled_after_its_snapshot() -> None:
    # Under the line's supervisor, a snapshot every second (none falls in this test).
    core = order_in(S.RUNNING, machine_ids=("M1",))
    made = [core]

    def factory() -> OrderActor:
        # The first instance gets the running order; a restart restores the snapshot.
        return OrderActor(made.pop() if made else OrderCore(spec()), lambda order_id, ts: None)

    async with Supervisor(name="line", restart_backoff_s=0.0) as supervisor:
        ref = await supervisor.add_child(ChildSpec(id="WO1", factory=factory))
        await ref.tell(AttributePieces("M1", "total_count", 5, 300.0))
        await ref.ask(GetOrderView())
        assert ref.cut() is not None  # the state writer's cut
        await ref.tell(AttributePieces("M1", "total_count", 7, 310.0))
        await ref.tell(ApplyAction(A.RELEASE, 320.0))  # not allowed while running: a crash
        await ref.tell(AttributePieces("M1", "total_count", 3, 330.0))
        await eventually(lambda: ref.statistics().restarts == 1, timeout_s=5.0)
        view = await ref.ask(GetOrderView())
    assert ref.statistics().restarts == 1
    # 5 + 7 + 3: the 7 after the snapshot are not lost with the crashed instance.
    assert view.machines["M1"].total == 15
