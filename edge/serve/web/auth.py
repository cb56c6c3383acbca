"""Logins of the line display: sessions that expire, a CSRF token per session, lockout.

A user logs in with the name of a line user (``[[opcua.users]]``) and its
password or PIN (edge.serve.access). The session is a random token in an HttpOnly,
SameSite=Strict cookie; it expires after ``session_idle_s`` without a request
and after ``session_max_s`` in any case, and with the service (sessions live in
memory). Every write also carries the session's CSRF token in the
``X-CSRF-Token`` header, which a page of another site cannot read.

After :data:`MAX_FAILURES` wrong secrets for one name within
:data:`LOCKOUT_S`, that name is locked for :data:`LOCKOUT_S` (a 4-digit PIN
must not be guessable at network speed).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.serve.access import AccessPolicy, User

__all__ = ["LoginRefused", "Session", "Sessions"]

log = logging.getLogger("edge.web.auth")

MAX_FAILURES = 5
LOCKOUT_S = 60.0
MAX_SESSIONS = 1_000
MAX_NAME = 64
MAX_SECRET = 256


class LoginRefused(Exception):
    """A login that did not succeed; the message says why without telling which part was wrong."""


@dataclass(slots=True)
class Session:
    token: str
    user: User
    csrf_token: str
    created: float
    last_seen: float
    expires: float = field(default=0.0)

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf_token.encode())


class Sessions:
    """The open sessions (in memory); ``clock`` is monotonic seconds."""

    def __init__(
        self,
        policy: AccessPolicy,
        *,
        idle_s: float,
        max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._idle_s = idle_s
        self._max_s = max_s
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._failures: dict[str, list[float]] = {}

    def login(self, name: object, secret: object) -> Session:
        if not isinstance(name, str) or not isinstance(secret, str):
            raise LoginRefused("user and secret must be strings")
        name = name.strip()
        if not name or len(name) > MAX_NAME or len(secret) > MAX_SECRET:
            raise LoginRefused("unknown user or wrong password/PIN")
        now = self._clock()
        recent = [t for t in self._failures.get(name, []) if now - t < LOCKOUT_S]
        if len(recent) >= MAX_FAILURES:
            wait = LOCKOUT_S - (now - recent[-MAX_FAILURES])
            raise LoginRefused(f"too many failed logins for {name!r}: try again in {wait:.0f} s")
        user = self._policy.authenticate(name, secret)
        if user is None:
            recent.append(now)
            self._failures[name] = recent[-MAX_FAILURES:]
            log.warning("line display login refused", extra={"user": name})
            raise LoginRefused("unknown user or wrong password/PIN")
        self._failures.pop(name, None)
        session = Session(
            token=secrets.token_urlsafe(32),
            user=user,
            csrf_token=secrets.token_urlsafe(24),
            created=now,
            last_seen=now,
        )
        self._expiry(session)
        self._sessions[session.token] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        log.info("line display login", extra={"user": user.name})
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its idle clock restarted); None: expired or unknown."""
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires:
            del self._sessions[token]
            return None
        session.last_seen = now
        self._expiry(session)
        self._sessions.move_to_end(token)
        return session

    def logout(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def seconds_left(self, session: Session) -> float:
        return max(session.expires - self._clock(), 0.0)

    def _expiry(self, session: Session) -> None:
        session.expires = min(session.last_seen + self._idle_s, session.created + self._max_s)
