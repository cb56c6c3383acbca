"""Secrets (passwords, tokens) that must never reach a log line or an error message.

A config value for a secret is one of::

    password = "literal"                          # allowed, discouraged outside the demo
    password = { env = "EDGE_MQTT_PASSWORD" }     # from the service's environment
    password = { file = "/etc/edge/mqtt.pw" }     # first line of a file
    password = { credential = "mqtt-password" }   # a systemd credential (LoadCredential=)

A credential is the first line of ``$CREDENTIALS_DIRECTORY/<name>``: systemd
copies it there for the unit from ``LoadCredential=mqtt-password:/etc/edge/...``,
readable only by the service, whatever uid ``DynamicUser=`` picked.

Only the secrets of enabled sections are read; the others are checked for their
shape and stay unread (:meth:`Secret.reveal` on one raises). Outside systemd
(``edge check-config`` at a shell) there is no credential directory: a reader
made with ``defer_credentials`` then leaves credentials unread and lists them in
:attr:`SecretReader.deferred` instead of failing.

The resolved value lives in a :class:`Secret` whose ``repr`` and ``str`` are
masked; only :meth:`Secret.reveal` returns it, at the connector boundary.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import EdgeError

_SHAPE = 'expected a string, { env = "NAME" }, { file = "PATH" } or { credential = "NAME" }'
# systemd's rule for credential names: a file name, no '/', not '.' or '..'.
_CREDENTIAL_NAME = re.compile(r"^(?!\.\.?$)[^/\x00]{1,255}$")


class UnreadSecretError(EdgeError):
    """A secret of a disabled section (or a deferred credential) was revealed."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret. ``origin`` says where it came from (``env:NAME``), never what it is."""

    _value: str = field(repr=False)
    origin: str = "config"
    is_read: bool = True

    def reveal(self) -> str:
        if not self.is_read:
            raise UnreadSecretError(f"secret {self.origin} was not read (its section is disabled)")
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return f"Secret(origin={self.origin!r})"


def secret_reference(raw: object) -> Secret:
    """The secret ``raw`` names, unread (a literal is read already); ValueError if malformed."""
    if isinstance(raw, str):
        return Secret(raw, "config")
    if isinstance(raw, dict) and len(raw) == 1:
        ((source, name),) = raw.items()
        if source in ("env", "file", "credential") and isinstance(name, str) and name:
            if source == "credential" and not _CREDENTIAL_NAME.match(name):
                raise ValueError(f"credential name must be a file name, got {name!r}")
            return Secret("", f"{source}:{name}", is_read=False)
    raise ValueError(_SHAPE)


def _first_line(path: Path, what: str) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read {what}: {exc.strerror}") from None
    return lines[0] if lines else ""


@dataclass
class SecretReader:
    """Reads secret references for one config file."""

    base_dir: Path
    # $CREDENTIALS_DIRECTORY when the reader was made; None outside a systemd unit.
    credentials_dir: Path | None = None
    defer_credentials: bool = False
    deferred: list[str] = field(default_factory=list)  # key paths left unread

    @classmethod
    def from_environment(cls, base_dir: Path, *, defer_credentials: bool = False) -> SecretReader:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        return cls(base_dir, Path(directory) if directory else None, defer_credentials)

    def reference(self, raw: object) -> Secret:
        return secret_reference(raw)

    def read(self, raw: object, path: str) -> Secret:
        """The secret ``raw`` names, read; ValueError with a message safe to show."""
        secret = secret_reference(raw)
        source, _, name = secret.origin.partition(":")
        if source == "env":
            value = os.environ.get(name)
            if value is None:
                raise ValueError(f"environment variable {name} is not set")
            return Secret(value, secret.origin)
        if source == "file":
            file = Path(name) if Path(name).is_absolute() else self.base_dir / name
            return Secret(_first_line(file, f"secret file {file}"), f"file:{file}")
        if source == "credential":
            if self.credentials_dir is None and self.defer_credentials:
                self.deferred.append(f"{path} (credential {name})")
                return secret
            if self.credentials_dir is None:
                raise ValueError(
                    f"credential {name} needs $CREDENTIALS_DIRECTORY, which systemd sets for a "
                    f"unit with LoadCredential={name}:<file>; it is not set"
                )
            file = self.credentials_dir / name
            if not file.exists():
                raise ValueError(
                    f"credential {name} is not in $CREDENTIALS_DIRECTORY ({self.credentials_dir}): "
                    f"add LoadCredential={name}:<file> to the unit"
                )
            return Secret(_first_line(file, f"credential {name}"), secret.origin)
        return secret
