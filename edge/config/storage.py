"""``[storage]`` and ``[outbox]``: where the state lives and how much of it is kept."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from edge.config.schema import Positive, Reader, between

# FULL survives power loss; NORMAL survives a process crash only.
Synchronous = Literal["FULL", "NORMAL"]


@dataclass(frozen=True, slots=True)
class StorageConfig:
    state_dir: Path
    sqlite_synchronous: Synchronous = "FULL"


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: Path  # the previous release's outbox, migrated into state.db (<state_dir>/outbox.db)
    synchronous: Synchronous = "FULL"
    # Stored event bytes, then the policy applies; below a few KiB one batch would not fit.
    max_bytes: Annotated[int, between(4096, 2**50)] = 1_073_741_824
    policy: Literal["drop-oldest", "reject-new"] = "drop-oldest"
    # In memory, waiting for the next group commit.
    max_pending_events: Annotated[int, between(1000, 10_000_000)] = 200_000
    report_interval_s: Annotated[float, Positive] = 10.0  # at most one policy report per interval


def read_storage(reader: Reader, doc: dict[str, Any], line_id: str) -> StorageConfig:
    # systemd's StateDirectory= sets $STATE_DIRECTORY (maybe several paths, ':'-separated).
    default = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    default = default or str(Path.cwd() / "var" / (line_id or "line"))
    raw = {"state_dir": default} | reader.table(doc, "storage")
    return reader.section(StorageConfig, raw, "storage") or StorageConfig(Path(default))


def read_outbox(reader: Reader, doc: dict[str, Any], storage: StorageConfig) -> OutboxConfig:
    default = storage.state_dir / "outbox.db"
    raw = {"path": str(default)} | reader.table(doc, "outbox")
    return reader.section(OutboxConfig, raw, "outbox") or OutboxConfig(default)
