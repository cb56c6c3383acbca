"""systemd's notify protocol without libsystemd: a datagram to ``$NOTIFY_SOCKET``.

``READY=1`` when the service is really up, ``WATCHDOG=1`` from the event loop
only while the line makes progress, ``STOPPING=1`` on shutdown, ``STATUS=...``
for ``systemctl status``. Without ``NOTIFY_SOCKET`` (not under systemd, or in
tests that do not ask for it) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("edge.sd_notify")


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
