"""systemd's notify protocol without libsystemd: a datagram to ``$NOTIFY_SOCKET``.

``READY=1`` when the service is really up, ``WATCHDOG=1`` from the event loop
only while the line makes progress, ``STOPPING=1`` on shutdown, ``STATUS=...``
for ``systemctl status``. Without ``NOTIFY_SOCKET`` (not under systemd, or in
tests that do not ask for it) every call is a no-op.

Proving the watchdog (a debug hook, off by default): with
``EDGE_DEBUG_BLOCK_LOOP_S=<seconds>`` in the environment, the watchdog task
installs a ``SIGUSR2`` handler that blocks the event loop for that long with a
plain ``time.sleep`` — a stand-in for a hung driver call or a runaway
computation. The pings stop for as long as the loop is blocked, and under
systemd (``WatchdogSec=``) a block longer than the watchdog timeout gets the
service killed with SIGABRT and restarted. Never set it in production::

    EDGE_DEBUG_BLOCK_LOOP_S=40 edge run --config line.toml &   # WatchdogSec=30
    kill -USR2 %1
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

log = logging.getLogger("edge.sd_notify")

DEBUG_BLOCK_ENV = "EDGE_DEBUG_BLOCK_LOOP_S"


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        raw = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        # A leading '@' names a socket in the abstract namespace.
        self._address = "\0" + raw[1:] if raw.startswith("@") else raw
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; False when not delivered."""
        if not self._address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd", extra={"error": str(exc)})
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval_s() -> float | None:
    """Half of systemd's ``WatchdogSec`` (``$WATCHDOG_USEC``), as sd_watchdog_enabled suggests."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.05)
    except ValueError:
        return None


async def run_watchdog(
    notifier: Notifier, interval_s: float, making_progress: Callable[[], bool]
) -> None:
    """Ping ``WATCHDOG=1`` every interval while ``making_progress()`` says so.

    The pings come from the event loop itself, so a blocked loop stops them and
    systemd restarts the service; a loop that runs but whose PLC polling has
    stalled is caught by ``making_progress``.
    """
    stalled = False
    hooked = _install_debug_block_hook()
    try:
        while True:
            await asyncio.sleep(interval_s)
            if making_progress():
                notifier.notify("WATCHDOG=1")
                if stalled:
                    log.info("line progress resumed; watchdog pings resumed")
                    stalled = False
            elif not stalled:
                log.warning("no progress since the last watchdog interval; withholding WATCHDOG=1")
                stalled = True
    finally:
        if hooked:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)


def debug_block_seconds() -> float | None:
    """The ``EDGE_DEBUG_BLOCK_LOOP_S`` setting: seconds, or None when unset or not positive."""
    raw = os.environ.get(DEBUG_BLOCK_ENV, "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number of seconds", DEBUG_BLOCK_ENV, raw)
        return None
    return seconds if 0 < seconds < 3600 else None


def _install_debug_block_hook() -> bool:
    seconds = debug_block_seconds()
    if seconds is None:
        return False

    def block_the_loop() -> None:
        log.warning("debug hook: blocking the event loop for %.1f s (SIGUSR2)", seconds)
        time.sleep(seconds)  # deliberately blocking: that is the point of the hook
        log.warning("debug hook: event loop released")

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, block_the_loop)
    log.warning(
        "debug hook armed: SIGUSR2 blocks the event loop for %.1f s (%s); not for production",
        seconds,
        DEBUG_BLOCK_ENV,
    )
    return True
