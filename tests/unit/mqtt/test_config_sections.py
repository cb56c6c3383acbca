"""The [mqtt], [qmib] and [outbox] config sections: defaults and every problem by key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.config import MQTT_COMMANDS, LineConfig, load_config
from edge.errors import ConfigError

BASE = """
[line]
site = "BKK"
area = "smt"
id = "L1"

[calendar]
timezone = "UTC"

[[calendar.shifts]]
name = "Day"
start = "08:00"
end = "16:00"

[[machines]]
id = "SMT01"
ideal_cycle_s = 2.0
"""


def load(tmp_path: Path, extra: str) -> LineConfig:
    path = tmp_path / "line.toml"
    path.write_text(BASE + textwrap.dedent(extra), encoding="utf-8")
    return load_config(path)


def problems(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    return [str(p) for p in info.value.problems]


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, '[storage]\nstate_dir = "st"\n')
    mqtt, qmib, outbox = config.mqtt, config.qmib, config.outbox
    assert (mqtt.protocol, mqtt.batch_max_events, mqtt.inflight_batches) == ("auto", 500, 4)
    assert mqtt.allowed_commands == MQTT_COMMANDS and mqtt.command_users == ()
    assert (mqtt.kpi_interval_s, mqtt.command_max_bytes) == (10.0, 65536)
    assert outbox.path == tmp_path / "st" / "outbox.db"
    assert (outbox.synchronous, outbox.policy) == ("FULL", "drop-oldest")
    assert outbox.max_bytes == 1 << 30
    assert qmib.batch_records_path == "/batch-records"
    assert qmib.deliver_events == ("BatchRecordCompleted",)
    assert (qmib.retries, qmib.verify_tls) == (3, True)


def test_every_key_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TEST_TOKEN", "t0k")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = load(
        tmp_path,
        """
        [mqtt]
        enabled = true
        tls = true
        tls_ca_file = "ca.pem"
        protocol = "3.1.1"
        backoff_initial_s = 0.5
        backoff_max_s = 5
        publish_timeout_s = 2
        batch_max_bytes = 65536
        inflight_batches = 8
        kpi_interval_s = 0
        commands_enabled = false
        command_max_bytes = 1024
        command_users = ["mes", "planner"]
        command_token = { env = "EDGE_TEST_TOKEN" }
        allowed_commands = ["rebirth", "start_order"]

        [qmib]
        enabled = true
        base_url = "https://qmib.example/api"
        username = "edge"
        password = "pw"
        retries = 5
        templates_path = "/v2/templates/{template_id}"
        deliver_events = ["BatchRecordCompleted", "LotScanned"]

        [outbox]
        path = "/tmp/elsewhere/o.db"
        synchronous = "NORMAL"
        max_bytes = 10000
        policy = "reject-new"
        max_pending_events = 5000
        report_interval_s = 1
        """,
    )
    mqtt = config.mqtt
    assert mqtt.tls_ca_file == ca and mqtt.protocol == "3.1.1"
    assert (mqtt.backoff_initial_s, mqtt.backoff_max_s, mqtt.publish_timeout_s) == (0.5, 5.0, 2.0)
    assert (mqtt.inflight_batches, mqtt.kpi_interval_s, mqtt.commands_enabled) == (8, 0.0, False)
    assert mqtt.command_users == ("mes", "planner")
    assert mqtt.command_token is not None and mqtt.command_token.reveal() == "t0k"
    assert mqtt.allowed_commands == ("rebirth", "start_order")
    qmib = config.qmib
    assert qmib.username == "edge" and qmib.password is not None
    assert qmib.templates_path == "/v2/templates/{template_id}"
    assert qmib.deliver_events == ("BatchRecordCompleted", "LotScanned")
    outbox = config.outbox
    assert outbox.path == Path("/tmp/elsewhere/o.db")
    assert (outbox.synchronous, outbox.max_bytes, outbox.policy) == ("NORMAL", 10000, "reject-new")
    assert (outbox.max_pending_events, outbox.report_interval_s) == (5000, 1.0)


def test_problems_name_their_keys(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [mqtt]
        protocol = "4"
        backoff_initial_s = 10
        backoff_max_s = 1
        tls_cert_file = "missing.pem"
        inflight_batches = 0
        allowed_commands = ["start_order", "self_destruct"]
        command_users = ["mes", 7]
        client_id = "a/b"

        [qmib]
        token = "t"
        username = "u"
        templates_path = "/templates"
        alarm_ack_path = "alarms/{alarm_id}"
        deliver_events = ["Batch Record"]

        [outbox]
        policy = "drop-newest"
        max_bytes = 10
        synchronous = "OFF"
        colour = "red"
        """,
    )
    expected = [
        "mqtt.protocol: must be one of 'auto', '5', '3.1.1', got '4'",
        "mqtt.backoff_max_s: must be >= backoff_initial_s",
        "mqtt.tls_cert_file: no such file:",
        "mqtt.tls_key_file: tls_cert_file and tls_key_file go together",
        "mqtt.tls: must be true when TLS files are given",
        "mqtt.inflight_batches: must be between 1 and 64, got 0",
        "mqtt.allowed_commands[1]: must be one of",
        "mqtt.command_users[1]: must be a string, got an integer 7",
        "mqtt.client_id: must be letters, digits",
        "qmib.token: give either token (bearer) or username + password (basic), not both",
        "qmib.password: username and password go together (basic auth)",
        "qmib.templates_path: must contain exactly {template_id}",
        "qmib.alarm_ack_path: must be a URL path starting with '/'",
        "qmib.deliver_events[0]: must be an event type name",
        "outbox.policy: must be one of 'drop-oldest', 'reject-new', got 'drop-newest'",
        "outbox.max_bytes: must be between 4096 and",
        "outbox.synchronous: must be one of 'FULL', 'NORMAL', got 'OFF'",
        "outbox.colour: unknown key",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in found), (fragment, found)
    assert len(found) == len(expected), found
