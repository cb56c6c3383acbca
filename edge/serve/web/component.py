"""The line's HTTP component: the line display on ``[web]``, the metrics on ``[metrics]``.

Wiring: ``LineService(config, components=[edge.serve.web.component])``; ``edge run``
adds it when either section is enabled. It serves

- on ``[web] host:port`` (HTTPS with ``tls_cert_file``/``tls_key_file``): the
  board ``/`` (``/?kiosk=1`` without controls), the machine pages
  ``/machines/<id>``, the JSON API ``/api/v1/...`` with its live feed
  ``/api/v1/live`` (edge.serve.web.api, edge.serve.web.live), ``/healthz``, ``/readyz``, and
  ``/metrics`` when metrics are enabled;
- on ``[metrics] host:port``: ``/metrics``, ``/healthz``, ``/readyz`` (one
  listener when both sections name the same address).

The display's hourly counts and unknown spans (edge.serve.web.history) are saved with
the line's state with the events it was built from (a source of the cut, edge.state.cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ssl
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from edge.context import LineContext
from edge.errors import EdgeError
from edge.serve.access import AccessPolicy
from edge.serve.metrics import LineMetrics
from edge.serve.web.api import LineApi
from edge.serve.web.auth import Sessions
from edge.serve.web.board import Board
from edge.serve.web.health import add_health_routes
from edge.serve.web.history import LEGACY_SNAPSHOT_KEY, MACHINE_KEY_PREFIX, LineHistory
from edge.serve.web.live import LiveFeed
from edge.serve.web.server import ServerLimits, WebServer, new_app
from edge.state.cut import Saved
from edge.state.store import StateStore

__all__ = ["STATIC_DIR", "ComponentState", "WebComponent", "component"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class ComponentState(enum.Enum):
    UNOPENED = "unopened"
    RUNNING = "running"
    CLOSED = "closed"


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", _CSP)
    if request.path.startswith("/static/") or request.path.endswith(".html"):
        headers.setdefault("Cache-Control", "no-cache")  # revalidated: an upgrade shows at once
    else:
        headers.setdefault("Cache-Control", "no-store")


class WebComponent:
    """``*_host``/``*_port`` override the config (tests use port 0); ``display`` and
    ``serve_metrics`` override the sections' ``enabled``."""

    def __init__(
        self,
        service: LineContext,
        *,
        metrics_host: str | None = None,
        metrics_port: int | None = None,
        web_host: str | None = None,
        web_port: int | None = None,
        display: bool | None = None,
        serve_metrics: bool | None = None,
    ) -> None:
        config = service.config
        self._service = service
        self._display_on = config.web.enabled if display is None else display
        self._metrics_on = config.metrics.enabled if serve_metrics is None else serve_metrics
        self._metrics_address = (
            metrics_host if metrics_host is not None else config.metrics.host,
            metrics_port if metrics_port is not None else config.metrics.port,
        )
        self._web_address = (
            web_host if web_host is not None else config.web.host,
            web_port if web_port is not None else config.web.port,
        )
        web_config = config.web
        self.limits = ServerLimits(
            max_connections=web_config.max_connections,
            max_body_bytes=web_config.max_body_bytes,
            request_timeout_s=web_config.request_timeout_s,
            idle_timeout_s=web_config.idle_timeout_s,
        )
        self.metrics = LineMetrics(service)
        self.history = LineHistory([m.id for m in config.machines], config.calendar.timezone)
        self.board = Board(service, self.history)
        self.live = LiveFeed(self.board)
        self.policy = AccessPolicy.from_config(config)
        self.sessions = Sessions(
            self.policy, idle_s=web_config.session_idle_s, max_s=web_config.session_max_s
        )
        self.api: LineApi | None = None
        self._state = ComponentState.UNOPENED
        self._servers: dict[str, WebServer] = {}
        self._unsubscribe: list[Any] = []
        self._legacy_history = False  # the whole line under one key: removed at the first cut
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> ComponentState:
        return self._state

    def ready(self) -> bool:
        return self._state is ComponentState.RUNNING

    def health_checks(self) -> dict[str, str]:
        """``/readyz``'s checks of what this component serves, named by what they are."""
        status = "ok" if self.ready() else f"not serving ({self._state.value})"
        checks: dict[str, str] = {}
        if self._display_on:
            checks["line display"] = status
        if self._metrics_on:
            checks["metrics endpoint"] = status
        return checks

    @property
    def display_url(self) -> str:
        server = self._servers.get("web")
        if server is None:
            raise EdgeError("the line display is not served (disabled, or not started)")
        return server.url

    @property
    def metrics_url(self) -> str:
        server = self._servers.get("metrics") or (
            self._servers.get("web") if self._metrics_on else None
        )
        if server is None:
            raise EdgeError("metrics are not served (disabled, or not started)")
        return server.url

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not ComponentState.UNOPENED:
            raise EdgeError(f"the web component runs once (state {self._state.value})")
        self._state = ComponentState.RUNNING
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _start(self) -> None:
        service = self._service
        bus = service.bus
        if self._metrics_on:
            self._unsubscribe.append(bus.subscribe("metrics", self.metrics.events.consume))
        if self._display_on:
            self._restore_history(service.store)
            self._unsubscribe.append(bus.subscribe("web-history", self._consume_history))
            # Saved with the events it was built from, in the line's cut (edge.state.cut).
            self._unsubscribe.append(service.cuts.add("web", self._cut_state))
            self._unsubscribe.append(bus.subscribe("web-live", self.live.consume))
            server = WebServer(
                self._display_app(),
                *self._web_address,
                name="web",
                limits=self.limits,
                ssl_context=self._tls(),
            )
            self._servers["web"] = await server.__aenter__()
            self._task = asyncio.ensure_future(self.live.run())
        if self._metrics_on and not (
            self._display_on and self._metrics_address == self._web_address
        ):
            app = new_app("metrics", self.limits)
            add_health_routes(app, self.metrics, serve_metrics=True)
            server = WebServer(app, *self._metrics_address, name="metrics", limits=self.limits)
            self._servers["metrics"] = await server.__aenter__()

    def _display_app(self) -> web.Application:
        app = new_app("web", self.limits)
        app.on_response_prepare.append(_security_headers)
        self.api = LineApi(
            self._service,
            self.board,
            self.policy,
            self.sessions,
            tls=self._service.config.web.tls_cert_file is not None,
        )
        self.api.add_routes(app)
        app.router.add_get("/api/v1/live", self.live.handle)
        add_health_routes(app, self.metrics, serve_metrics=self._metrics_on)

        async def board(request: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC_DIR / "board.html")

        async def machine(request: web.Request) -> web.FileResponse:
            if request.match_info["machine_id"] not in self.board.machines:
                raise web.HTTPNotFound(text="no such machine on this line\n")
            return web.FileResponse(STATIC_DIR / "machine.html")

        app.router.add_get("/", board)
        app.router.add_get("/machines/{machine_id}", machine)
        app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)

        async def going_away(app: web.Application) -> None:
            await self.live.close_all()

        app.on_shutdown.append(going_away)
        return app

    def _tls(self) -> ssl.SSLContext | None:
        web_config = self._service.config.web
        if web_config.tls_cert_file is None or web_config.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(web_config.tls_cert_file, web_config.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise EdgeError(
                f"web: cannot load the TLS certificate {web_config.tls_cert_file} "
                f"with key {web_config.tls_key_file}: {exc}"
            ) from exc
        return context

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._state is ComponentState.CLOSED:
            return
        self._state = ComponentState.CLOSED
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in reversed(list(self._servers.values())):
            await server.aclose()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # -- the service's hooks -----------------------------------------------------------

    def _restore_history(self, store: StateStore) -> None:
        legacy = store.load(LEGACY_SNAPSHOT_KEY)
        if legacy is not None:
            # One key for the whole line (an earlier release): saved again per machine.
            self.history.restore(legacy)
            self.history.touch_all()
            self._legacy_history = True
        for key in store.keys(MACHINE_KEY_PREFIX):
            self.history.restore_machine(key.removeprefix(MACHINE_KEY_PREFIX), store.load(key))

    def _consume_history(self, events: Sequence[object]) -> None:
        self.history.consume(events)

    def _cut_state(self) -> dict[str, Saved | None]:
        """The history's part of the line's cut: a bus consumer's state agrees with the
        events published so far at any moment the event loop runs something else. Only
        the machines whose history changed since the last cut are saved."""
        saved: dict[str, Saved | None] = {
            MACHINE_KEY_PREFIX + machine_id: Saved(data)
            for machine_id, data in self.history.changed_snapshots().items()
        }
        if self._legacy_history:
            saved[LEGACY_SNAPSHOT_KEY] = None
            self._legacy_history = False
        return saved

    def banner(self) -> list[str]:
        lines = []
        if "web" in self._servers:
            url = self.display_url
            lines.append(f"display     {url}/ (the line board; {url}/?kiosk=1 without controls)")
            lines.append(f"            machine pages {url}/machines/<id>; JSON API {url}/api/v1/")
        elif not self._display_on:
            lines.append("display     disabled ([web] enabled = false)")
        if self._metrics_on and self._servers:
            url = self.metrics_url
            lines.append(f"metrics     {url}/metrics (Prometheus); {url}/healthz, {url}/readyz")
        elif not self._metrics_on:
            lines.append("metrics     disabled ([metrics] enabled = false)")
        return lines


def component(service: LineContext) -> WebComponent:
    """The factory for ``LineService(config, components=[...])``."""
    return WebComponent(service)
