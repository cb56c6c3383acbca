"""``[qmib]``: the AspenTech QMIB REST gateway (batch templates, records, acknowledgements)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from edge.config.mqtt import check_files
from edge.config.plcs import check_backoff
from edge.config.schema import Check, NonEmpty, Positive, Reader, between, matches
from edge.secrets import Secret


def _http_url(value: str) -> str | None:
    parts = urlsplit(value)
    if value and (parts.scheme not in ("http", "https") or not parts.hostname):
        return f'must be an http(s) URL like "https://qmib.example/api", got {value!r}'
    return None


def _url_path(*placeholders: str) -> Check:
    def check(value: str) -> str | None:
        if not value.startswith("/"):
            return f"must be a URL path starting with '/', got {value!r}"
        if sorted(re.findall(r"\{([^{}]*)\}", value)) != sorted(placeholders):
            want = ", ".join("{" + p + "}" for p in placeholders) or "no placeholder"
            return f"must contain exactly {want}, got {value!r}"
        return None

    return Check(check)


EventType = Annotated[
    str, matches(r"^[A-Za-z_][A-Za-z0-9_]*$", "an event type name like 'BatchRecordCompleted'")
]


@dataclass(frozen=True, slots=True)
class QmibConfig:
    enabled: bool = False
    base_url: Annotated[str, Check(_http_url)] = ""
    token: Secret | None = None  # bearer token; or username + password (basic)
    username: Annotated[str, NonEmpty] | None = None
    password: Secret | None = None
    timeout_s: Annotated[float, Positive] = 10.0
    retries: Annotated[int, between(0, 20)] = 3  # after a 5xx or connection error; never a 4xx
    backoff_initial_s: Annotated[float, Positive] = 0.5
    backoff_max_s: Annotated[float, Positive] = 30.0
    verify_tls: bool = True
    ca_file: Path | None = None
    templates_path: Annotated[str, _url_path("template_id")] = "/batch-templates/{template_id}"
    equipment_path: Annotated[str, _url_path("equipment_id")] = "/equipment/{equipment_id}"
    batch_records_path: Annotated[str, _url_path()] = "/batch-records"
    event_ack_path: Annotated[str, _url_path("event_id")] = "/events/{event_id}/ack"
    alarm_ack_path: Annotated[str, _url_path("alarm_id")] = "/alarms/{alarm_id}/ack"
    # Event types delivered to QMIB through the outbox (edge.wire type names).
    deliver_events: tuple[EventType, ...] = ("BatchRecordCompleted",)


def read_qmib(reader: Reader, doc: dict[str, Any]) -> QmibConfig:
    table = reader.table(doc, "qmib")
    qmib = reader.section(QmibConfig, table, "qmib", read_secrets=table.get("enabled") is True)
    qmib = qmib or QmibConfig()
    if qmib.enabled and not qmib.base_url:
        reader.problem("qmib.base_url", "missing: required when qmib.enabled = true")
    if qmib.token is not None and (qmib.username is not None or qmib.password is not None):
        reader.problem(
            "qmib.token", "give either token (bearer) or username + password (basic), not both"
        )
    if (qmib.username is None) != (qmib.password is None):
        reader.problem("qmib.password", "username and password go together (basic auth)")
    check_backoff(reader, qmib, "qmib")
    check_files(reader, qmib, "qmib", "ca_file")
    return qmib
