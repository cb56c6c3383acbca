"""A real mosquitto broker for the tests: its own config file, a free port, stop and restart."""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)

needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto is not installed (make test installs it as root)"
)


class Broker:
    """mosquitto on 127.0.0.1:``port``; sessions persist across :meth:`restart`."""

    def __init__(self, directory: Path, port: int, extra_config: tuple[str, ...] = ()) -> None:
        assert MOSQUITTO is not None
        self.directory = directory
        self.port = port
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "\n".join(
                [
                    f"listener {port} 127.0.0.1",
                    "allow_anonymous true",
                    # Persistent sessions survive a restart, so a consumer that was
                    # away gets the QoS 1 messages queued for it meanwhile.
                    "persistence true",
                    f"persistence_location {directory}/",
                    # As root mosquitto would switch to the "mosquitto" user, which may
                    # not write here; as anyone else this line changes nothing.
                    f"user {getpass.getuser()}",
                    "max_queued_messages 0",
                    "max_inflight_messages 0",
                    "log_type error",
                    "log_type warning",
                    *extra_config,
                    "",
                ]
            ),
            encoding="utf-8",
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        assert MOSQUITTO is not None and not self.running
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: mosquitto writes its persistence file and exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: no persistence written, every connection reset (a crashed broker)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
