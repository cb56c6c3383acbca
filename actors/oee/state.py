"""Machine state (OEE.md §3) and the PackML state names that can become stop reasons."""

from __future__ import annotations

from enum import Enum


class MachineState(Enum):
    """Exactly one of these at every instant (OEE.md §3)."""

    RUNNING = "running"
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # no valid data: before the first sample, or the PLC link is down


# ISA-TR88.00.02 (PackTags StateCurrent) codes. Execute is the only producing state.
PACKML_EXECUTE = 6
PACKML_STATE_NAMES: dict[int, str] = {
    0: "Undefined",
    1: "Clearing",
    2: "Stopped",
    3: "Starting",
    4: "Idle",
    5: "Suspended",
    6: "Execute",
    7: "Stopping",
    8: "Aborting",
    9: "Aborted",
    10: "Holding",
    11: "Held",
    12: "Unholding",
    13: "Suspending",
    14: "Unsuspending",
    15: "Resetting",
    16: "Completing",
    17: "Complete",
}


def packml_state_name(code: int) -> str:
    """The standard name of a PackML state code; an unknown code reads ``state <code>``."""
    return PACKML_STATE_NAMES.get(code, f"state {code}")
