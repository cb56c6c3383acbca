"""The line display's JSON API, version 1 (``/api/v1``), documented in docs/line-display.md.

Reading needs no login. Writing needs a session (``POST /api/v1/session``), the
session's CSRF token in ``X-CSRF-Token``, a JSON body, and a role that may give
the command: the same rule as the OPC UA methods (edge.serve.access). Every write goes
to :class:`~edge.commands.LineCommands` with ``source="web"`` and the session's
user, so it is checked, applied and audited (a ``CommandAudit`` on the bus, from
there to the MES) exactly as the same command over OPC UA or MQTT; a write refused
before it reaches the line (no session, a role that may not, a reason not in the
machine's list) is audited here, once.

Replies to writes: ``{"status": "accepted", "result": ...}`` (200) or
``{"status": "rejected", "code": ..., "reason": ...}`` with 400 (malformed
input), 401 (no session), 403 (role, CSRF, origin), 404 (unknown machine),
409 (the line said no: unknown order, wrong state...), 503 (no order runtime),
504 (no answer in time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edge.commands import CommandAudit, LineCommands, OrderInfo
from edge.context import LineContext
from edge.errors import CommandError, EdgeError
from edge.serve.access import NOBODY, AccessPolicy, Principal
from edge.serve.web.auth import LoginRefused, Session, Sessions
from edge.serve.web.board import Board

__all__ = ["SESSION_COOKIE", "LineApi"]

log = logging.getLogger("edge.web.api")

SOURCE = "web"
SESSION_COOKIE = "edge_session"
CSRF_HEADER = "X-CSRF-Token"
COMMAND_TIMEOUT_S = 10.0
MAX_TEXT = 256

# Web command -> the role table's name for it (the OPC UA method's, edge.serve.access).
ROLE_KEYS = {
    "set_stop_reason": "SetStopReason",
    "start_order": "StartOrder",
    "hold_order": "HoldOrder",
    "resume_order": "ResumeOrder",
    "complete_order": "CompleteOrder",
    "acknowledge_alarm": "AcknowledgeAlarm",
}
_ORDER_ACTIONS = {
    "start": "start_order",
    "hold": "hold_order",
    "resume": "resume_order",
    "complete": "complete_order",
}


class _Rejected(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def _rejection(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"status": "rejected", "code": code, "reason": reason}, status=status)


class LineApi:
    """The routes of ``/api/v1``; ``tls`` marks the session cookie Secure."""

    def __init__(
        self,
        service: LineContext,
        board: Board,
        policy: AccessPolicy,
        sessions: Sessions,
        *,
        tls: bool,
    ) -> None:
        self._service = service
        self._board = board
        self._policy = policy
        self._sessions = sessions
        self._tls = tls
        self.accepted = 0
        self.refused = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/line", self.line)
        app.router.add_get("/api/v1/machines/{machine_id}", self.machine)
        app.router.add_get("/api/v1/session", self.session)
        app.router.add_post("/api/v1/session", self.login)
        app.router.add_delete("/api/v1/session", self.logout)
        app.router.add_post("/api/v1/machines/{machine_id}/stop-reason", self.stop_reason)
        app.router.add_post("/api/v1/orders/{order_id}/{action}", self.order_action)
        app.router.add_post("/api/v1/alarms/acknowledge", self.acknowledge_alarm)

    # -- reading ----------------------------------------------------------------------

    async def line(self, request: web.Request) -> web.Response:
        now = time.time()
        await self._board.refresh_all(now)
        return web.json_response(self._board.line_document(now))

    async def machine(self, request: web.Request) -> web.Response:
        machine_id = request.match_info["machine_id"]
        if machine_id not in self._board.machines:
            raise web.HTTPNotFound(text=f"no machine {machine_id!r} on this line\n")
        now = time.time()
        await self._board.refresh_orders(now)
        await self._board.refresh_alarms()
        return web.json_response(await self._board.machine_document(machine_id, now))

    # -- sessions ---------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        return self._sessions.get(request.cookies.get(SESSION_COOKIE))

    def _session_document(self, session: Session | None) -> dict[str, Any]:
        if session is None:
            return {"user": None, "roles": [], "csrf_token": None, "expires_in_s": None}
        return {
            "user": session.user.name,
            "roles": sorted(session.user.roles),
            "csrf_token": session.csrf_token,
            "expires_in_s": self._sessions.seconds_left(session),
            "may": {
                command: self._policy.refusal(key, session.user) is None
                for command, key in ROLE_KEYS.items()
            },
        }

    async def session(self, request: web.Request) -> web.Response:
        return web.json_response(self._session_document(self._session(request)))

    async def login(self, request: web.Request) -> web.Response:
        try:
            self._same_origin(request)
            body = await self._json(request)
            session = self._sessions.login(body.get("user"), body.get("secret"))
        except _Rejected as rejected:
            return _rejection(rejected.status, rejected.code, rejected.reason)
        except LoginRefused as exc:
            return _rejection(401, "unauthorized", str(exc))
        response = web.json_response(self._session_document(session))
        response.set_cookie(
            SESSION_COOKIE,
            session.token,
            httponly=True,
            samesite="Strict",
            secure=self._tls,
            path="/",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is not None and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
            return _rejection(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
        self._sessions.logout(request.cookies.get(SESSION_COOKIE))
        response = web.json_response(self._session_document(None))
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # -- writing ----------------------------------------------------------------------

    async def stop_reason(self, request: web.Request) -> web.Response:
        machine_id = request.match_info["machine_id"]

        async def run(body: dict[str, Any], commands: LineCommands, who: str) -> object:
            machine = self._board.machines.get(machine_id)
            if machine is None:
                raise _Rejected(404, "unknown_machine", f"no machine {machine_id!r} on this line")
            reason = _text(body, "reason")
            allowed = [r.name for r in machine.params.reasons]
            if reason not in allowed:
                listed = ", ".join(allowed) or "none configured"
                raise _Rejected(
                    400,
                    "invalid_argument",
                    f"reason {reason!r} is not one of {machine_id}'s reasons ({listed})",
                )
            stop_id = body.get("stop_id")
            if stop_id is not None and (
                isinstance(stop_id, bool) or not isinstance(stop_id, int) or stop_id < 1
            ):
                raise _Rejected(
                    400, "invalid_argument", f"stop_id must be a stop's id, got {stop_id!r}"
                )
            await commands.set_stop_reason(
                machine_id, reason, stop_id=stop_id, source=SOURCE, user=who
            )
            return {"machine_id": machine_id, "reason": reason, "stop_id": stop_id}

        return await self._write(request, "set_stop_reason", {"machine_id": machine_id}, run)

    async def order_action(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        action = request.match_info["action"]
        command = _ORDER_ACTIONS.get(action)
        if command is None:
            known = ", ".join(_ORDER_ACTIONS)
            return _rejection(404, "unknown_command", f"no order action {action!r} ({known})")

        async def run(body: dict[str, Any], commands: LineCommands, who: str) -> object:
            if command == "start_order":
                info = await commands.start_order(order_id, source=SOURCE, user=who)
            elif command == "hold_order":
                reason = _text(body, "reason")
                info = await commands.hold_order(order_id, reason, source=SOURCE, user=who)
            elif command == "resume_order":
                info = await commands.resume_order(order_id, source=SOURCE, user=who)
            else:
                info = await commands.complete_order(order_id, source=SOURCE, user=who)
            return _order_result(info)

        return await self._write(request, command, {"order_id": order_id}, run)

    async def acknowledge_alarm(self, request: web.Request) -> web.Response:
        async def run(body: dict[str, Any], commands: LineCommands, who: str) -> object:
            alarm_id = _text(body, "alarm_id")
            await commands.acknowledge_alarm(alarm_id, source=SOURCE, user=who)
            return {"alarm_id": alarm_id}

        return await self._write(request, "acknowledge_alarm", {}, run)

    async def _write(
        self,
        request: web.Request,
        command: str,
        arguments: dict[str, object],
        run: Callable[[dict[str, Any], LineCommands, str], Awaitable[object]],
    ) -> web.Response:
        """Origin, body, session, CSRF, role; then the command. Audited once either way."""
        who: Principal = NOBODY
        body: dict[str, Any] = {}
        reached_line = False
        session = self._session(request)
        if session is not None:
            who = session.user
        try:
            self._same_origin(request)
            body = await self._json(request)
            arguments = arguments | {k: v for k, v in body.items() if isinstance(k, str)}
            if session is None:
                raise _Rejected(401, "unauthorized", f"{command}: log in first (no session)")
            if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
                raise _Rejected(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
            refusal = self._policy.refusal(ROLE_KEYS[command], who)
            if refusal is not None:
                raise _Rejected(403, "forbidden", refusal)
            commands = self._service.commands
            if commands is None:
                raise _Rejected(503, "unavailable", "the line's order runtime is not running")
            reached_line = True
            try:
                result = await asyncio.wait_for(run(body, commands, who.name), COMMAND_TIMEOUT_S)
            except _Rejected:
                reached_line = False  # refused by the web's own check, before the line
                raise
        except _Rejected as rejected:
            self.refused += 1
            if not reached_line:
                self._audit(command, who, arguments, rejected.reason)
            log.info("line display command refused: %s", rejected.reason, extra={"user": who.name})
            return _rejection(rejected.status, rejected.code, rejected.reason)
        except CommandError as exc:
            self.refused += 1
            return _rejection(409, "refused", f"{command}: {exc}")
        except TimeoutError:
            self.refused += 1
            return _rejection(
                504, "timeout", f"{command}: no answer within {COMMAND_TIMEOUT_S:g} s"
            )
        except EdgeError as exc:
            self.refused += 1
            return _rejection(503, "unavailable", f"{command}: {exc}")
        self.accepted += 1
        return web.json_response({"status": "accepted", "command": command, "result": result})

    def _audit(
        self, command: str, who: Principal, arguments: dict[str, object], result: str
    ) -> None:
        audit = CommandAudit(
            ts=time.time(),
            source=SOURCE,
            user=who.name,
            command=command,
            arguments=arguments,
            accepted=False,
            result=result,
        )
        self._service.bus.publish([audit])

    @staticmethod
    def _same_origin(request: web.Request) -> None:
        """A browser names the page's origin on every POST: it must be this server."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise _Rejected(403, "origin", f"cross-origin request from {origin!r} refused")

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise _Rejected(
                400, "malformed", "the body must be JSON (Content-Type: application/json)"
            )
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Rejected(400, "malformed", f"the body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _Rejected(400, "malformed", "the body must be a JSON object")
        return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Rejected(400, "invalid_argument", f"{name} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise _Rejected(400, "invalid_argument", f"{name} must be at most {MAX_TEXT} characters")
    return value.strip()


def _order_result(info: OrderInfo) -> dict[str, Any]:
    return {
        "order_id": info.order_id,
        "status": info.status,
        "good": info.good_count,
        "reject": info.reject_count,
        "target": info.target_quantity,
    }
