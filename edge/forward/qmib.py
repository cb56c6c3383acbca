"""The QMIB connector: batch templates and equipment in, batch records and acknowledgements out.

::

    async with QmibClient(config.qmib) as qmib:
        template = await qmib.fetch_template("BT-100")
        await qmib.publish_batch_record(record, idempotency_key="3f2a9c-qmib-17")

Requests (paths from ``[qmib]``, so they fit each deployment; ``{ids}`` are
URL-quoted): ``GET templates_path``, ``GET equipment_path`` (JSON objects back),
``POST batch_records_path`` (a JSON batch record), ``POST event_ack_path`` and
``POST alarm_ack_path`` (``{"edge_id", "acknowledged_at", "note"}``). Every
request carries ``Authorization`` (bearer token or basic auth) and a
``User-Agent`` naming the edge; a batch record also an ``Idempotency-Key``, so
QMIB can ignore a record it already has (a ``409 Conflict`` counts as
delivered).

Failures, one exception tree under :class:`~edge.errors.ConnectorError`::

    QmibError                  anything QMIB-related; .status, .method, .path
    ├── QmibAuthError          401/403: the credentials are wrong or lack a permission
    ├── QmibRejectedError      any other 4xx: the request itself is wrong; never retried
    └── QmibUnavailableError   5xx, timeouts, connection errors, after the retries

5xx answers and connection errors are retried ``retries`` times with a
jittered, capped backoff (a ``Retry-After`` is honoured up to
``backoff_max_s``); 4xx answers never are.

Completed batch records reach QMIB through the outbox (stream ``qmib``):
:class:`QmibDelivery` posts them one at a time, oldest first, deletes each
only once QMIB took it, and retries for as long as QMIB is down, so nothing is
lost. A record QMIB rejects as invalid (4xx) is set aside in the outbox stream
``qmib-rejected`` and reported as a :class:`QmibRecordRejected` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import msgpack

from edge import __version__
from edge.backoff import Backoff
from edge.config import QmibConfig
from edge.context import LineContext
from edge.errors import ConnectorError, EdgeError, StateStoreError
from edge.event_bus import EventBus
from edge.forward.streams import find_outbox
from edge.logs import OutageLog
from edge.state.outbox import QMIB_STREAM, Outbox
from edge.wire import WireError, decode_envelope, json_safe

__all__ = [
    "QMIB_REJECTED_STREAM",
    "QmibAuthError",
    "QmibClient",
    "QmibComponent",
    "QmibDelivery",
    "QmibError",
    "QmibRecordRejected",
    "QmibRejectedError",
    "QmibStatistics",
    "QmibUnavailableError",
    "component",
]

log = logging.getLogger("edge.qmib")

QMIB_REJECTED_STREAM = "qmib-rejected"
_BODY_EXCERPT = 200


class QmibError(ConnectorError):
    """A QMIB request failed."""

    def __init__(
        self, message: str, *, status: int | None = None, method: str = "", path: str = ""
    ):
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path


class QmibAuthError(QmibError):
    """QMIB refused the credentials (401) or their permission (403)."""


class QmibRejectedError(QmibError):
    """QMIB answered 4xx: the request is wrong and will not improve by retrying."""


class QmibUnavailableError(QmibError):
    """QMIB answered 5xx or could not be reached, after every retry."""


@dataclass(frozen=True, slots=True)
class QmibRecordRejected:
    """QMIB refused a batch record as invalid; it waits in the ``qmib-rejected`` outbox stream."""

    machine_id: str
    ts: float
    seq: int  # its number in the qmib stream
    type: str
    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class QmibStatistics:
    requests: int
    retries: int
    successes: int
    server_errors: int  # 5xx answers
    client_errors: int  # 4xx answers other than 401/403
    auth_failures: int  # 401/403 answers
    connection_errors: int  # timeouts, refused connections
    gave_up: int  # requests that failed after every retry (5xx, connection errors)
    delivered: int  # batch records QMIB took
    rejected_records: int  # batch records set aside (4xx)
    pending: int  # batch records waiting in the outbox
    last_error: str | None


class ClientState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class QmibClient:
    """httpx.AsyncClient for QMIB, with retries and the project's errors."""

    def __init__(
        self,
        config: QmibConfig,
        *,
        edge_id: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.edge_id = edge_id
        self.state = ClientState.UNOPENED
        self._transport = transport
        self._sleep = sleep
        self._rng = rng
        self._http: httpx.AsyncClient | None = None
        self.requests = 0
        self.retries = 0
        self.successes = 0
        self.server_errors = 0
        self.client_errors = 0
        self.auth_failures = 0
        self.connection_errors = 0
        self.gave_up = 0
        self.last_error: str | None = None

    async def __aenter__(self) -> Self:
        if self.state is not ClientState.UNOPENED:
            raise EdgeError(f"a QmibClient is opened once (state {self.state.value})")
        cfg = self.config
        headers = {"User-Agent": f"edge-line-controller/{__version__} {self.edge_id}".strip()}
        auth: httpx.Auth | None = None
        if cfg.token is not None:
            headers["Authorization"] = f"Bearer {cfg.token.reveal()}"
        elif cfg.username is not None and cfg.password is not None:
            auth = httpx.BasicAuth(cfg.username, cfg.password.reveal())
        verify: bool | str = str(cfg.ca_file) if cfg.ca_file is not None else cfg.verify_tls
        self._http = httpx.AsyncClient(
            base_url=cfg.base_url.rstrip("/"),
            headers=headers,
            auth=auth,
            timeout=cfg.timeout_s,
            verify=verify,
            transport=self._transport,
            follow_redirects=False,
        )
        self.state = ClientState.OPEN
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self.state = ClientState.CLOSED

    # ------------------------------------------------------------------ the requests

    async def fetch_template(self, template_id: str) -> dict[str, Any]:
        """A batch template (a JSON object) by id."""
        path = self.config.templates_path.format(template_id=quote(template_id, safe=""))
        return await self._json_object("GET", path)

    async def fetch_equipment(self, equipment_id: str) -> dict[str, Any]:
        """Equipment information (a JSON object) by id."""
        path = self.config.equipment_path.format(equipment_id=quote(equipment_id, safe=""))
        return await self._json_object("GET", path)

    async def publish_batch_record(
        self, record: Mapping[str, Any], *, idempotency_key: str
    ) -> None:
        """POST one batch record; a 409 Conflict (QMIB has it already) counts as done."""
        await self._request(
            "POST",
            self.config.batch_records_path,
            json=json_safe(dict(record)),
            headers={"Idempotency-Key": idempotency_key},
            conflict_ok=True,
        )

    async def acknowledge_event(self, event_id: str, *, note: str = "") -> None:
        path = self.config.event_ack_path.format(event_id=quote(event_id, safe=""))
        await self._request("POST", path, json=self._ack(note))

    async def acknowledge_alarm(self, alarm_id: str, *, note: str = "") -> None:
        path = self.config.alarm_ack_path.format(alarm_id=quote(alarm_id, safe=""))
        await self._request("POST", path, json=self._ack(note))

    def _ack(self, note: str) -> dict[str, Any]:
        return {"edge_id": self.edge_id, "acknowledged_at": time.time(), "note": note}

    async def _json_object(self, method: str, path: str) -> dict[str, Any]:
        response = await self._request(method, path)
        try:
            doc = response.json()
        except ValueError as exc:
            raise QmibError(
                f"QMIB answered {method} {path} with something that is not JSON: {exc}",
                status=response.status_code,
                method=method,
                path=path,
            ) from exc
        if not isinstance(doc, dict):
            raise QmibError(
                f"QMIB answered {method} {path} with JSON that is not an object",
                status=response.status_code,
                method=method,
                path=path,
            )
        return doc

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        conflict_ok: bool = False,
    ) -> httpx.Response:
        if self.state is not ClientState.OPEN or self._http is None:
            raise QmibError(f"the QMIB client is {self.state.value}", method=method, path=path)
        cfg = self.config
        backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, rng=self._rng)
        attempts = cfg.retries + 1
        for attempt in range(1, attempts + 1):
            self.requests += 1
            retry_after: float | None = None
            try:
                response = await self._http.request(method, path, json=json, headers=headers)
            except httpx.TransportError as exc:  # connect/read timeouts, refused, reset
                self.connection_errors += 1
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
            else:
                status = response.status_code
                if status < 400 or (conflict_ok and status == 409):
                    self.successes += 1
                    return response
                if status in (401, 403):
                    self.auth_failures += 1
                    raise self._failed(QmibAuthError(self._auth_message(method, path, response)))
                if status < 500:
                    self.client_errors += 1
                    raise self._failed(
                        QmibRejectedError(
                            f"QMIB rejected {method} {path}: HTTP {status} "
                            f"{response.reason_phrase}: {_excerpt(response)}",
                            status=status,
                            method=method,
                            path=path,
                        )
                    )
                self.server_errors += 1
                problem = f"HTTP {status} {response.reason_phrase}"
                retry_after = _retry_after(response)
            if attempt == attempts:
                self.gave_up += 1
                raise self._failed(
                    QmibUnavailableError(
                        f"QMIB unavailable for {method} {path} after {attempts} attempt"
                        f"{'s' if attempts > 1 else ''}: {problem}",
                        method=method,
                        path=path,
                    )
                )
            self.retries += 1
            delay = backoff.next_delay()
            if retry_after is not None:
                delay = min(max(delay, retry_after), cfg.backoff_max_s)
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(self, error: QmibError) -> QmibError:
        self.last_error = str(error)
        return error

    def _auth_message(self, method: str, path: str, response: httpx.Response) -> str:
        status = response.status_code
        if status == 403:
            return (
                f"QMIB denied {method} {path}: HTTP 403 Forbidden: the credentials are valid but "
                "lack the permission for this request"
            )
        how = (
            "the bearer token ([qmib] token)"
            if self.config.token is not None
            else "the user name and password ([qmib] username/password)"
            if self.config.username is not None
            else "no credentials: set [qmib] token, or username and password"
        )
        return (
            f"QMIB refused the credentials for {method} {path}: HTTP 401 Unauthorized; check {how}"
        )

    def statistics(self) -> QmibStatistics:
        return QmibStatistics(
            requests=self.requests,
            retries=self.retries,
            successes=self.successes,
            server_errors=self.server_errors,
            client_errors=self.client_errors,
            auth_failures=self.auth_failures,
            connection_errors=self.connection_errors,
            gave_up=self.gave_up,
            delivered=0,
            rejected_records=0,
            pending=0,
            last_error=self.last_error,
        )


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_BODY_EXCERPT] + ("..." if len(text) > _BODY_EXCERPT else "") or "(no body)"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides


