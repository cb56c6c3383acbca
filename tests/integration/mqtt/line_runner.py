"""``python -m tests.integration.mqtt.line_runner --config LINE.toml``: a line with the outbox
and MQTT components, for the SIGKILL test while ``edge run`` does not wire them yet.

It behaves as ``edge run`` does: the same ready banner, SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import edge.mqtt
import edge.outbox
from actors import loop as actor_loop
from edge.config import load_config
from edge.logs import configure_logging
from edge.service import LineService

log = logging.getLogger("edge.service")


async def _serve(path: Path) -> int:
    config = load_config(path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with LineService(config, components=[edge.outbox.component, edge.mqtt.component]) as s:
        for line in s.banner():
            log.info(line)
        await stop.wait()
    log.info("stopped cleanly")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    configure_logging("info")
    return actor_loop.run(_serve(args.config))


if __name__ == "__main__":
    raise SystemExit(main())
