"""Commands from the MES on ``<prefix>/<site>/<line>/cmd/<command>``.

A command is a JSON object or a msgpack map: its arguments plus a few envelope
fields. ``download_order``::

    {"order_id": "WO-1", "product": "P-7", "target_quantity": 500,
     "machine_ids": ["FILLER01"], "user": "mes", "request_id": "r-17"}

Envelope fields (all optional unless the config demands them):

- ``user``: who asks, for the audit (``mqtt.command_users`` may restrict it);
- ``token``: required when ``mqtt.command_token`` is set;
- ``request_id``: echoed in the reply;
- ``response_topic`` / ``correlation_data``: for MQTT 3.1.1 clients; MQTT 5
  clients use the packet's Response Topic and Correlation Data properties.

Every command gets exactly one reply, on the response topic if one was given
(else ``<base>/reply/<command>``), in the request's encoding (JSON when the
request could not be decoded): ``{"v", "command", "status": "accepted" |
"rejected", "code", "reason", "result", "request_id", "ts"}``; ``request_id``
is echoed whenever the payload carried a usable one, also in a rejection. A
rejected command changes nothing and disturbs nothing else.

Retained commands are never executed (they would run again at every
reconnect): the edge subscribes with MQTT 5's *Retain As Published*, so a
retained command is recognised both when it is delivered at subscription time
and when it reaches the live subscription (under MQTT 3.1.1 only the former:
the broker clears the flag on live delivery).

Every command is audited: a :class:`~edge.commands.CommandAudit` on the event
bus for each one, from the order runtime for those that reach it, from here for
the others (rejected before they reach it, ``rebirth``, a stop reason without
the runtime). Rejections are logged as warnings rate-limited: the first one at
once, then one summary per :data:`REJECT_LOG_INTERVAL_S` with how many more
there were and their codes.

:func:`decode_command` is pure (bytes in, a validated :class:`CommandRequest`
or a :class:`CommandRejected` out); :class:`CommandHandler` runs a request
against :class:`~edge.commands.LineCommands` and builds the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from edge.commands import CommandAudit, LineCommands, OrderSpec
from edge.config import MQTT_COMMANDS, LineConfig
from edge.errors import ActorError, CommandError, EdgeError
from edge.mqtt.topics import Topics
from edge.secrets import Secret
from edge.wire import SCHEMA_VERSION, json_safe, to_plain

__all__ = [
    "COMMANDS",
    "CommandHandler",
    "CommandPolicy",
    "CommandRejected",
    "CommandRequest",
    "Reply",
    "decode_command",
]

log = logging.getLogger("edge.mqtt.commands")

SOURCE = "mqtt"
# Rejected commands: the first is logged at once, then one summary per interval.
REJECT_LOG_INTERVAL_S = 60.0
_TEXT_MAX = 256
_ID_MAX = 128

Encoding = Literal["json", "msgpack"]


class CommandRejected(CommandError):
    """A command that is not executed; ``code`` is a stable machine-readable tag.

    Codes: ``unknown_command``, ``not_allowed``, ``too_large``, ``malformed``,
    ``unauthorized``, ``invalid_argument``, ``unknown_machine``, ``retained``,
    ``refused`` (the line said no: unknown order, wrong state...),
    ``unavailable``, ``timeout``, ``failed``.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True, slots=True)
class _Field:
    kind: Literal["id", "text", "reason", "count", "number", "flag", "machine", "machines", "index"]
    required: bool = True


_ORDER = {"order_id": _Field("id")}
_ORDER_REASON = {"order_id": _Field("id"), "reason": _Field("reason")}