# --------------------------------------------------------------------------- delivery


class QmibDelivery:
    """Posts the outbox's ``qmib`` stream to QMIB, oldest first, each until QMIB took it."""

    def __init__(
        self,
        client: QmibClient,
        outbox: Outbox,
        bus: EventBus[Any],
        *,
        identity: Mapping[str, str],
        stream: str = QMIB_STREAM,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.bus = bus
        self.identity = dict(identity)
        self.stream = stream
        cfg = client.config
        self._backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s)
        self._outage = OutageLog(log, f"QMIB {cfg.base_url}")
        self.delivered = 0
        self.rejected = 0

    async def run(self) -> None:
        outbox, stream = self.outbox, self.stream
        while True:
            rows = await outbox.read(stream, 0, 1)
            if not rows:
                if await outbox.purge(stream):  # nothing to deliver: delete delivered rows
                    continue
                await outbox.wait_appended(stream, outbox.last_seq(stream))
                continue
            row = rows[0]
            try:
                event = decode_envelope(row.payload)
            except WireError as exc:  # our own bytes: a bug, but it must not block the rest
                await self._set_aside(row.seq, "Unreadable", {"raw": row.payload}, None, str(exc))
                continue
            body = {
                **self.identity,
                "seq": event.seq,
                "type": event.type,
                "record": event.data,
            }
            try:
                await self.client.publish_batch_record(
                    body, idempotency_key=f"{outbox.epoch}-{stream}-{event.seq}"
                )
            except QmibRejectedError as exc:
                await self._set_aside(row.seq, event.type, event.data, exc.status, str(exc))
                continue
            except QmibError as exc:
                # Down, or refusing our credentials: the record stays; try again later.
                if self._outage.failed(exc) and isinstance(exc, QmibAuthError):
                    log.error("QMIB refuses this edge's credentials: %s", exc)
                await asyncio.sleep(self._backoff.next_delay())
                continue
            self._backoff.reset()
            self._outage.recovered()
            await outbox.acknowledge(stream, row.seq)
            self.delivered += 1

    async def _set_aside(
        self, seq: int, type_name: str, data: Mapping[str, Any], status: int | None, reason: str
    ) -> None:
        """Move a record QMIB will never take out of the way, into its own stream."""
        log.error(
            "QMIB rejected a batch record; kept in the outbox stream %s",
            QMIB_REJECTED_STREAM,
            extra={"seq": seq, "type": type_name, "error": reason},
        )
        report = QmibRecordRejected("", time.time(), seq, type_name, status, reason)
        packed = msgpack.packb(dict(data), use_bin_type=True)
        await self.outbox.append_entries([(QMIB_REJECTED_STREAM, type_name, packed, True)])
        await self.outbox.acknowledge(self.stream, seq)
        self.rejected += 1
        self.bus.publish([report])


