"""Headless Chromium for the line display's tests: Debian's /usr/bin/chromium driven by
Playwright (never its own browser downloads), with a fresh profile in the test's temp
folder and nothing in $HOME (the machine's network is closed, so no first-run fetches).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.config import DEFAULT_CONFIG

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or not _PLAYWRIGHT,
    reason="browser tests need Debian's chromium (make test installs it as root: "
    "apt-get install chromium) and the playwright package (pip install -e '.[test]')",
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
)


@asynccontextmanager
async def chromium(directory: Path, *, width: int = 1920, height: int = 1080) -> AsyncIterator[Any]:
    """A browser context (Playwright's ``BrowserContext``) on a fresh profile in ``directory``."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 - only where installed

    profile = directory / "chromium-profile"
    home = directory / "chromium-home"
    profile.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(home),
    }
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=list(FLAGS),
            env=env,
            viewport={"width": width, "height": height},
            timezone_id="UTC",
        )
        try:
            yield context
        finally:
            await context.close()


def demo_line_toml(
    *, sim_port: int, mqtt_port: int, metrics_port: int, web_port: int, state_dir: Path
) -> str:
    """config/demo-line.toml on free ports, with its OPC UA server off and one 24 h shift
    without breaks in place of its calendar (a break would make the test's stops planned
    time, depending on the hour it runs)."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")

    def once(pattern: str, replacement: str) -> None:
        nonlocal text
        text, count = re.subn(pattern, replacement, text, count=1, flags=re.S | re.M)
        assert count == 1, f"demo-line.toml no longer has {pattern!r}"

    once(
        r"^\[calendar\].*?(?=^\[\[plcs\]\])",
        textwrap.dedent(
            """
            [calendar]
            timezone = "UTC"
            [[calendar.shifts]]
            name = "Day"
            start = "00:00"
            end = "00:00"

            """
        ),
    )
    once(r"^port = 5020$", f"port = {sim_port}")  # the PLC
    once(r"^port = 5020$", f"port = {sim_port}")  # the simulator
    once(r'^endpoint = "opc\.tcp://127\.0\.0\.1:4840/edge/"$', "enabled = false")
    once(r"^port = 1883$", f"port = {mqtt_port}\nbatch_max_delay_s = 0.05")
    once(r"^port = 9712$", f"port = {metrics_port}")
    once(r"^port = 9713$", f"port = {web_port}")
    return text + f'\n[storage]\nstate_dir = "{state_dir}"\n'
