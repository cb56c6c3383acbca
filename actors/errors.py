"""The domain's part of the project's one exception tree.

The root, :class:`EdgeError`, lives here, below everything, so the domain
(``actors/``) raises its own errors without importing the I/O layer; the I/O
errors (config, wire, state database, connectors) subclass the same root in
:mod:`edge.errors`, which re-exports these. The whole tree is drawn there.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ActorError",
    "ActorStoppedError",
    "AskTimeoutError",
    "CommandError",
    "EdgeError",
    "EscalationError",
    "MailboxFullError",
    "Problem",
    "SnapshotError",
]


class EdgeError(Exception):
    """Root of every error this project raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input, located by its key path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ActorError(EdgeError):
    """Base of actor runtime errors."""


class ActorStoppedError(ActorError):
    """The actor is stopped or died before it could handle the message."""


class MailboxFullError(ActorError):
    """``tell_nowait`` found the mailbox full."""


class AskTimeoutError(ActorError, TimeoutError):
    """No reply arrived within the ask timeout."""


class EscalationError(ActorError):
    """A supervisor gave up: its children failed more often than its intensity allows."""


class CommandError(EdgeError):
    """A command was rejected; the message says which argument and why."""


class SnapshotError(EdgeError):
    """A saved state cannot restore a core (another machine's, another version, damaged)."""
