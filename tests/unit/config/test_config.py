"""Config loading: valid files become frozen objects; every bad input names its key."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from actors.oee.params import LossBucket, ReasonCategory, StateSource
from edge.config import DEFAULT_CONFIG, load_config
from edge.errors import ConfigError

MINIMAL = """
[line]
site = "BKK"
area = "smt"
id = "L1"

[calendar]
timezone = "Asia/Bangkok"

[[calendar.shifts]]
name = "Day"
start = "08:00"
end = "16:00"
breaks = ["12:00-12:30"]

[[machines]]
id = "SMT01"
ideal_cycle_s = 2.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "line.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    machine = config.machine("SMT01")
    assert machine.params.ideal_cycle_s == 2.0
    assert machine.params.micro_stop_s == 120.0  # OEE.md §4 default
    assert machine.params.effective_stop_after_s == 10.0  # 5 x ideal cycle, OEE.md §3
    assert machine.params.micro_stop_bucket is LossBucket.PERFORMANCE
    assert machine.params.state_source is None
    assert config.calendar.timezone == "Asia/Bangkok"
    (shift,) = config.calendar.shifts
    assert (shift.name, shift.start.hour, shift.end.hour) == ("Day", 8, 16)
    assert shift.breaks[0].start.hour == 12 and shift.breaks[0].end.minute == 30
    assert config.namespace_uri == "urn:BKK:smt:L1"
    assert not config.mqtt.enabled and config.opcua.enabled
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.line = config.line  # type: ignore[misc]


def test_full_machine_keys_are_parsed(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "ideal_cycle_s = 2.0",
        "ideal_cycle_s = 2\nmicro_stop_s = 60\nstop_after_s = 15\n"
        'micro_stop_bucket = "availability"\ncounter_bits = 16\nstate_source = "state"\n'
        'reasons = [{ code = 17, name = "jam at infeed" }, '
        '{ name = "cleaning", category = "planned" }]',
    )
    params = load_config(write(tmp_path, text)).machine("SMT01").params
    assert params.ideal_cycle_s == 2.0 and isinstance(params.ideal_cycle_s, float)
    assert params.micro_stop_s == 60.0 and params.effective_stop_after_s == 15.0
    assert params.micro_stop_bucket is LossBucket.AVAILABILITY
    assert params.counter_bits == 16 and params.state_source is StateSource.PACKML_STATE
    assert params.reasons[0].code == 17 and params.reasons[0].name == "jam at infeed"
    assert params.reasons[1].category is ReasonCategory.PLANNED


def test_machine_identification_keys(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "ideal_cycle_s = 2.0",
        'ideal_cycle_s = 2.0\nmanufacturer = "Acme"\nmodel = "X-1"\nserial_number = "X1-7"\n'
        'product_instance_uri = "urn:acme:X1-7"\nyear_of_construction = 2020',
    )
    machine = load_config(write(tmp_path, text)).machine("SMT01")
    assert (machine.manufacturer, machine.model, machine.serial_number) == ("Acme", "X-1", "X1-7")
    assert machine.product_instance_uri == "urn:acme:X1-7"
    assert machine.year_of_construction == 2020
    # none given: empty, no year
    bare = load_config(write(tmp_path, MINIMAL)).machine("SMT01")
    assert (bare.manufacturer, bare.serial_number, bare.year_of_construction) == ("", "", None)


def test_demo_config_is_valid() -> None:
    config = load_config(DEFAULT_CONFIG)
    assert config.simulator.enabled
    assert {m.id for m in config.machines} >= {"FILLER01", "PACKER01"}


