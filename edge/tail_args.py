"""The options of ``edge tail``, apart from the command: the CLI declares them for
every invocation, and the command itself pulls in the MQTT client."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``edge tail`` options (the CLI adds a sub-parser and calls this)."""
    parser.add_argument(
        "--config", type=Path, default=None, metavar="LINE.toml", help="broker and topics of a line"
    )
    parser.add_argument("--host", default=None, help="broker host (default: the config's)")
    parser.add_argument("--port", type=int, default=None, help="broker port (default: 1883)")
    parser.add_argument(
        "--topic",
        action="append",
        default=None,
        help="topic filter(s) to follow (default: the line's events and status topics)",
    )
    parser.add_argument("--username", default=None)
    parser.add_argument(
        "--password-env", default=None, metavar="VAR", help="take the password from $VAR"
    )
    parser.add_argument("--client-id", default=None, help="MQTT client id (default: generated)")
    parser.add_argument(
        "--session",
        type=int,
        default=None,
        metavar="SECONDS",
        help="keep a persistent session this long (receive what was sent while away)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document per event")
    parser.add_argument(
        "--count", type=int, default=None, help="exit after this many events (default: run on)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="exit when nothing arrived for this many seconds (default: run on)",
    )
