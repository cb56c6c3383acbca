"""The [opcua] config section: defaults, users and roles, and every problem named by its key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.config import OPCUA_DEFAULT_METHOD_ROLES, LineConfig, load_config
from edge.errors import ConfigError

BASE = textwrap.dedent(
    """
    [line]
    site = "S"
    area = "a"
    id = "L1"

    [calendar]
    timezone = "UTC"
    [[calendar.shifts]]
    name = "All"
    start = "00:00"
    end = "00:00"

    [[machines]]
    id = "M1"
    ideal_cycle_s = 1.0
    """
)


def load(tmp_path: Path, opcua: str) -> LineConfig:
    path = tmp_path / "line.toml"
    path.write_text(BASE + textwrap.dedent(opcua), encoding="utf-8")
    return load_config(path)


def problems(tmp_path: Path, opcua: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, opcua)
    return [str(p) for p in info.value.problems]


def test_defaults_offer_every_secure_endpoint_and_anonymous_read(tmp_path: Path) -> None:
    opcua = load(tmp_path, "").opcua
    assert opcua.security_none is True
    assert opcua.security_policies == ("Basic256Sha256", "Aes256Sha256RsaPss")
    assert opcua.security_modes == ("Sign", "SignAndEncrypt")
    assert opcua.anonymous is True
    assert opcua.users == ()
    assert opcua.pki_dir is None
    # only supervisor and above complete an order
    assert opcua.roles_for("CompleteOrder") == {"supervisor", "admin"}
    assert "operator" in opcua.roles_for("StartOrder")
    assert opcua.roles_for("NoSuchMethod") == frozenset()


def test_users_roles_and_method_roles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPCUA_TEST_PW", "s3cret")
    opcua = load(
        tmp_path,
        """
        [opcua]
        security_none = false
        anonymous = false
        pki_dir = "pki"
        security_policies = ["Aes256Sha256RsaPss"]
        security_modes = ["SignAndEncrypt"]
        [[opcua.users]]
        name = "lead"
        password = { env = "OPCUA_TEST_PW" }
        roles = ["supervisor", "quality"]
        [opcua.method_roles]
        CompleteOrder = ["admin"]
        """,
    ).opcua
    assert opcua.security_policies == ("Aes256Sha256RsaPss",)
    assert opcua.security_modes == ("SignAndEncrypt",)
    assert opcua.pki_dir == tmp_path / "pki"
    (user,) = opcua.users
    assert user.name == "lead" and user.password.reveal() == "s3cret"
    assert user.roles == {"supervisor", "quality"}
    assert opcua.roles_for("CompleteOrder") == {"admin"}
    # an unlisted method keeps its default
    assert opcua.roles_for("StartOrder") == OPCUA_DEFAULT_METHOD_ROLES["StartOrder"]


def test_every_problem_is_named_by_its_key(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [opcua]
        security_policies = ["Basic256", "Basic256Sha256", "Basic256Sha256"]
        security_modes = []
        status_interval_s = 0
        [[opcua.users]]
        name = "a"
        password = ""
        roles = ["operater"]
        [[opcua.users]]
        name = "a"
        roles = []
        [opcua.method_roles]
        FinishOrder = ["admin"]
        """,
    )
    expected = [
        "opcua.security_policies[0]: must be one of 'Basic256Sha256', 'Aes256Sha256RsaPss', "
        "got 'Basic256'",
        "opcua.security_policies[2]: listed twice: 'Basic256Sha256'",
        "opcua.security_modes: must list at least one of Sign, SignAndEncrypt",
        "opcua.status_interval_s: must be between 0.05 and 60, got 0",
        "opcua.users[0].password: must not be empty",
        "opcua.users[0].roles[0]: unknown role 'operater' (did you mean 'operator'?); "
        "roles are: operator, supervisor, quality, maintenance, admin",
        "opcua.users[1].name: duplicate user 'a'",
        "opcua.users[1].password: missing required key (a secret)",
        "opcua.users[1].roles: must name at least one role",
    ]
    for line in expected:
        assert line in found, (line, found)
    assert any(p.startswith("opcua.method_roles.FinishOrder: unknown key") for p in found), found


def test_secure_only_keeps_the_default_policies(tmp_path: Path) -> None:
    opcua = load(tmp_path, "[opcua]\nsecurity_none = false\n").opcua
    assert opcua.security_policies == ("Basic256Sha256", "Aes256Sha256RsaPss")


def test_a_server_nobody_can_reach_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [opcua]
        security_none = false
        security_policies = []
        anonymous = false
        """,
    )
    assert (
        "opcua.security_policies: no endpoint left: list a policy or set security_none = true"
        in found
    )
    assert "opcua.anonymous: nobody could log in: add [[opcua.users]] or set anonymous = true" in (
        found
    )