BAD_CONFIGS = [
    pytest.param(
        MINIMAL.replace("ideal_cycle_s = 2.0", "ideal_cycle_s = -1"),
        "machines[0].ideal_cycle_s: must be > 0, got -1",
        id="negative-ideal-cycle",
    ),
    pytest.param(
        MINIMAL.replace("ideal_cycle_s = 2.0", ""),
        "machines[0].ideal_cycle_s: missing required key",
        id="missing-ideal-cycle",
    ),
    pytest.param(
        MINIMAL.replace('site = "BKK"\n', ""),
        "line.site: missing required key",
        id="missing-site",
    ),
    pytest.param(
        MINIMAL + '\n[[machines]]\nid = "SMT01"\nideal_cycle_s = 1.0\n',
        "machines[1].id: duplicate machine id 'SMT01' (also machines[0])",
        id="duplicate-machine-id",
    ),
    pytest.param(
        MINIMAL.replace("ideal_cycle_s = 2.0", 'ideal_cycle_s = "fast"'),
        "machines[0].ideal_cycle_s: must be a number, got a string 'fast'",
        id="wrong-type",
    ),
    pytest.param(
        MINIMAL.replace("ideal_cycle_s = 2.0", 'ideal_cycle_s = 2.0\nplc_map = "no-such-map"'),
        "machines[0].plc_map: unknown plc_map 'no-such-map'",
        id="unknown-plc-map",
    ),
    pytest.param(
        MINIMAL.replace("Asia/Bangkok", "Asia/Bangkokk"),
        "calendar.timezone",
        id="unknown-time-zone",
    ),
    pytest.param(
        MINIMAL.replace('start = "08:00"', 'start = "8am"'),
        "calendar.shifts[0].start: must be a local time \"HH:MM\" (00:00-23:59), got '8am'",
        id="malformed-shift-time",
    ),
    pytest.param(
        MINIMAL.replace('"12:00-12:30"', '"12:00"'),
        "calendar.shifts[0].breaks[0]: must be \"HH:MM-HH:MM\" (local time), got '12:00'",
        id="malformed-break",
    ),
    pytest.param(
        MINIMAL + '\n[[plcs]]\nid = "p1"\nprotocol = "modbus"\nhost = "10.0.0.5"\n'
        "poll_interval_s = -0.5\n",
        "plcs[0].poll_interval_s: must be > 0, got -0.5",
        id="negative-poll-interval",
    ),
    pytest.param(
        MINIMAL.replace("ideal_cycle_s = 2.0", 'ideal_cycle_s = 2.0\nplc = "nope"\nplc_map = "x"'),
        "machines[0].plc: unknown plc 'nope'",
        id="unknown-plc",
    ),
    pytest.param(
        MINIMAL.replace("ideal_cycle_s = 2.0", "ideal_cycle = 2.0"),
        "machines[0].ideal_cycle: unknown key (did you mean 'ideal_cycle_s'?)",
        id="misspelt-key",
    ),
    pytest.param(
        MINIMAL.replace('id = "SMT01"', 'id = "SMT.01"'),
        "machines[0].id: must be 1-64 characters",
        id="id-with-dot",
    ),
    pytest.param(
        MINIMAL + "\n[mqtt]\nenabled = true\nport = 70000\n",
        "mqtt.port: must be a TCP port 0..65535, got 70000",
        id="port-out-of-range",
    ),
    pytest.param(
        MINIMAL + '\n[opcua]\nendpoint = "http://0.0.0.0:4840"\n',
        'opcua.endpoint: must be an OPC UA endpoint "opc.tcp://host:port/path"',
        id="bad-opcua-endpoint",
    ),
    pytest.param(
        MINIMAL.replace(
            "ideal_cycle_s = 2.0", 'ideal_cycle_s = 2.0\nmicro_stop_bucket = "quality"'
        ),
        "machines[0].micro_stop_bucket: must be one of 'performance', 'availability', "
        "got 'quality'",
        id="bad-loss-bucket",
    ),
    pytest.param(
        MINIMAL.replace("[[calendar.shifts]]", "shifts = 3\n[[calendar.nope]]"),
        "calendar.shifts: must be an array of tables",
        id="shifts-not-a-table-array",
    ),
    pytest.param(
        "[line\nsite=1",
        "invalid TOML",
        id="invalid-toml",
    ),
    pytest.param(
        MINIMAL.replace("ideal_cycle_s = 2.0", "ideal_cycle_s = 2.0\nyear_of_construction = 20"),
        "machines[0].year_of_construction: must be between 1900 and 2200, got 20",
        id="bad-year-of-construction",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    problems = problems_of(tmp_path, text)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("ideal_cycle_s = 2.0", "ideal_cycle_s = 0\nmicro_stop_s = -5").replace(
        'area = "smt"', 'area = ""'
    )
    problems = problems_of(tmp_path, text)
    paths = {p.split(":")[0] for p in problems}
    assert {"machines[0].ideal_cycle_s", "machines[0].micro_stop_s", "line.area"} <= paths


def test_secret_from_environment_never_appears_in_errors_or_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_TEST_MQTT_PW", "hunter2-very-secret")
    text = MINIMAL + '\n[mqtt]\nenabled = true\npassword = { env = "EDGE_TEST_MQTT_PW" }\n'
    config = load_config(write(tmp_path, text))
    assert config.mqtt.password is not None
    assert config.mqtt.password.reveal() == "hunter2-very-secret"
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.mqtt.password)

    # A secret of the wrong shape: the error names the key, never the value.
    bad = MINIMAL + "\n[mqtt]\nenabled = true\npassword = 987654321\nport = -1\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad))
    message = str(info.value)
    assert "mqtt.password" in message and "mqtt.port" in message
    assert "987654321" not in message


def test_missing_secret_source_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_TEST_UNSET", raising=False)
    text = (
        MINIMAL + '\n[qmib]\nenabled = true\nbase_url = "http://127.0.0.1:9/"\n'
        'token = { env = "EDGE_TEST_UNSET" }\n'
    )
    problems = problems_of(tmp_path, text)
    assert "qmib.token: environment variable EDGE_TEST_UNSET is not set" in problems


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("tok-123\nignored\n", encoding="utf-8")
    text = (
        MINIMAL + '\n[qmib]\nenabled = true\nbase_url = "http://127.0.0.1:9/"\n'
        'token = { file = "token.txt" }\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.qmib.token is not None and config.qmib.token.reveal() == "tok-123"


def test_relative_state_dir_resolves_against_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + '\n[storage]\nstate_dir = "state"\n'))
    assert config.storage.state_dir == tmp_path.resolve() / "state"


