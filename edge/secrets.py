"""Secrets (passwords, tokens) that must never reach a log line or an error message.

A config value for a secret is one of::

    password = "literal"                      # allowed, discouraged outside the demo
    password = { env = "EDGE_MQTT_PASSWORD" } # from the service's environment
    password = { file = "/etc/edge/mqtt.pw" } # first line of a file (systemd credentials)

The resolved value lives in a :class:`Secret` whose ``repr`` and ``str`` are
masked; only :meth:`Secret.reveal` returns it, at the connector boundary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Secret:
    """A resolved secret. ``origin`` says where it came from, never what it is."""

    _value: str = field(repr=False)
    origin: str = "config"

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return f"Secret(origin={self.origin!r})"


def resolve_secret(raw: object, *, base_dir: Path) -> Secret:
    """Resolve a secret reference; raises ``ValueError`` with a message safe to show."""
    if isinstance(raw, str):
        return Secret(raw, "config")
    if isinstance(raw, dict):
        keys = set(raw)
        if keys == {"env"} and isinstance(raw["env"], str):
            name = raw["env"]
            value = os.environ.get(name)
            if value is None:
                raise ValueError(f"environment variable {name} is not set")
            return Secret(value, f"env:{name}")
        if keys == {"file"} and isinstance(raw["file"], str):
            path = Path(raw["file"])
            if not path.is_absolute():
                path = base_dir / path
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
            lines = text.splitlines()
            return Secret(lines[0] if lines else "", f"file:{path}")
    raise ValueError('expected a string, { env = "NAME" } or { file = "PATH" }')