# --------------------------------------------------------------------------- the component


class QmibComponent:
    """The QMIB client and the delivery of batch records from the outbox.

    Other components reach the client as ``component.client`` (templates,
    equipment, acknowledgements). List it after ``edge.forward.streams.component``.
    """

    def __init__(self, service: LineContext) -> None:
        self._service = service
        config = service.config
        self.config = config.qmib
        from edge.forward.mqtt.topics import edge_id_of  # noqa: PLC0415 - no aiomqtt import needed

        self.edge_id = edge_id_of(config)
        self.client = QmibClient(self.config, edge_id=self.edge_id)
        self.delivery: QmibDelivery | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        if not self.config.enabled:
            return self
        await self.client.__aenter__()
        outbox = find_outbox(self._service).outbox
        line = self._service.config.line
        self.delivery = QmibDelivery(
            self.client,
            outbox,
            self._service.bus,
            identity={
                "edge_id": self.edge_id,
                "site": line.site,
                "area": line.area,
                "line": line.id,
            },
        )
        self._task = asyncio.ensure_future(self._deliver())
        self._task.set_name("qmib-delivery")
        return self

    async def _deliver(self) -> None:
        assert self.delivery is not None
        try:
            await self.delivery.run()
        except StateStoreError:
            if self._task is not None:  # not stopping: the outbox failed under us
                log.exception("QMIB delivery stopped: the outbox failed")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.aclose()

    def statistics(self) -> QmibStatistics:
        stats = self.client.statistics()
        delivery = self.delivery
        if delivery is None:
            return stats
        return QmibStatistics(
            **{
                **{name: getattr(stats, name) for name in stats.__dataclass_fields__},
                "delivered": delivery.delivered,
                "rejected_records": delivery.rejected,
                "pending": delivery.outbox.depth(delivery.stream),
            }
        )

    def metric_values(self) -> dict[str, float | int | bool | None]:
        """For edge.serve.metrics (its MetricsSource protocol)."""
        if not self.config.enabled:
            return {}
        client = self.client
        return {
            "qmib_requests_succeeded": client.successes,
            "qmib_requests_failed": client.gave_up,
            "qmib_requests_rejected": client.client_errors + client.auth_failures,
            "qmib_request_retries": client.retries,
        }

    def banner(self) -> list[str]:
        if not self.config.enabled:
            return []
        auth = (
            "bearer token"
            if self.config.token is not None
            else "basic auth"
            if self.config.username is not None
            else "no credentials"
        )
        kinds = ", ".join(self.config.deliver_events) or "nothing"
        return [f"QMIB        {self.config.base_url} ({auth}): delivers {kinds} from the outbox"]


def component(service: LineContext) -> QmibComponent:
    """The LineService component factory (after edge.forward.streams.component)."""
    return QmibComponent(service)
