"""Logins of the line display: password or PIN, expiry, lockout; the shared role rule."""

from __future__ import annotations

import pytest

from edge.config import OPCUA_DEFAULT_METHOD_ROLES, OpcUaUser
from edge.secrets import Secret
from edge.serve.access import NOBODY, AccessPolicy, User, refusal
from edge.serve.web.auth import LOCKOUT_S, MAX_FAILURES, LoginRefused, Sessions

USERS = (
    OpcUaUser("op1", Secret("op-password"), frozenset({"operator"}), Secret("1234")),
    OpcUaUser("lead", Secret("lead-password"), frozenset({"supervisor"})),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sessions(clock: Clock, idle_s: float = 60.0, max_s: float = 300.0) -> Sessions:
    policy = AccessPolicy(USERS, OPCUA_DEFAULT_METHOD_ROLES)
    return Sessions(policy, idle_s=idle_s, max_s=max_s, clock=clock)


def test_password_or_pin_logs_in_and_nothing_else_does() -> None:
    policy = AccessPolicy(USERS, OPCUA_DEFAULT_METHOD_ROLES)
    assert policy.authenticate("op1", "1234") == User("op1", frozenset({"operator"}))
    assert policy.authenticate("op1", "op-password") == User("op1", frozenset({"operator"}))
    assert policy.authenticate("lead", "lead-password") is not None
    assert policy.authenticate("lead", "1234") is None  # another user's PIN
    assert policy.authenticate("lead", "") is None
    assert policy.authenticate("nobody", "1234") is None
    assert policy.authenticate("op1", "12345") is None


def test_the_role_rule_is_the_opcua_rule() -> None:
    policy = AccessPolicy(USERS, OPCUA_DEFAULT_METHOD_ROLES)
    operator = User("op1", frozenset({"operator"}))
    lead = User("lead", frozenset({"supervisor"}))
    assert policy.refusal("SetStopReason", operator) is None
    assert policy.refusal("CompleteOrder", lead) is None
    assert policy.refusal("CompleteOrder", operator) == (
        "CompleteOrder: user 'op1' (roles operator) may not call it; "
        "allowed roles: admin, supervisor"
    )
    message = refusal("StartOrder", NOBODY, frozenset({"operator"}))
    assert message is not None and "anonymous sessions are read-only" in message
    assert policy.refusal("NoSuchCommand", lead) is not None  # unknown: nobody may


def test_sessions_expire_when_idle_and_at_their_maximum() -> None:
    clock = Clock()
    store = sessions(clock)
    session = store.login("op1", "1234")
    assert session.user.name == "op1" and session.csrf_token and session.token
    clock.now += 59
    assert store.get(session.token) is session  # used: the idle clock restarts
    clock.now += 59
    assert store.get(session.token) is session
    clock.now += 61
    assert store.get(session.token) is None  # idle for more than 60 s
    assert store.get(session.token) is None
    # Kept busy, it still ends at its maximum age.
    session = store.login("op1", "1234")
    for _ in range(5):
        clock.now += 55
        assert store.get(session.token) is session
    clock.now += 30  # 305 s after the login
    assert store.get(session.token) is None
    session = store.login("op1", "1234")
    store.logout(session.token)
    assert store.get(session.token) is None
    assert store.get("made-up") is None and store.get(None) is None


def test_a_name_is_locked_after_repeated_wrong_secrets() -> None:
    clock = Clock()
    store = sessions(clock)
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginRefused, match="unknown user or wrong password/PIN"):
            store.login("op1", "0000")
        clock.now += 1
    with pytest.raises(LoginRefused, match="too many failed logins for 'op1'"):
        store.login("op1", "1234")  # the right PIN, but locked
    assert store.login("lead", "lead-password")  # other names are not locked
    clock.now += LOCKOUT_S
    assert store.login("op1", "1234").user.name == "op1"


@pytest.mark.parametrize(("name", "secret"), [(None, "1234"), ("op1", 1234), ("", "1234")])
def test_malformed_logins_are_refused(name: object, secret: object) -> None:
    with pytest.raises(LoginRefused):
        sessions(Clock()).login(name, secret)


def test_csrf_token_is_compared_exactly() -> None:
    session = sessions(Clock()).login("op1", "1234")
    assert session.csrf_ok(session.csrf_token)
    assert not session.csrf_ok(None)
    assert not session.csrf_ok(session.csrf_token + "x")
    assert not session.csrf_ok("")
