"""``[web]``: the line display (pages, JSON API, live feed) served by edge.serve.web.

The limits apply to the ``[metrics]`` listener too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from edge.config.mqtt import check_files
from edge.config.schema import NonEmpty, Port, Reader, between


@dataclass(frozen=True, slots=True)
class WebConfig:
    enabled: bool = True
    host: Annotated[str, NonEmpty] = "127.0.0.1"
    port: Annotated[int, Port] = 9713
    tls_cert_file: Path | None = None  # both set: HTTPS
    tls_key_file: Path | None = None
    # Per listener, WebSockets included; one more gets a 503.
    max_connections: Annotated[int, between(1, 10_000)] = 64
    max_body_bytes: Annotated[int, between(1024, 16 << 20)] = 65_536  # larger: 413
    # A connection's first request head must arrive within it (408).
    request_timeout_s: Annotated[float, between(0.1, 600)] = 10.0
    idle_timeout_s: Annotated[float, between(0.1, 3600)] = 60.0  # idle keep-alive: closed
    session_idle_s: Annotated[float, between(10, 86_400)] = 900.0  # a login without a request
    session_max_s: Annotated[float, between(10, 7 * 86_400)] = 43_200.0  # a login in any case


def read_web(reader: Reader, doc: dict[str, Any]) -> WebConfig:
    web = reader.section(WebConfig, reader.table(doc, "web"), "web") or WebConfig()
    check_files(reader, web, "web", "tls_cert_file", "tls_key_file")
    if (web.tls_cert_file is None) != (web.tls_key_file is None):
        reader.problem("web.tls_key_file", "tls_cert_file and tls_key_file go together")
    if web.session_max_s < web.session_idle_s:
        reader.problem("web.session_max_s", "must be >= session_idle_s")
    return web
