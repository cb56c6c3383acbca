"""``edge ingest``: build the settings from the command line and run the worker until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys

from actors import loop as actor_loop
from edge.errors import EdgeError
from edge.forward.mqtt.connection import ClientSettings
from edge.ingest.errors import StoreError
from edge.ingest.service import IngestService, IngestSettings, default_client_id
from edge.logs import configure_logging
from edge.sd_notify import Notifier

__all__ = ["ingest_main", "settings_of"]

log = logging.getLogger("edge.ingest")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _host_port(text: str, default_port: int, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    try:
        number = int(port)
    except ValueError:
        raise EdgeError(f"{what}: {text!r} is not HOST[:PORT]") from None
    if not host or not 0 <= number <= 65535:
        raise EdgeError(f"{what}: {text!r} is not HOST[:PORT]")
    return host, number


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=str(args.ca_file) if args.ca_file else None)
        if args.cert_file is not None:
            context.load_cert_chain(str(args.cert_file), str(args.key_file or "") or None)
    except (OSError, ssl.SSLError) as exc:
        raise EdgeError(f"cannot load the MQTT TLS files: {exc}") from exc
    return context


def settings_of(args: argparse.Namespace) -> IngestSettings:
    """The worker's settings from the ``edge ingest`` options; EdgeError naming a bad one."""
    dsn = args.db or os.environ.get("EDGE_INGEST_DB")
    if not dsn:
        raise EdgeError("--db: a PostgreSQL URI is required (or $EDGE_INGEST_DB)")
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise EdgeError("--db: must be a postgresql:// URI")
    host, port = _host_port(args.broker, 8883 if args.tls else 1883, "--broker")
    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and password is None:
        raise EdgeError(f"--password-env: ${args.password_env} is not set")
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    if args.metrics != "off":
        metrics_host, metrics_port = _host_port(args.metrics, 9713, "--metrics")
    for name in ("inflight", "pool"):
        if getattr(args, name) < 1:
            raise EdgeError(f"--{name}: must be >= 1")
    if args.session_expiry < 1:
        raise EdgeError(
            "--session-expiry: must be >= 1 second (the session must outlive a restart)"
        )
    if args.gap_grace < 0:
        raise EdgeError("--gap-grace: must be >= 0")
    if not args.group or any(c in args.group for c in "/+#"):
        raise EdgeError(f"--group: {args.group!r} must be a non-empty name without / + #")
    return IngestSettings(
        dsn=dsn,
        broker=ClientSettings(
            host, port, username=args.username, password=password, tls=_tls(args)
        ),
        client_id=args.client_id or default_client_id(),
        prefix=args.prefix.strip("/"),
        group=args.group,
        session_expiry_s=args.session_expiry,
        inflight=min(args.inflight, 65535),
        pool_size=args.pool,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        gap_grace_s=args.gap_grace,
    )


async def _serve(settings: IngestSettings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    notifier = Notifier()
    async with IngestService(settings) as service:
        address = service.metrics_address
        log.info(
            "edge ingest starting",
            extra={
                "worker": settings.client_id,
                "filter": settings.topic_filter,
                "broker": f"{settings.broker.host}:{settings.broker.port}",
                "metrics": f"http://{address[0]}:{address[1]}/metrics" if address else "off",
            },
        )
        waiter = asyncio.ensure_future(service.wait())
        ready = asyncio.ensure_future(service.subscribed.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, ready, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            notifier.ready(f"ingesting {settings.topic_filter} as {settings.client_id}")
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        stopper.cancel()
        notifier.stopping()
        if waiter.done():
            waiter.result()  # raises what made the worker fail
        else:
            waiter.cancel()
        await service.stop()
    log.info(
        "edge ingest stopped cleanly",
        extra={"batches": service.stored_batches, "events": service.stored_events},
    )
    return EXIT_OK


def ingest_main(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    try:
        settings = settings_of(args)
    except EdgeError as exc:
        print(f"edge ingest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return actor_loop.run(_serve(settings))
    except StoreError:
        return EXIT_FAILURE  # logged by the service
    except KeyboardInterrupt:
        return EXIT_OK