COMMANDS: dict[str, dict[str, _Field]] = {
    "download_order": {
        "order_id": _Field("id"),
        "product": _Field("text"),
        "target_quantity": _Field("count"),
        "machine_ids": _Field("machines"),
        "ideal_cycle_s": _Field("number", required=False),
        "operation_id": _Field("text", required=False),
        "auto_complete": _Field("flag", required=False),
        "produced_lot_id": _Field("text", required=False),
    },
    "release_order": _ORDER,
    "start_order": _ORDER,
    "hold_order": _ORDER_REASON,
    "resume_order": _ORDER,
    "complete_order": _ORDER,
    "abort_order": _ORDER_REASON,
    "set_stop_reason": {
        "machine_id": _Field("machine"),
        "reason": _Field("text"),
        "stop_id": _Field("index", required=False),
        "ts": _Field("number", required=False),
    },
    "acknowledge_alarm": {"alarm_id": _Field("id")},
    "rebirth": {},
}
assert set(COMMANDS) == set(MQTT_COMMANDS), "edge.config.MQTT_COMMANDS is the list of commands"

_ENVELOPE = ("user", "token", "request_id", "response_topic", "correlation_data")


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """What this edge accepts (from ``[mqtt]``) and which machines exist."""

    max_bytes: int
    allowed: frozenset[str]
    machine_ids: frozenset[str]
    users: frozenset[str] = frozenset()  # empty: any user
    token: Secret | None = None

    @classmethod
    def of(cls, config: LineConfig) -> CommandPolicy:
        mqtt = config.mqtt
        return cls(
            max_bytes=mqtt.command_max_bytes,
            allowed=frozenset(mqtt.allowed_commands),
            machine_ids=frozenset(m.id for m in config.machines),
            users=frozenset(mqtt.command_users),
            token=mqtt.command_token,
        )


@dataclass(frozen=True, slots=True)
class CommandRequest:
    name: str
    args: dict[str, Any]
    user: str
    encoding: Encoding
    request_id: str | int | None = None
    response_topic: str | None = None
    correlation_data: str | None = None


def sniff_encoding(payload: bytes) -> Encoding:
    """JSON when the payload starts like JSON text, else msgpack.

    The bytes ``{``, ``[`` and ``"`` start a msgpack document only as small
    integers, which are no command anyway.
    """
    return "json" if payload.lstrip()[:1] in (b"{", b"[", b'"', b"") else "msgpack"


def decode_command(name: str | None, payload: bytes, policy: CommandPolicy) -> CommandRequest:
    """Decode and validate one command; raises CommandRejected naming what is wrong."""
    if name is None or name not in COMMANDS:
        known = ", ".join(COMMANDS)
        raise CommandRejected("unknown_command", f"unknown command {name!r:.80}; known: {known}")
    if name not in policy.allowed:
        raise CommandRejected("not_allowed", f"command {name!r} is not allowed on this edge")
    if len(payload) > policy.max_bytes:
        raise CommandRejected(
            "too_large", f"payload of {len(payload)} bytes exceeds the limit of {policy.max_bytes}"
        )
    encoding = sniff_encoding(payload)
    doc = _decode(payload, encoding)
    user = _envelope_text(doc, "user", default="")
    _authorize(doc, user, policy)
    request_id = doc.get("request_id")
    if request_id is not None and not (
        (isinstance(request_id, str) and len(request_id) <= _ID_MAX)
        or (isinstance(request_id, int) and not isinstance(request_id, bool))
    ):
        raise CommandRejected(
            "invalid_argument", f"request_id: must be a string (<= {_ID_MAX}) or an integer"
        )
    response_topic = _envelope_text(doc, "response_topic", default=None)
    correlation = _envelope_text(doc, "correlation_data", default=None)
    schema = COMMANDS[name]
    for key in doc:
        if key not in schema and key not in _ENVELOPE:
            expected = ", ".join([*schema, *_ENVELOPE])
            raise CommandRejected(
                "invalid_argument", f"unknown field {key!r:.60} for {name}; expected: {expected}"
            )
    args = {}
    for key, spec in schema.items():
        if key not in doc or doc[key] is None:
            if spec.required:
                raise CommandRejected("invalid_argument", f"{key}: missing (required for {name})")
            continue
        args[key] = _check(key, spec, doc[key], policy)
    return CommandRequest(
        name=name,
        args=args,
        user=user or "mes",
        encoding=encoding,
        request_id=request_id,
        response_topic=response_topic,
        correlation_data=correlation,
    )


