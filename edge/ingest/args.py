"""The options of ``edge ingest``: the CLI declares them on every invocation, so this
module imports nothing heavy (the command itself pulls in asyncpg and the MQTT client)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=None,
        metavar="DSN",
        help="PostgreSQL connection URI, e.g. postgresql://ingest@db/plant "
        "(default: $EDGE_INGEST_DB; the password from $PGPASSWORD or a passfile)",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get("EDGE_INGEST_BROKER", "127.0.0.1:1883"),
        metavar="HOST[:PORT]",
        help="MQTT broker (default: $EDGE_INGEST_BROKER, else 127.0.0.1:1883; "
        "port 8883 with --tls)",
    )
    parser.add_argument(
        "--prefix",
        default=os.environ.get("EDGE_INGEST_PREFIX", "edge"),
        help="the lines' [mqtt] prefix (default: $EDGE_INGEST_PREFIX, else edge)",
    )
    parser.add_argument(
        "--group",
        default="ingest",
        help="shared subscription group: workers of one group split the lines (default: ingest)",
    )
    parser.add_argument(
        "--client-id",
        default=None,
        help="MQTT client id, unique and stable per worker: the broker keeps its session "
        "under it (default: edge-ingest-<hostname>)",
    )
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=7 * 24 * 3600,
        metavar="SECONDS",
        help="how long the broker keeps this worker's session and queue while it is away "
        "(default: 7 days)",
    )
    parser.add_argument(
        "--inflight",
        type=int,
        default=16,
        metavar="N",
        help="batches in the pipeline, unacknowledged (MQTT Receive Maximum; default 16)",
    )
    parser.add_argument(
        "--pool", type=int, default=4, metavar="N", help="database connections (default 4)"
    )
    parser.add_argument(
        "--metrics",
        default=os.environ.get("EDGE_INGEST_METRICS", "127.0.0.1:9713"),
        metavar="HOST:PORT",
        help="where /metrics, /healthz and /readyz listen (default: $EDGE_INGEST_METRICS, "
        "else 127.0.0.1:9713; 'off')",
    )
    parser.add_argument(
        "--gap-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a sequence gap counts in the gap metrics once this old (default 30: younger "
        "ones are mostly batches still in flight at another worker)",
    )
    parser.add_argument("--username", default=None, help="MQTT user name")
    parser.add_argument(
        "--password-env", default=None, metavar="VAR", help="take the MQTT password from $VAR"
    )
    parser.add_argument("--tls", action="store_true", help="connect to the broker with TLS")
    parser.add_argument("--ca-file", type=Path, default=None, help="CA bundle for --tls")
    parser.add_argument("--cert-file", type=Path, default=None, help="client certificate")
    parser.add_argument("--key-file", type=Path, default=None, help="client certificate's key")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
