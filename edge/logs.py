"""Logging: one line per record on stderr, journald-friendly.

``LEVEL logger: message key=value ...`` — context is passed with ``extra=``::

    log.warning("plc link lost", extra={"plc": "sim", "error": "timeout"})

Under systemd (``JOURNAL_STREAM`` set) the timestamp is left out, since the
journal stamps every line itself, and the level is prefixed as ``<N>`` so
``journalctl -p warning`` filters by it.

:class:`OutageLog` implements "log a failure once and its recovery once".
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

# syslog priorities, for systemd's "<N>" line prefix.
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _format_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class LineFormatter(logging.Formatter):
    """``[ts] LEVEL logger: message k=v k=v`` on one line, tracebacks folded in."""

    def __init__(self, *, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        context = " ".join(
            f"{key}={_format_value(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        )
        line = f"{record.levelname} {record.name}: {message}"
        if context:
            line = f"{line} {context}"
        if record.exc_info:
            # Keep one record on one line so the journal keeps it together.
            trace = self.formatException(record.exc_info).replace("\n", " | ")
            line = f"{line} exc={_format_value(trace)}"
        if self.journald:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z {line}"


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Install the one-line formatter on the root logger (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LineFormatter(journald=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_edge_handler", False):
            root.removeHandler(existing)
    handler._edge_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries are chatty at INFO (asyncua logs every session); keep their warnings.
    for noisy in ("asyncua", "pymodbus", "aiosqlite", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class OutageLog:
    """Logs the first failure of something and its recovery, not every retry.

    >>> outage = OutageLog(logging.getLogger("edge.plc"), "plc link", plc="sim")
    >>> outage.failed("timeout")   # logs a warning
    >>> outage.failed("timeout")   # silent: still down
    >>> outage.recovered()         # logs once, with how long it was down
    """

    def __init__(self, logger: logging.Logger, what: str, **context: object) -> None:
        self.logger = logger
        self.what = what
        self.context = context
        self.down_since: float | None = None
        self.failures = 0

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def failed(self, reason: object) -> bool:
        """Record a failure; returns True when this one was logged (the first)."""
        self.failures += 1
        if self.down_since is not None:
            return False
        self.down_since = time.monotonic()
        self.logger.warning("%s lost: %s", self.what, reason, extra=dict(self.context))
        return True

    def recovered(self) -> bool:
        """Record success; returns True when it ended an outage (and was logged)."""
        if self.down_since is None:
            return False
        down_for = time.monotonic() - self.down_since
        self.logger.info(
            "%s recovered after %.1f s (%d failed attempts)",
            self.what,
            down_for,
            self.failures,
            extra=dict(self.context),
        )
        self.down_since = None
        self.failures = 0
        return True