def peek_request_id(payload: bytes) -> str | int | None:
    """The ``request_id`` of a payload that was not accepted, if it carries a usable one."""
    try:
        doc = _decode(payload, sniff_encoding(payload))
    except CommandRejected:
        return None
    request_id = doc.get("request_id")
    if isinstance(request_id, str) and len(request_id) <= _ID_MAX:
        return request_id
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        return request_id
    return None


def _decode(payload: bytes, encoding: Encoding) -> dict[str, Any]:
    if not payload.strip():
        return {}
    try:
        if encoding == "json":
            doc = json.loads(payload.decode("utf-8"))
        else:
            doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # every decoder failure (and RecursionError) is the sender's
        what = "JSON" if encoding == "json" else "msgpack"
        raise CommandRejected(
            "malformed", f"payload is not valid {what}: {type(exc).__name__}: {exc}"[:300]
        ) from None
    if not isinstance(doc, dict):
        raise CommandRejected(
            "malformed", f"payload must be a JSON object or a msgpack map, got {_kind(doc)}"
        )
    for key in doc:
        if not isinstance(key, str):
            raise CommandRejected("malformed", f"field names must be strings, got {_kind(key)}")
    return doc


def _envelope_text(doc: Mapping[str, Any], key: str, *, default: str | None) -> Any:
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value or len(value) > _TEXT_MAX:
        raise CommandRejected(
            "invalid_argument", f"{key}: must be a non-empty string of at most {_TEXT_MAX}"
        )
    return value


def _authorize(doc: Mapping[str, Any], user: str, policy: CommandPolicy) -> None:
    if policy.token is not None:
        token = doc.get("token")
        expected = policy.token.reveal().encode()
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected):
            raise CommandRejected("unauthorized", "missing or wrong token")
    if policy.users and user not in policy.users:
        raise CommandRejected("unauthorized", f"user {user!r:.60} may not send commands")