def test_systemd_state_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-L1")
    assert load_config(write(tmp_path, MINIMAL)).storage.state_dir == Path("/var/lib/edge-L1")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "missing.toml")


def test_example_config_is_valid_with_its_secrets_provided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example reads its secrets as systemd credentials (LoadCredential=).
    for name, value in (("aoi-password", "a"), ("mqtt-password", "b"), ("qmib-token", "c")):
        (tmp_path / name).write_text(value + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = load_config(DEFAULT_CONFIG.parent / "example-line.toml")
    assert [p.protocol for p in config.plcs] == ["modbus", "opcua"]
    assert config.mqtt.password is not None and config.mqtt.password.reveal() == "b"


def test_plc_map_problems_are_reported_under_the_machine(tmp_path: Path) -> None:
    maps = tmp_path / "plc_maps"
    maps.mkdir()
    (maps / "broken.toml").write_text(
        'protocol = "modbus"\n[[signals]]\nname = "running"\narea = "holding_register"\n'
        'address = 0\ntype = "bool"\nbit = 16\n',
        encoding="utf-8",
    )
    text = MINIMAL.replace("ideal_cycle_s = 2.0", 'ideal_cycle_s = 2.0\nplc_map = "broken"')
    problems = problems_of(tmp_path, text)
    assert any(p.startswith("machines[0].plc_map (") and "signals[0].bit" in p for p in problems), (
        problems
    )


def test_plc_map_protocol_and_counter_width_must_agree(tmp_path: Path) -> None:
    plc = '\n[[plcs]]\nid = "p1"\nprotocol = "opcua"\nendpoint = "opc.tcp://127.0.0.1:4840"\n'
    text = MINIMAL.replace(
        "ideal_cycle_s = 2.0",
        'ideal_cycle_s = 2.0\nplc = "p1"\nplc_map = "packml-modbus"\ncounter_bits = 32',
    )
    problems = problems_of(tmp_path, text + plc)
    assert any("is for modbus but plc 'p1' speaks opcua" in p for p in problems), problems
    assert any(
        p.startswith("machines[0].counter_bits: is 32 but plc_map 'packml-modbus' maps 16-bit")
        for p in problems
    ), problems


def test_counter_width_defaults_to_the_plc_maps(tmp_path: Path) -> None:
    text = MINIMAL.replace("ideal_cycle_s = 2.0", 'ideal_cycle_s = 2.0\nplc_map = "packml-modbus"')
    assert load_config(write(tmp_path, text)).machine("SMT01").params.counter_bits == 16


def test_an_invalid_plc_is_still_known_to_the_machines_that_use_it(tmp_path: Path) -> None:
    plc = '\n[[plcs]]\nid = "sim"\nprotocol = "modbus"\nhost = "127.0.0.1"\npoll_interval_s = "x"\n'
    machines = "".join(
        f'\n[[machines]]\nid = "M{i}"\nideal_cycle_s = 1.0\nplc = "sim"\n'
        'plc_map = "generic-modbus"\n'
        for i in range(4)
    )
    text = MINIMAL.replace('[[machines]]\nid = "SMT01"\nideal_cycle_s = 2.0\n', "")
    assert problems_of(tmp_path, text + plc + machines) == [
        "plcs[0].poll_interval_s: must be a number, got a string 'x'"
    ]
    # A plc whose required key is missing is known by its id too.
    no_host = plc.replace('host = "127.0.0.1"\n', "").replace('"x"', "1.0")
    assert problems_of(tmp_path, text + no_host + machines) == [
        "plcs[0].host: missing required key (expected a string)"
    ]


def test_the_web_section_and_user_pins_are_checked(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """
        [web]
        port = 70000
        tls_cert_file = "cert.pem"
        session_idle_s = 600
        session_max_s = 60
        max_body_bytes = 10
        colour = "green"

        [[opcua.users]]
        name = "op"
        password = "pw"
        pin = "12a4"
        roles = ["operator"]
        """
    )
    problems = problems_of(tmp_path, text)
    for expected in (
        "web.port: must be a TCP port 0..65535, got 70000",
        "web.tls_cert_file: no such file",
        "web.tls_key_file: tls_cert_file and tls_key_file go together",
        "web.session_max_s: must be >= session_idle_s",
        "web.max_body_bytes: must be between 1024 and 1.67772e+07, got 10",
        "web.colour: unknown key",
        "opcua.users[0].pin: must be 4 to 12 digits",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)
    user = '[[opcua.users]]\nname = "op"\npassword = "pw"\npin = "0042"\nroles = ["operator"]\n'
    ok = MINIMAL + "\n" + user
    config = load_config(write(tmp_path, ok))
    assert config.web.port == 9713 and config.web.enabled
    [user] = config.opcua.users
    assert user.pin is not None and user.pin.reveal() == "0042"
