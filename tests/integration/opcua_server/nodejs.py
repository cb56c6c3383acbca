"""Running the independent node-opcua clients of ``node/`` from a test.

The clients are installed into ``node/`` from the committed package-lock.json
(``npm ci``) the first time, with npm's cache in the test's temporary folder;
without node or npm the test is skipped, saying so. A client keeps its PKI in
the directory the test gives it, logs to stderr (kept in a file for the
failure message) and prints only protocol lines on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).parent / "node"
PROTOCOL = (b"SUBSCRIBED", b"RESULT ")


def ensure_installed(scratch: Path) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node-opcua client test needs Node.js and npm (not installed here)")
    if all((NODE_DIR / "node_modules" / p).is_dir() for p in _dependencies()):
        return
    if os.environ.get("EDGE_TEST_OFFLINE"):
        pytest.skip(
            "offline (make test OFFLINE=1) and node-opcua is not installed: run "
            f"`npm ci` in {NODE_DIR} once while the npm registry is reachable"
        )
    command = "ci" if (NODE_DIR / "package-lock.json").is_file() else "install"
    env = {
        **os.environ,
        "npm_config_cache": str(scratch / "npm-cache"),
        "npm_config_update_notifier": "false",
    }
    run = subprocess.run(
        [npm, command, "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, f"npm {command} failed:\n{run.stdout}\n{run.stderr}"


def _dependencies() -> list[str]:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    return list(manifest["dependencies"])


async def protocol_line(stream: asyncio.StreamReader) -> bytes:
    """The client's next protocol line; anything else it prints is skipped."""
    while line := await stream.readline():
        if line.startswith(PROTOCOL):
            return line
    return b""


async def start(script: str, *args: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / script),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )


async def run(script: str, *args: str, log: Path, timeout_s: float = 90.0) -> Any:
    """Run a client to its end; its RESULT document."""
    proc = await start(script, *args, log=log)
    assert proc.stdout is not None
    line = await asyncio.wait_for(protocol_line(proc.stdout), timeout_s)
    await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0 and line.startswith(b"RESULT "), failure(script, line, log)
    return json.loads(line.removeprefix(b"RESULT "))


def failure(script: str, line: bytes, log: Path) -> str:
    return f"node client {script} failed: {line!r}\n{log.read_text()}"
