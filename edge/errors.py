"""The project's one exception tree.

Library errors (pymodbus, asyncua, aiomqtt, aiosqlite, httpx) never escape a
connector: they are re-raised as one of these, ``from`` the original.

The domain's errors (marked ``actors``) are defined in :mod:`actors.errors`,
below the I/O layer, so the domain raises them without importing ``edge``;
this module re-exports them, and the I/O errors subclass the same root:

::

    EdgeError                    (actors) root of every error raised on purpose
    ├── ConfigError              a config file or plc_map is invalid (carries every problem)
    ├── WireError                an MQTT payload is not a valid batch/command (edge.wire)
    │   └── MalformedBatch       ... one the central store dead-letters (edge.ingest.errors)
    ├── ActorError               (actors)
    │   ├── ActorStoppedError    the actor is stopped or died; pending asks get this
    │   ├── MailboxFullError     tell_nowait on a full mailbox
    │   ├── AskTimeoutError      no reply within the ask timeout
    │   └── EscalationError      a supervisor's restart intensity was exceeded
    ├── CommandError             (actors) a command (MQTT, OPC UA method, CLI) was rejected
    │   └── CommandRejected      ... with a reply code for the MES (edge.mqtt.commands)
    ├── SnapshotError            (actors) a saved state cannot restore a core
    ├── StateStoreError          the state database (snapshots, outbox) failed
    │   └── StateDirError        the state directory cannot be used (edge run exits 78)
    ├── TraceError               a replay trace line is malformed
    └── ConnectorError           an external system failed
        ├── PlcError
        │   ├── PlcConnectionError   the link to a PLC is down
        │   └── PlcDataError         a PLC answered with data that cannot be decoded
        ├── BrokerError          the MQTT broker is unreachable or refused (edge.mqtt.connection)
        ├── StoreError           the central PostgreSQL store failed (edge.ingest.errors)
        │   ├── StoreUnavailableError  unreachable or busy: the batch is retried
        │   └── RefusedBatch           the database refused the data: a dead letter
        └── QmibError            QMIB's REST gateway failed (edge.qmib)
            ├── QmibAuthError        401/403: credentials wrong, never retried
            ├── QmibRejectedError    another 4xx: the request itself is wrong, never retried
            └── QmibUnavailableError 5xx or no connection after the retries

Errors specific to one connector live in its module, under this tree.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.errors import (
    ActorError,
    ActorStoppedError,
    AskTimeoutError,
    CommandError,
    EdgeError,
    EscalationError,
    MailboxFullError,
    Problem,
    SnapshotError,
)

__all__ = [
    "ActorError",
    "ActorStoppedError",
    "AskTimeoutError",
    "CommandError",
    "ConfigError",
    "ConnectorError",
    "EdgeError",
    "EscalationError",
    "MailboxFullError",
    "PlcConnectionError",
    "PlcDataError",
    "PlcError",
    "Problem",
    "SnapshotError",
    "StateDirError",
    "StateStoreError",
    "TraceError",
]


class ConfigError(EdgeError):
    """A config file or plc_map is invalid.

    Carries every problem found, not just the first, so a user fixes them in
    one round trip.
    """

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source}: {count} {noun}:\n{lines}")


class StateStoreError(EdgeError):
    """The local state database (snapshots, outbox) failed."""


class StateDirError(StateStoreError):
    """The state directory cannot be used (missing rights, not a directory)."""


class TraceError(EdgeError):
    """A replay trace line cannot be used."""


class ConnectorError(EdgeError):
    """An external system failed."""


class PlcError(ConnectorError):
    """Base of PLC connector errors."""


class PlcConnectionError(PlcError):
    """The link to a PLC is down or timed out."""


class PlcDataError(PlcError):
    """A PLC answered with data that cannot be decoded."""
