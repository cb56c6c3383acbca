"""``/metrics``, ``/healthz`` and ``/readyz`` (edge.serve.metrics says what they report).

``/metrics`` negotiates its format with prometheus_client's own helpers: the
classic text format 0.0.4 by default, OpenMetrics or text 1.0.0 when the
scraper's ``Accept`` asks for it, gzip when its ``Accept-Encoding`` allows.
"""

from __future__ import annotations

import gzip

from aiohttp import web
from prometheus_client.exposition import choose_encoder, gzip_accepted

from edge.serve.metrics import LineMetrics

__all__ = ["add_health_routes"]


def add_health_routes(app: web.Application, metrics: LineMetrics, *, serve_metrics: bool) -> None:
    async def scrape(request: web.Request) -> web.Response:
        await metrics.refresh()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(metrics.registry)
        headers = {"Content-Type": content_type}
        if gzip_accepted(request.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        # The body is encoded already: aiohttp must not compress or re-type it.
        return web.Response(body=body, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        if metrics.alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not alive\n")

    async def readyz(request: web.Request) -> web.Response:
        readiness = metrics.readiness()
        return web.Response(
            status=200 if readiness.ready else 503,
            body=readiness.as_json(),
            content_type="application/json",
        )

    if serve_metrics:
        app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
