"""Who may give which command on the line: one rule for every front end with users.

The line has one list of users (``[[opcua.users]]``: a name, a password, roles and
optionally a PIN) and one table of the roles allowed per command
(``[opcua.method_roles]``, keyed by the OPC UA method names). The OPC UA methods
and the line display (edge.serve.web) both ask :func:`refusal`, so a role that may not
complete an order over OPC UA may not do it from a web page either.

The MES's MQTT commands are not users' commands: they are authorised by the
broker's credentials, ``mqtt.command_users`` and ``mqtt.command_token``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.config import LineConfig, OpcUaUser

__all__ = ["ANONYMOUS", "AccessPolicy", "Principal", "User", "refusal"]

ANONYMOUS = "anonymous"


class Principal(Protocol):
    """Whoever asks: a configured user (a name and roles) or anonymous."""

    @property
    def name(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...

    @property
    def anonymous(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class User:
    name: str
    roles: frozenset[str]

    @property
    def anonymous(self) -> bool:
        return self.name == ANONYMOUS


NOBODY = User(ANONYMOUS, frozenset())


def refusal(command: str, who: Principal, allowed: frozenset[str]) -> str | None:
    """Why ``who`` may not give ``command`` (None: it may). Anonymous never may."""
    if who.anonymous:
        return (
            f"{command}: anonymous sessions are read-only; log in as a user with one of "
            f"the roles {', '.join(sorted(allowed))}"
        )
    if not who.roles & allowed:
        return (
            f"{command}: user {who.name!r} (roles {', '.join(sorted(who.roles))}) "
            f"may not call it; allowed roles: {', '.join(sorted(allowed))}"
        )
    return None


class AccessPolicy:
    """The line's users and command roles, read from the config once."""

    def __init__(
        self, users: Sequence[OpcUaUser], command_roles: Mapping[str, frozenset[str]]
    ) -> None:
        self._users = {u.name: u for u in users}
        self._roles = dict(command_roles)

    @classmethod
    def from_config(cls, config: LineConfig) -> AccessPolicy:
        return cls(config.opcua.users, dict(config.opcua.method_roles))

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    def roles_for(self, command: str) -> frozenset[str]:
        """The roles allowed to give ``command`` (none for an unknown command)."""
        return self._roles.get(command, frozenset())

    def refusal(self, command: str, who: Principal) -> str | None:
        return refusal(command, who, self.roles_for(command))

    def authenticate(self, name: str, secret: str) -> User | None:
        """The user whose password or PIN ``secret`` is; None when neither matches.

        Both secrets are compared in constant time, also for a name nobody has,
        so the answer's timing does not tell which names exist.
        """
        user = self._users.get(name)
        given = secret.encode()
        password = user.password.reveal().encode() if user is not None else b"\0"
        pin = user.pin.reveal().encode() if user is not None and user.pin is not None else b"\0"
        by_password = hmac.compare_digest(given, password)
        by_pin = hmac.compare_digest(given, pin)
        if user is None or not (by_password or by_pin):
            return None
        return User(user.name, user.roles)
