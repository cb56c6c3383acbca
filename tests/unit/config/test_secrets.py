"""Secrets: read only for enabled sections, from env, files or systemd credentials, never shown."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import DEFAULT_CONFIG, load_config
from edge.errors import ConfigError
from edge.secrets import UnreadSecretError

EXAMPLE = DEFAULT_CONFIG.parent / "example-line.toml"
LINE = """
[line]
site = "BKK"
area = "smt"
id = "L1"

[calendar]
timezone = "UTC"

[[machines]]
id = "M1"
ideal_cycle_s = 1.0
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "line.toml"
    path.write_text(LINE + textwrap.dedent(extra), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_a_disabled_section_checks_the_shape_of_its_secrets_but_reads_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        """
        [qmib]
        enabled = false
        token = { env = "EDGE_TEST_UNSET" }
        [mqtt]
        password = { file = "no-such-file" }
        """,
    )
    config = load_config(path)
    assert config.qmib.token is not None and not config.qmib.token.is_read
    with pytest.raises(UnreadSecretError, match="env:EDGE_TEST_UNSET was not read"):
        config.qmib.token.reveal()
    # A malformed reference is still an error, enabled or not.
    bad = write(tmp_path, '[qmib]\ntoken = { vault = "x" }\n')
    assert problems(bad) == [
        'qmib.token: expected a string, { env = "NAME" }, { file = "PATH" } or '
        '{ credential = "NAME" }'
    ]


def test_a_credential_is_read_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret-pw\nsecond line ignored\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write(tmp_path, '[mqtt]\nenabled = true\npassword = { credential = "mqtt-password" }\n')
    password = load_config(path).mqtt.password
    assert password is not None and password.reveal() == "s3cret-pw"
    assert password.origin == "credential:mqtt-password"
    assert "s3cret" not in repr(password) and str(password) == "***"
    missing = write(tmp_path, '[mqtt]\nenabled = true\npassword = { credential = "other" }\n')
    assert problems(missing) == [
        f"mqtt.password: credential other is not in $CREDENTIALS_DIRECTORY ({creds}): "
        "add LoadCredential=other:<file> to the unit"
    ]
    traversal = write(tmp_path, '[mqtt]\npassword = { credential = "../mqtt-password" }\n')
    assert problems(traversal) == [
        "mqtt.password: credential name must be a file name, got '../mqtt-password'"
    ]


def test_outside_systemd_run_needs_the_credential_and_check_config_defers_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[mqtt]\nenabled = true\npassword = { credential = "mqtt-password" }\n')
    assert problems(path) == [
        "mqtt.password: credential mqtt-password needs $CREDENTIALS_DIRECTORY, which systemd "
        "sets for a unit with LoadCredential=mqtt-password:<file>; it is not set"
    ]
    assert load_config(path, defer_credentials=True).unread_secrets == (
        "mqtt.password (credential mqtt-password)",
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok (1 machines, 0 plcs)" in out
    assert "not read, no $CREDENTIALS_DIRECTORY" in out and "mqtt.password" in out


def test_example_config_passes_check_config_as_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("EDGE_AOI_PASSWORD", "EDGE_MQTT_PASSWORD", "EDGE_QMIB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "plcs[1].password (credential aoi-password)" in out
    assert "mqtt.password (credential mqtt-password)" in out
    assert "qmib" not in out  # disabled: its token is not read, not even listed
    # Under systemd the credentials are there, and one that is missing fails the check.
    (tmp_path / "aoi-password").write_text("a\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert main(["check-config", str(EXAMPLE)]) == 78
    err = capsys.readouterr().err
    assert "mqtt.password: credential mqtt-password is not in $CREDENTIALS_DIRECTORY" in err
    assert "aoi-password" not in err and "qmib" not in err
