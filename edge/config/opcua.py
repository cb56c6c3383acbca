"""``[opcua]``: the line's own OPC UA server, its security, users and their roles."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from edge.config.plcs import OpcEndpoint
from edge.config.schema import Check, NonEmpty, Reader, Unique, at_least_one, between, one_of
from edge.secrets import Secret

# Roles of OPC UA users, and the methods each may call unless [opcua.method_roles]
# says otherwise (only supervisor and above complete an order).
OPCUA_ROLES = ("operator", "supervisor", "quality", "maintenance", "admin")
OPCUA_SECURITY_POLICIES = ("Basic256Sha256", "Aes256Sha256RsaPss")
OPCUA_SECURITY_MODES = ("Sign", "SignAndEncrypt")
OPCUA_DEFAULT_METHOD_ROLES: dict[str, frozenset[str]] = {
    "StartOrder": frozenset({"operator", "supervisor", "admin"}),
    "HoldOrder": frozenset({"operator", "supervisor", "admin"}),
    "ResumeOrder": frozenset({"operator", "supervisor", "admin"}),
    "CompleteOrder": frozenset({"supervisor", "admin"}),
    "SetStopReason": frozenset({"operator", "supervisor", "maintenance", "admin"}),
    "AcknowledgeAlarm": frozenset({"operator", "supervisor", "quality", "maintenance", "admin"}),
}


def _role(role: str) -> str | None:
    hint = difflib.get_close_matches(role, OPCUA_ROLES, n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    listed = ", ".join(OPCUA_ROLES)
    return None if role in OPCUA_ROLES else f"unknown role {role!r}{suffix}; roles are: {listed}"


Roles = Annotated[
    frozenset[Annotated[str, Check(_role)]], at_least_one("must name at least one role")
]
_TWICE = Unique("listed twice: {!r}")
Policies = Annotated[tuple[Annotated[str, one_of(*OPCUA_SECURITY_POLICIES)], ...], _TWICE]
_ONE_MODE = at_least_one(f"must list at least one of {', '.join(OPCUA_SECURITY_MODES)}")
Modes = Annotated[tuple[Annotated[str, one_of(*OPCUA_SECURITY_MODES)], ...], _TWICE, _ONE_MODE]


@dataclass(frozen=True, slots=True)
class OpcUaUser:
    """A user of the line: of its OPC UA server and of the line display (edge.serve.web).

    ``roles`` decide which commands it may give (``[opcua.method_roles]``, the same
    rule for both, edge.serve.access); ``pin`` is a short secret for the line display only.
    """

    name: Annotated[str, NonEmpty]
    password: Annotated[Secret, NonEmpty]
    roles: Roles
    pin: Secret | None = None


@dataclass(frozen=True, slots=True)
class OpcUaServerConfig:
    enabled: bool = True
    endpoint: OpcEndpoint = "opc.tcp://0.0.0.0:4840/edge/"
    namespace_uri: str = ""  # empty: urn:<site>:<area>:<line>
    security_none: bool = True  # offer the unsecured endpoint (SecurityPolicy None)
    security_policies: Policies = OPCUA_SECURITY_POLICIES
    security_modes: Modes = OPCUA_SECURITY_MODES
    anonymous: bool = True  # anonymous sessions (read-only: never a method)
    pki_dir: Path | None = None  # None: <state_dir>/opcua-pki
    status_interval_s: Annotated[float, between(0.05, 60)] = 1.0  # KPI refresh from the actors
    users: tuple[OpcUaUser, ...] = ()
    method_roles: tuple[tuple[str, frozenset[str]], ...] = tuple(OPCUA_DEFAULT_METHOD_ROLES.items())

    def roles_for(self, method: str) -> frozenset[str]:
        """The roles allowed to call ``method`` (none for an unknown method)."""
        return dict(self.method_roles).get(method, frozenset())


def read_opcua(reader: Reader, doc: dict[str, Any]) -> OpcUaServerConfig:
    table = dict(reader.table(doc, "opcua"))
    roles = reader.table(table, "method_roles", "opcua")
    table.pop("method_roles", None)
    # The users log in on the line display too: their secrets are read when either is on.
    web = doc.get("web", {})
    display = not isinstance(web, dict) or web.get("enabled", True) is True
    config = reader.section(
        OpcUaServerConfig,
        table,
        "opcua",
        read_secrets=table.get("enabled", True) is True or display,
    )
    config = config or OpcUaServerConfig()
    if config.enabled and not config.security_none and config.security_policies == ():
        reader.problem(
            "opcua.security_policies", "no endpoint left: list a policy or set security_none = true"
        )
    for index, user in enumerate(config.users):
        pin = user.pin
        if pin is not None and pin.is_read and not re.fullmatch(r"[0-9]{4,12}", pin.reveal()):
            reader.problem(f"opcua.users[{index}].pin", "must be 4 to 12 digits")
    users = table.get("users")
    names = [user.get("name") if isinstance(user, dict) else None for user in users or []]
    for index, name in enumerate(names if isinstance(users, list) else []):
        if name is not None and name in names[:index]:
            reader.problem(f"opcua.users[{index}].name", f"duplicate user {name!r}")
    if config.enabled and not config.anonymous and not config.users:
        reader.problem(
            "opcua.anonymous", "nobody could log in: add [[opcua.users]] or set anonymous = true"
        )
    reader.known_keys(roles, "opcua.method_roles", set(OPCUA_DEFAULT_METHOD_ROLES))
    merged = dict(OPCUA_DEFAULT_METHOD_ROLES)
    for method, value in roles.items():
        allowed = reader.value(Roles, value, f"opcua.method_roles.{method}")
        if method in merged and isinstance(allowed, frozenset):
            merged[method] = allowed
    return dataclasses.replace(config, method_roles=tuple(merged.items()))