def _check(key: str, spec: _Field, value: object, policy: CommandPolicy) -> Any:
    kind = spec.kind
    if kind in ("id", "text", "reason", "machine"):
        if not isinstance(value, str):
            raise CommandRejected(
                "invalid_argument", f"{key}: must be a string, got {_kind(value)}"
            )
        limit = _ID_MAX if kind in ("id", "machine") else _TEXT_MAX
        if len(value) > limit or any(ord(c) < 32 for c in value):
            raise CommandRejected(
                "invalid_argument", f"{key}: at most {limit} printable characters"
            )
        if kind != "reason" and not value.strip():
            raise CommandRejected("invalid_argument", f"{key}: must not be empty")
        if kind == "machine" and value not in policy.machine_ids:
            raise CommandRejected("unknown_machine", f"{key}: no machine {value!r} on this line")
        return value
    if kind in ("count", "index"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise CommandRejected(
                "invalid_argument", f"{key}: must be an integer, got {_kind(value)}"
            )
        low = 1 if kind == "count" else 0
        if not low <= value < 2**63:
            raise CommandRejected("invalid_argument", f"{key}: must be >= {low}, got {value}")
        return value
    if kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise CommandRejected(
                "invalid_argument", f"{key}: must be a number, got {_kind(value)}"
            )
        if not math.isfinite(value) or value <= 0:
            raise CommandRejected("invalid_argument", f"{key}: must be a number > 0, got {value}")
        return float(value)
    if kind == "flag":
        if not isinstance(value, bool):
            raise CommandRejected("invalid_argument", f"{key}: must be true or false")
        return value
    # machines: a non-empty list of known machine ids, each once
    if not isinstance(value, list) or not value:
        raise CommandRejected(
            "invalid_argument", f"{key}: must be a non-empty array of machine ids"
        )
    machines = [
        _check(f"{key}[{i}]", _Field("machine"), item, policy) for i, item in enumerate(value)
    ]
    if len(set(machines)) != len(machines):
        raise CommandRejected("invalid_argument", f"{key}: lists a machine twice")
    return tuple(machines)


def _kind(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
        bytes: "binary data",
    }
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- execution


@dataclass(frozen=True, slots=True)
class Reply:
    topic: str
    payload: bytes
    correlation: bytes | None
    accepted: bool
    code: str
    reason: str


SetStopReasonFallback = Callable[[str, str, int | None, float | None], Awaitable[None]]
AuditSink = Callable[[Sequence[CommandAudit]], None]


class _RejectLog:
    """Rejected-command warnings: the first at once, then a count per interval."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._quiet_until = -math.inf
        self._suppressed: Counter[str] = Counter()
        self._summary: asyncio.TimerHandle | None = None

    def rejected(self, name: str | None, user: str | None, code: str, reason: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._quiet_until:
            self._suppressed[code] += 1
            if self._summary is None:
                self._summary = loop.call_at(self._quiet_until, self._flush)
            return
        self._quiet_until = now + self.interval_s
        log.warning(
            "mqtt command rejected",
            extra={"command": f"{name!r:.80}", "user": user, "code": code, "reason": reason},
        )

    def _flush(self) -> None:
        self._summary = None
        suppressed, self._suppressed = self._suppressed, Counter()
        if not suppressed:
            return
        # The next rejection starts a new interval with a line of its own.
        self._quiet_until = -math.inf
        codes = ", ".join(f"{code} {count}" for code, count in suppressed.most_common())
        log.warning(
            "%d more mqtt commands rejected in the last %g s (%s)",
            suppressed.total(),
            self.interval_s,
            codes,
        )

    def close(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._flush()


class CommandHandler:
    """Decodes, authorises, executes and answers one command at a time."""

    def __init__(
        self,
        *,
        topics: Topics,
        policy: CommandPolicy,
        commands: Callable[[], LineCommands | None],
        rebirth: Callable[[], Awaitable[None]],
        set_stop_reason: SetStopReasonFallback | None = None,
        audit: AuditSink | None = None,
        timeout_s: float = 10.0,
        reject_log_interval_s: float = REJECT_LOG_INTERVAL_S,
    ) -> None:
        self.topics = topics
        self.policy = policy
        self._commands = commands
        self._rebirth = rebirth
        self._set_stop_reason = set_stop_reason
        self._audit = audit
        self.timeout_s = timeout_s
        self.accepted = 0
        self.rejected = 0
        self._reject_log = _RejectLog(reject_log_interval_s)

    def close(self) -> None:
        """Log the count of rejections not reported yet."""
        self._reject_log.close()

    async def handle(
        self,
        topic: str,
        payload: bytes,
        *,
        retained: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> Reply:
        """One reply for one command message, whatever it contains."""
        name = self.topics.command_name(topic)
        request: CommandRequest | None = None
        rejection: CommandRejected | None = None
        result: Any = None
        audited = False  # by the order runtime, which this request reaches
        try:
            if retained:
                with contextlib.suppress(CommandRejected):  # only for its envelope
                    request = decode_command(name, payload, self.policy)
                raise CommandRejected(
                    "retained", "retained commands are not executed (they would repeat)"
                )
            request = decode_command(name, payload, self.policy)
            audited = request.name != "rebirth" and self._commands() is not None
            result = await self._run(request)
        except CommandRejected as exc:
            rejection = exc
        except Exception as exc:  # a bug must not take the command loop down
            log.exception("mqtt command failed unexpectedly", extra={"command": name})
            rejection = CommandRejected("failed", f"internal error: {type(exc).__name__}")
        return self._reply(
            name,
            request,
            payload,
            response_topic=response_topic,
            correlation=correlation,
            rejection=rejection,
            result=result,
            audited=audited,
        )

    async def _run(self, request: CommandRequest) -> Any:
        try:
            return await asyncio.wait_for(self._execute(request), self.timeout_s)
        except TimeoutError:
            raise CommandRejected(
                "timeout", f"{request.name} did not finish within {self.timeout_s:g} s"
            ) from None
        except CommandRejected:
            raise
        except CommandError as exc:
            raise CommandRejected("refused", str(exc)) from None
        except (ActorError, EdgeError) as exc:
            raise CommandRejected("failed", str(exc)) from None

    async def _execute(self, request: CommandRequest) -> Any:
        name, args, user = request.name, request.args, request.user
        if name == "rebirth":
            await self._rebirth()
            return None
        commands = self._commands()
        if commands is None:
            if name == "set_stop_reason" and self._set_stop_reason is not None:
                await self._set_stop_reason(
                    args["machine_id"], args["reason"], args.get("stop_id"), args.get("ts")
                )
                return None
            raise CommandRejected(
                "unavailable", f"{name} needs the order runtime, which is not running on this edge"
            )
        who = {"source": SOURCE, "user": user}
        match name:
            case "download_order":
                spec = OrderSpec(
                    order_id=args["order_id"],
                    product=args["product"],
                    target_quantity=args["target_quantity"],
                    machine_ids=args["machine_ids"],
                    ideal_cycle_s=args.get("ideal_cycle_s"),
                    operation_id=args.get("operation_id", ""),
                    auto_complete=args.get("auto_complete", False),
                    produced_lot_id=args.get("produced_lot_id", ""),
                )
                return await commands.download_order(spec, **who)
            case "release_order":
                return await commands.release_order(args["order_id"], **who)
            case "start_order":
                return await commands.start_order(args["order_id"], **who)
            case "hold_order":
                return await commands.hold_order(args["order_id"], args["reason"], **who)
            case "resume_order":
                return await commands.resume_order(args["order_id"], **who)
            case "complete_order":
                return await commands.complete_order(args["order_id"], **who)
            case "abort_order":
                return await commands.abort_order(args["order_id"], args["reason"], **who)
            case "set_stop_reason":
                await commands.set_stop_reason(
                    args["machine_id"],
                    args["reason"],
                    stop_id=args.get("stop_id"),
                    ts=args.get("ts"),
                    **who,
                )
                return None
            case "acknowledge_alarm":
                await commands.acknowledge_alarm(args["alarm_id"], **who)
                return None
        raise CommandRejected("unknown_command", f"unknown command {name!r}")

    def _reply(
        self,
        name: str | None,
        request: CommandRequest | None,
        payload: bytes,
        *,
        response_topic: str | None,
        correlation: bytes | None,
        rejection: CommandRejected | None,
        result: Any = None,
        audited: bool = False,
    ) -> Reply:
        accepted = rejection is None
        code = "ok" if rejection is None else rejection.code
        reason = "" if rejection is None else rejection.reason
        doc: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "command": name,
            "status": "accepted" if accepted else "rejected",
            "code": code,
            "reason": reason,
            "result": to_plain(result) if result is not None else None,
            "ts": time.time(),
        }
        if request is not None:
            doc["request_id"] = request.request_id
            if request.correlation_data is not None:
                doc["correlation_data"] = request.correlation_data
        else:
            request_id = peek_request_id(payload)
            if request_id is not None:
                doc["request_id"] = request_id
        topic = response_topic or (request.response_topic if request else None)
        if topic is None or not self.topics.reply_topic_allowed(topic):
            topic = self.topics.reply(name if name and name in COMMANDS else "unknown")
        encoding = request.encoding if request is not None else "json"
        if request is None and sniff_encoding(payload) == "msgpack" and payload:
            encoding = "msgpack"
        body = (
            json.dumps(json_safe(doc), separators=(",", ":")).encode()
            if encoding == "json"
            else msgpack.packb(doc, use_bin_type=True)
        )
        user = request.user if request is not None else None
        if accepted:
            self.accepted += 1
            log.info("mqtt command accepted", extra={"command": name, "user": user})
        else:
            self.rejected += 1
            self._reject_log.rejected(name, user, code, reason)
        if self._audit is not None and not audited:
            self._audit(
                [
                    CommandAudit(
                        ts=doc["ts"],
                        source=SOURCE,
                        user=user or "",
                        command=name if name in COMMANDS else f"{name!r:.80}",
                        arguments=dict(request.args) if request is not None else {},
                        accepted=accepted,
                        result="ok" if accepted else f"{code}: {reason}",
                    )
                ]
            )
        return Reply(topic, body, correlation, accepted, code, reason)
