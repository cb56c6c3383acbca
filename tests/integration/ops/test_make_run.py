"""`make run` as a newcomer meets it: an empty HOME, a terminal, Ctrl-C.

The test owns a pseudo-terminal and makes it the controlling terminal of a new
session running `make run`, so Ctrl-C (``\\x03`` typed on it) is turned into
SIGINT by the terminal itself, for whatever the foreground process group is, as
on a real console. The demo config is used as shipped but for its ports (free
ones, so nothing else on the machine is disturbed) and its state directory.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "config" / "demo-line.toml"

pytestmark = pytest.mark.integration


def _demo_with_free_ports(tmp_path: Path, free_port: Callable[[], int]) -> Path:
    text = DEMO.read_text(encoding="utf-8")
    for port in ("5020", "4840", "9712", "9713", "1883"):
        text, count = re.subn(rf"\b{port}\b", str(free_port()), text)
        assert count, f"port {port} is no longer in the demo config"
    text += f'\n[storage]\nstate_dir = "{tmp_path / "state"}"\n'
    config = tmp_path / "demo.toml"
    config.write_text(text, encoding="utf-8")
    return config


def _on_the_terminal() -> None:
    # The child leads a new session (start_new_session); its stdin is the pty's
    # slave side: make it the controlling terminal, as a login would.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_until(master: int, pattern: bytes, seen: bytearray, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pattern not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([master], [], [], left)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the slave side closed: everything has exited
                return pattern in seen
            if not chunk:
                return pattern in seen
            seen.extend(chunk)
    return True


def test_make_run_reaches_ready_and_ctrl_c_exits_0(
    tmp_path: Path, free_port_factory: Callable[[], int]
) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    config = _demo_with_free_ports(tmp_path, free_port_factory)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "xterm",
    }
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [make, "--no-print-directory", "-C", str(REPO), "run", f"CONFIG={config}"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        preexec_fn=_on_the_terminal,  # noqa: PLW1509 - only an ioctl, before exec
    )
    os.close(slave)
    seen = bytearray()
    try:
        assert _read_until(master, b" ready: line DEMO/packaging/line1", seen, 90), seen.decode(
            errors="replace"
        )
        # The banner names the line display's page with the other endpoints.
        assert _read_until(master, b"  display     http://127.0.0.1:", seen, 10), seen.decode(
            errors="replace"
        )
        os.write(master, b"\x03")  # Ctrl-C
        status = proc.wait(timeout=60)
        _read_until(master, b"stopped cleanly", seen, 5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        os.close(master)
    output = seen.decode(errors="replace")
    assert "stopped cleanly" in output, output
    assert "Interrupt" not in output, output  # make did not die of the signal
    assert status == 0, output
    assert not any(home.iterdir()), f"make run wrote into HOME: {list(home.iterdir())}"
