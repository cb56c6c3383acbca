"""MES commands: decoding, validation, authorisation, execution and the one reply per command."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.commands import CommandAudit, OrderSpec
from edge.config import MQTT_COMMANDS
from edge.mqtt.commands import (
    COMMANDS,
    CommandHandler,
    CommandPolicy,
    CommandRejected,
    Reply,
    decode_command,
)
from edge.mqtt.topics import Topics
from edge.secrets import Secret
from tests.unit.mqtt.fakes import FakeCommands

TOPICS = Topics("edge/T/L1")
POLICY = CommandPolicy(
    max_bytes=4096,
    allowed=frozenset(MQTT_COMMANDS),
    machine_ids=frozenset({"M1", "M2"}),
)
DOWNLOAD = {
    "order_id": "WO-1",
    "product": "P-7",
    "target_quantity": 500,
    "machine_ids": ["M1", "M2"],
    "user": "mes",
    "request_id": "r-17",
}


def js(doc: object) -> bytes:
    return json.dumps(doc).encode()


def rejected(name: str | None, payload: bytes, policy: CommandPolicy = POLICY) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        decode_command(name, payload, policy)
    return info.value


# --------------------------------------------------------------------------- decoding


def test_every_configurable_command_has_a_schema() -> None:
    assert set(COMMANDS) == set(MQTT_COMMANDS)


def test_json_and_msgpack_decode_to_the_same_request() -> None:
    from_json = decode_command("download_order", js(DOWNLOAD), POLICY)
    from_msgpack = decode_command("download_order", msgpack.packb(DOWNLOAD), POLICY)
    assert from_json.encoding == "json" and from_msgpack.encoding == "msgpack"
    assert (
        from_json.args
        == from_msgpack.args
        == {
            "order_id": "WO-1",
            "product": "P-7",
            "target_quantity": 500,
            "machine_ids": ("M1", "M2"),
        }
    )
    assert (from_json.user, from_json.request_id) == ("mes", "r-17")


def test_optional_arguments_and_defaults() -> None:
    request = decode_command(
        "set_stop_reason", js({"machine_id": "M1", "reason": "jam", "stop_id": 3}), POLICY
    )
    assert request.args == {"machine_id": "M1", "reason": "jam", "stop_id": 3}
    assert request.user == "mes"  # no user given: the audit says "mes"
    assert decode_command("rebirth", b"", POLICY).args == {}
    ideal = decode_command("download_order", js({**DOWNLOAD, "ideal_cycle_s": 2}), POLICY)
    assert ideal.args["ideal_cycle_s"] == 2.0


@pytest.mark.parametrize(
    ("name", "payload", "code", "fragment"),
    [
        ("launch_rockets", js({}), "unknown_command", "unknown command"),
        (None, js({}), "unknown_command", "unknown command"),
        ("start_order", b"\xc1\xc1 not anything", "malformed", "not valid msgpack"),
        ("start_order", b'{"order_id": ', "malformed", "not valid JSON"),
        ("start_order", js(["WO-1"]), "malformed", "must be a JSON object"),
        ("start_order", msgpack.packb({1: "x"}), "malformed", "field names must be strings"),
        ("start_order", js({}), "invalid_argument", "order_id: missing"),
        ("start_order", js({"order_id": 17}), "invalid_argument", "order_id: must be a string"),
        ("start_order", js({"order_id": "  "}), "invalid_argument", "must not be empty"),
        ("start_order", js({"order_id": "a\nb"}), "invalid_argument", "printable"),
        ("start_order", js({"order_id": "WO", "oder": 1}), "invalid_argument", "unknown field"),
        (
            "download_order",
            js({**DOWNLOAD, "target_quantity": 5.5}),
            "invalid_argument",
            "target_quantity: must be an integer",
        ),
        (
            "download_order",
            js({**DOWNLOAD, "target_quantity": True}),
            "invalid_argument",
            "target_quantity: must be an integer",
        ),
        (
            "download_order",
            js({**DOWNLOAD, "target_quantity": 0}),
            "invalid_argument",
            "target_quantity: must be >= 1",
        ),
        (
            "download_order",
            js({**DOWNLOAD, "machine_ids": []}),
            "invalid_argument",
            "non-empty array",
        ),
        (
            "download_order",
            js({**DOWNLOAD, "machine_ids": ["M1", "M1"]}),
            "invalid_argument",
            "twice",
        ),
        (
            "download_order",
            js({**DOWNLOAD, "machine_ids": ["M1", "M9"]}),
            "unknown_machine",
            "machine_ids[1]: no machine 'M9'",
        ),
        (
            "download_order",
            js({**DOWNLOAD, "ideal_cycle_s": -1}),
            "invalid_argument",
            "must be a number > 0",
        ),
        (
            "download_order",
            js({**DOWNLOAD, "auto_complete": "yes"}),
            "invalid_argument",
            "true or false",
        ),
        (
            "set_stop_reason",
            js({"machine_id": "X", "reason": "jam"}),
            "unknown_machine",
            "no machine 'X'",
        ),
        (
            "set_stop_reason",
            js({"machine_id": "M1", "reason": "jam", "stop_id": -1}),
            "invalid_argument",
            "stop_id: must be >= 0",
        ),
        ("start_order", js({"order_id": "WO", "user": 5}), "invalid_argument", "user"),
        ("start_order", js({"order_id": "WO", "request_id": [1]}), "invalid_argument", "request"),
    ],
)
def test_bad_commands_are_rejected_naming_what_is_wrong(
    name: str | None, payload: bytes, code: str, fragment: str
) -> None:
    error = rejected(name, payload)
    assert error.code == code
    assert fragment in error.reason


def test_oversized_payload_is_rejected_before_decoding() -> None:
    payload = js({**DOWNLOAD, "product": "x" * 5000})
    error = rejected("download_order", payload)
    assert error.code == "too_large"
    assert f"{len(payload)} bytes exceeds the limit of 4096" in error.reason


def test_commands_not_allowed_by_the_config_are_rejected() -> None:
    policy = CommandPolicy(
        max_bytes=4096, allowed=frozenset({"rebirth"}), machine_ids=frozenset({"M1"})
    )
    assert rejected("start_order", js({"order_id": "WO"}), policy).code == "not_allowed"


def test_token_and_user_allow_list_authorise() -> None:
    policy = CommandPolicy(
        max_bytes=4096,
        allowed=frozenset(MQTT_COMMANDS),
        machine_ids=frozenset({"M1"}),
        users=frozenset({"mes"}),
        token=Secret("s3cret"),
    )
    ok = {"order_id": "WO", "user": "mes", "token": "s3cret"}
    assert decode_command("start_order", js(ok), policy).args == {"order_id": "WO"}
    for bad in (
        {"order_id": "WO", "user": "mes"},
        {"order_id": "WO", "user": "mes", "token": "guess"},
        {"order_id": "WO", "user": "mes", "token": 1},
        {"order_id": "WO", "user": "intruder", "token": "s3cret"},
        {"order_id": "WO", "token": "s3cret"},
    ):
        error = rejected("start_order", js(bad), policy)
        assert error.code == "unauthorized"
        assert "s3cret" not in error.reason
    # Authorisation comes first: a stranger learns nothing about the arguments.
    assert rejected("start_order", js({"order_id": 5}), policy).code == "unauthorized"


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([*COMMANDS, "nope", ""]), payload=st.binary(max_size=600))
def test_random_bytes_never_crash_the_decoder(name: str, payload: bytes) -> None:
    try:
        request = decode_command(name, payload, POLICY)
    except CommandRejected as exc:
        assert exc.code and exc.reason
    else:
        assert request.name == name


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(list(COMMANDS)),
    doc=st.dictionaries(
        st.sampled_from(
            [
                "order_id",
                "product",
                "target_quantity",
                "machine_ids",
                "machine_id",
                "reason",
                "stop_id",
                "ts",
                "alarm_id",
                "user",
                "request_id",
                "auto_complete",
                "x",
            ]
        ),
        _json_values,
        max_size=6,
    ),
    as_msgpack=st.booleans(),
)
def test_random_well_formed_documents_are_accepted_or_rejected_cleanly(
    name: str, doc: dict[str, Any], as_msgpack: bool
) -> None:
    payload = msgpack.packb(doc) if as_msgpack else json.dumps(doc).encode()
    try:
        request = decode_command(name, payload, POLICY)
    except CommandRejected as exc:
        assert exc.code in {"invalid_argument", "unknown_machine", "too_large", "malformed"}
    else:
        for key, spec in COMMANDS[name].items():
            assert key in request.args or not spec.required


# --------------------------------------------------------------------------- handling


class Rebirths:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def handler(commands: FakeCommands | None, **kwargs: Any) -> CommandHandler:
    return CommandHandler(
        topics=TOPICS,
        policy=POLICY,
        commands=lambda: commands,
        rebirth=kwargs.pop("rebirth", Rebirths()),
        **kwargs,
    )


def body(reply: Reply) -> dict[str, Any]:
    if reply.payload[:1] == b"{":
        doc: dict[str, Any] = json.loads(reply.payload)
    else:
        doc = msgpack.unpackb(reply.payload)
    return doc


async def test_a_good_command_runs_once_and_replies_accepted_with_the_result() -> None:
    fake = FakeCommands()
    reply = await handler(fake).handle(
        "edge/T/L1/cmd/download_order", js(DOWNLOAD), correlation=b"\x01\x02"
    )
    assert reply.accepted and reply.code == "ok"
    assert reply.topic == "edge/T/L1/reply/download_order"
    assert reply.correlation == b"\x01\x02"
    doc = body(reply)
    assert doc["status"] == "accepted" and doc["request_id"] == "r-17"
    assert doc["result"]["order_id"] == "WO-1" and doc["result"]["status"] == "created"
    assert doc["result"]["machine_ids"] == ["M1", "M2"]
    ((name, (spec,), source, user),) = fake.calls
    assert (name, source, user) == ("download_order", "mqtt", "mes")
    assert spec == OrderSpec("WO-1", "P-7", 500, ("M1", "M2"))


async def test_the_reply_uses_the_requests_encoding_and_response_topic() -> None:
    fake = FakeCommands()
    h = handler(fake)
    await h.handle("edge/T/L1/cmd/download_order", js(DOWNLOAD))
    reply = await h.handle(
        "edge/T/L1/cmd/start_order",
        msgpack.packb({"order_id": "WO-1", "correlation_data": "c-9"}),
        response_topic="mes/replies/7",
    )
    assert reply.topic == "mes/replies/7"
    assert reply.payload[:1] != b"{"
    doc = body(reply)
    assert doc["status"] == "accepted" and doc["result"]["status"] == "running"
    assert doc["correlation_data"] == "c-9"
    # A 3.1.1 client names its response topic in the payload.
    reply = await h.handle(
        "edge/T/L1/cmd/hold_order",
        js({"order_id": "WO-1", "reason": "lunch", "response_topic": "mes/r/8"}),
    )
    assert reply.topic == "mes/r/8" and body(reply)["result"]["status"] == "held"


async def test_a_response_topic_may_not_point_at_the_edges_own_topics() -> None:
    reply = await handler(FakeCommands()).handle(
        "edge/T/L1/cmd/rebirth", b"{}", response_topic="edge/T/L1/events"
    )
    assert reply.topic == "edge/T/L1/reply/rebirth"


async def test_refusals_by_the_line_come_back_as_rejections_and_change_nothing() -> None:
    fake = FakeCommands()
    h = handler(fake)
    reply = await h.handle("edge/T/L1/cmd/start_order", js({"order_id": "WO-404"}))
    assert not reply.accepted and reply.code == "refused"
    assert "no order 'WO-404'" in body(reply)["reason"]
    await h.handle("edge/T/L1/cmd/download_order", js(DOWNLOAD))
    reply = await h.handle("edge/T/L1/cmd/resume_order", js({"order_id": "WO-1"}))
    assert reply.code == "refused" and "cannot become running" in reply.reason
    assert fake.orders["WO-1"].status == "created"
    assert (h.accepted, h.rejected) == (1, 2)


async def test_undecodable_payloads_get_a_json_rejection_on_the_default_reply_topic() -> None:
    reply = await handler(FakeCommands()).handle("edge/T/L1/cmd/start_order", b"\xc1garbage")
    assert reply.topic == "edge/T/L1/reply/start_order"
    assert not reply.accepted and reply.code == "malformed"
    reply = await handler(FakeCommands()).handle("edge/T/L1/cmd/a/b", b'{"x"')
    assert reply.topic == "edge/T/L1/reply/unknown" and reply.code == "unknown_command"
    assert json.loads(reply.payload)["status"] == "rejected"


async def test_retained_commands_are_not_executed_and_the_reply_keeps_the_request_id() -> None:
    fake = FakeCommands()
    reply = await handler(fake).handle("edge/T/L1/cmd/download_order", js(DOWNLOAD), retained=True)
    assert reply.code == "retained" and fake.calls == []
    assert body(reply)["request_id"] == "r-17"
    # Retained and not even valid: still "retained", and the request id is kept.
    reply = await handler(fake).handle(
        "edge/T/L1/cmd/start_order", js({"order_id": 7, "request_id": 99}), retained=True
    )
    assert (reply.code, body(reply)["request_id"]) == ("retained", 99)


async def test_a_rejection_keeps_a_usable_request_id_and_drops_a_bad_one() -> None:
    h = handler(FakeCommands())
    reply = await h.handle("edge/T/L1/cmd/start_order", js({"order_id": 7, "request_id": "r-5"}))
    assert (reply.code, body(reply)["request_id"]) == ("invalid_argument", "r-5")
    reply = await h.handle("edge/T/L1/cmd/start_order", js({"request_id": ["no"]}))
    assert reply.code == "invalid_argument" and "request_id" not in body(reply)


async def test_rejections_are_logged_first_then_counted_and_each_is_audited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audits: list[CommandAudit] = []
    h = handler(FakeCommands(), audit=audits.extend, reject_log_interval_s=0.2)
    caplog.set_level(logging.WARNING, logger="edge.mqtt.commands")
    for number in range(500):
        payload = b"\xc1" if number % 5 else js({"order_id": 7})
        await h.handle("edge/T/L1/cmd/start_order", payload)
    await h.handle("edge/T/L1/cmd/rebirth", b"{}")  # accepted, not seen by the runtime
    await h.handle("edge/T/L1/cmd/start_order", js({"order_id": "WO-404"}))  # the runtime's
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["mqtt command rejected"], "only the first one at once"
    deadline = asyncio.get_running_loop().time() + 10
    while len(caplog.records) < 2:
        assert asyncio.get_running_loop().time() < deadline, "no summary line"
        await asyncio.sleep(0.05)
    assert caplog.records[1].getMessage() == (
        "500 more mqtt commands rejected in the last 0.2 s (malformed 400, invalid_argument 99, "
        "refused 1)"
    )
    # One audit per command the runtime did not see: 500 rejections and the rebirth.
    assert len(audits) == 501
    assert audits[0] == CommandAudit(
        ts=audits[0].ts,
        source="mqtt",
        user="",
        command="start_order",
        arguments={},
        accepted=False,
        result="invalid_argument: order_id: must be a string, got an integer",
    )
    assert (audits[-1].command, audits[-1].accepted) == ("rebirth", True)
    h.close()


async def test_without_the_order_runtime_orders_are_unavailable_but_stop_reasons_work() -> None:
    reasons: list[tuple[str, str, int | None, float | None]] = []

    async def set_stop_reason(
        machine: str, reason: str, stop: int | None, ts: float | None
    ) -> None:
        reasons.append((machine, reason, stop, ts))

    h = handler(None, set_stop_reason=set_stop_reason)
    reply = await h.handle("edge/T/L1/cmd/start_order", js({"order_id": "WO"}))
    assert reply.code == "unavailable"
    reply = await h.handle(
        "edge/T/L1/cmd/set_stop_reason", js({"machine_id": "M2", "reason": "jam", "ts": 5})
    )
    assert reply.accepted and reasons == [("M2", "jam", None, 5.0)]


async def test_rebirth_and_every_order_command_reach_their_method() -> None:
    fake = FakeCommands()
    rebirths = Rebirths()
    h = handler(fake, rebirth=rebirths)
    steps = [
        ("download_order", DOWNLOAD),
        ("release_order", {"order_id": "WO-1"}),
        ("start_order", {"order_id": "WO-1"}),
        ("hold_order", {"order_id": "WO-1", "reason": ""}),
        ("resume_order", {"order_id": "WO-1"}),
        ("complete_order", {"order_id": "WO-1"}),
        ("set_stop_reason", {"machine_id": "M1", "reason": "jam", "stop_id": 2}),
        ("acknowledge_alarm", {"alarm_id": "A-1"}),
        ("rebirth", {}),
    ]
    for name, doc in steps:
        reply = await h.handle(f"edge/T/L1/cmd/{name}", js(doc))
        assert reply.accepted, (name, reply.reason)
    assert [c[0] for c in fake.calls] == [n for n, _ in steps if n != "rebirth"]
    assert fake.orders["WO-1"].status == "completed"
    assert fake.stop_reasons == [("M1", "jam", 2, None)]
    assert fake.alarms == ["A-1"] and rebirths.count == 1
    # abort after completion is refused by the line
    reply = await h.handle("edge/T/L1/cmd/abort_order", js({"order_id": "WO-1", "reason": "x"}))
    assert reply.code == "refused"


async def test_a_bug_in_a_command_is_a_rejection_not_a_crash() -> None:
    class Broken(FakeCommands):
        async def acknowledge_alarm(self, alarm_id: str, *, source: str, user: str) -> None:
            raise ZeroDivisionError

    reply = await handler(Broken()).handle("edge/T/L1/cmd/acknowledge_alarm", js({"alarm_id": "A"}))
    assert reply.code == "failed" and "ZeroDivisionError" in reply.reason


async def test_a_command_that_takes_too_long_times_out() -> None:
    import asyncio  # noqa: PLC0415

    class Slow(FakeCommands):
        async def acknowledge_alarm(self, alarm_id: str, *, source: str, user: str) -> None:
            await asyncio.sleep(10)

    reply = await handler(Slow(), timeout_s=0.05).handle(
        "edge/T/L1/cmd/acknowledge_alarm", js({"alarm_id": "A"})
    )
    assert reply.code == "timeout"


@settings(max_examples=150, deadline=None)
@given(
    suffix=st.sampled_from([*COMMANDS, "", "x/y", "download_order/extra"]),
    payload=st.binary(max_size=300),
    retained=st.booleans(),
)
async def test_the_handler_answers_any_message_exactly_once(
    suffix: str, payload: bytes, retained: bool
) -> None:
    fake = FakeCommands()
    reply = await handler(fake).handle(f"edge/T/L1/cmd/{suffix}", payload, retained=retained)
    doc = body(reply) if reply.payload[:1] == b"{" else msgpack.unpackb(reply.payload)
    assert doc["status"] in ("accepted", "rejected")
    assert reply.topic.startswith("edge/T/L1/reply/")
    if retained or not reply.accepted:
        assert fake.orders == {}
