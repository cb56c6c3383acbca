"""Stop reasons: which one wins, and what category it has (OEE.md §3).

Priority, first that applies:

1. the PLC fault code, through the machine's reason table; a code missing from
   the table reads as its raw code (``"3"``). The code is the one present when
   the stop starts, else the first non-zero code seen during the stop
   (0 means "no fault");
2. the operator-entered reason (applies to the whole stop, also after it ended);
3. the PackML state name (``Stopped``, ``Held``, ...), the state present when the
   stop starts, else the first non-Execute state seen during the stop;
4. ``unassigned``.

A reason's category comes from the reason table, by code for a fault code and
by name otherwise; a reason the table does not know is ``unplanned``.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.oee.params import Reason, ReasonCategory
from actors.oee.state import packml_state_name

UNASSIGNED = "unassigned"
COMM_LOSS = "comm_loss"


class ReasonTable:
    """A machine's reason table, indexed by PLC code and by name."""

    __slots__ = ("_by_code", "_by_name")

    def __init__(self, reasons: Iterable[Reason]) -> None:
        self._by_code: dict[int, Reason] = {}
        self._by_name: dict[str, Reason] = {}
        for reason in reasons:
            if reason.code is not None:
                self._by_code[reason.code] = reason
            self._by_name[reason.name] = reason

    def knows_name(self, name: str) -> bool:
        return name in self._by_name

    def category_of(self, name: str) -> ReasonCategory:
        reason = self._by_name.get(name)
        return reason.category if reason is not None else ReasonCategory.UNPLANNED

    def resolve(
        self, fault_code: int | None, operator_reason: str | None, state_code: int | None
    ) -> tuple[str, ReasonCategory]:
        """The winning reason name and its category for a stop with these inputs."""
        if fault_code is not None:
            reason = self._by_code.get(fault_code)
            if reason is not None:
                return reason.name, reason.category
            name = str(fault_code)
            return name, self.category_of(name)
        if operator_reason is not None:
            return operator_reason, self.category_of(operator_reason)
        if state_code is not None:
            name = packml_state_name(state_code)
            return name, self.category_of(name)
        return UNASSIGNED, self.category_of(UNASSIGNED)
