"""How a section is read: its frozen dataclass is the schema, msgspec checks each value.

Annotations say what a key must be (``Annotated[float, Positive]``, a ``Literal``,
a nested dataclass, ``tuple[...]``); :class:`Reader` collects *every* problem
with its key path and refuses unknown keys with a "did you mean" hint. Rules
between keys and sections are hand-written in the section modules.

Why msgspec, not pydantic v2: it imports in ~5 ms and ~1 MB, where pydantic
costs ~50 ms, ~20 ms more to build validators of this size and ~15 MB (the
service must start in 2 s within 150 MB); it validates the frozen stdlib
dataclasses the code already uses; and it encodes the wire too (``edge.wire``).
It stops at the first error, so each value is converted on its own, which also
lets every message say what was expected in the project's words.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from edge.errors import Problem
from edge.secrets import Secret, SecretReader

T = TypeVar("T")


def matches(pattern: str, must: str) -> msgspec.Meta:
    return msgspec.Meta(pattern=pattern, description=f"must be {must}, got {{value!r}}")


def between(low: float, high: float) -> msgspec.Meta:
    return msgspec.Meta(ge=low, le=high)


def at_least_one(message: str) -> msgspec.Meta:
    """For an array: it must not be empty."""
    return msgspec.Meta(min_length=1, description=message)


Positive = msgspec.Meta(gt=0)
NonNegative = msgspec.Meta(ge=0)
NonEmpty = msgspec.Meta(pattern=r"\S", description="must not be empty")
Port = msgspec.Meta(ge=0, le=65535, description="must be a TCP port 0..65535, got {value}")
# Ids end up in OPC UA NodeIds (dot-separated), MQTT topics (slash-separated,
# + and # are wildcards) and Prometheus labels: keep them to a safe alphabet.
Identifier = matches(
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
    "1-64 characters of letters, digits, '_' or '-', starting with a letter or digit "
    "(it becomes part of OPC UA NodeIds and MQTT topics)",
)
# A key the user must give although its entry is still read without it (as None),
# so that the rules between entries (a station's machine exists) still run.
REQUIRED = "required"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """A rule msgspec cannot state: ``test(value)`` returns a problem message or None."""

    test: Callable[[Any], str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Unique:
    """For an array: each item at most once; ``message`` formats the repeated item."""

    message: str


def one_of(*choices: object) -> Check:
    listed = ", ".join(repr(c) for c in choices)
    return Check(
        lambda value: None if value in choices else f"must be one of {listed}, got {value!r}"
    )


_INVALID: Any = object()
_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    Path: "a string",
}
_NAMES |= {list: "an array", tuple: "an array", frozenset: "an array", dict: "a table"}
_NAMES |= {Secret: "a secret"}


def kind(value: object) -> str:
    return _NAMES.get(type(value), type(value).__name__)


def _kind_name(base: Any) -> str:
    base = typing.get_origin(base) or base
    return _NAMES.get(base) or ("a table" if dataclasses.is_dataclass(base) else str(base))


def _unwrap(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """``hint`` without ``| None`` and ``Annotated``: (the base type, its metadata)."""
    if typing.get_origin(hint) in (typing.Union, type(int | None)):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is Annotated:
        return hint.__origin__, hint.__metadata__
    return hint, ()


def _explain(base: Any, metadata: tuple[Any, ...], value: Any) -> str:
    """What was wrong with ``value``, in the project's words (msgspec's are terse)."""
    choices = typing.get_args(base) if typing.get_origin(base) is Literal else None
    if isinstance(base, type) and issubclass(base, Enum):
        choices = tuple(member.value for member in base)
    if choices is not None:
        return f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
    if isinstance(value, bool) and base is not bool:
        return f"must be {_kind_name(base)}, got a boolean"
    if not isinstance(value, (float, int) if base is float else base):
        return f"must be {_kind_name(base)}, got {kind(value)} {value!r}"
    meta = next((m for m in metadata if isinstance(m, msgspec.Meta)), msgspec.Meta())
    if meta.description:
        return meta.description.format(value=value)
    if meta.gt is not None:
        return f"must be > {meta.gt:g}, got {value:g}"
    if meta.le is not None:
        return f"must be between {meta.ge:g} and {meta.le:g}, got {value:g}"
    return (
        f"is not valid: {value!r}" if meta.ge is None else f"must be >= {meta.ge:g}, got {value:g}"
    )


@functools.cache
def schema_of(cls: Any) -> dict[str, tuple[Any, bool]]:
    """A section's keys: name -> (type hint, required)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    missing = dataclasses.MISSING
    fields = dataclasses.fields(cls)
    return {f.name: (hints[f.name], f.default is f.default_factory is missing) for f in fields}


def fields_of(section: Any) -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Reader:
    """Reads sections of one TOML document, collecting problems instead of stopping."""

    def __init__(self, base_dir: Path, secrets: SecretReader) -> None:
        self.problems: list[Problem] = []
        self.base_dir = base_dir
        self.secrets = secrets
        self._read_secrets = True

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def known_keys(self, table: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
                listed = ", ".join(sorted(allowed))
                self.problem(join(path, key), f"unknown key{suffix}; expected one of: {listed}")

    def table(self, doc: Mapping[str, Any], key: str, path: str = "") -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            self.problem(join(path, key), f"must be a table, got {kind(value)}")
            return {}
        return value

    def entries(self, doc: Mapping[str, Any], key: str, path: str = "") -> list[dict[str, Any]]:
        """An array of tables (``[[key]]``); a non-table entry is reported and read as ``{}``."""
        value, where = doc.get(key, []), join(path, key)
        if not isinstance(value, list):
            self.problem(where, f"must be an array of tables ([[{where}]]), got {kind(value)}")
            return []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                self.problem(f"{where}[{index}]", f"must be a table, got {kind(item)}")
        return [item if isinstance(item, dict) else {} for item in value]

    def section(
        self, cls: type[T], raw: Mapping[str, Any], path: str, *, read_secrets: bool = True
    ) -> T | None:
        """``raw`` as a ``cls``; an invalid key is reported and takes its default.

        None when a required key is missing or invalid. Secrets are checked for
        their shape always, but read only with ``read_secrets`` (an enabled section).
        """
        self._read_secrets = read_secrets
        try:
            return self._build(cls, raw, path)  # type: ignore[no-any-return]
        finally:
            self._read_secrets = True

    def _build(self, cls: Any, raw: Mapping[str, Any], path: str) -> Any:
        schema = schema_of(cls)
        self.known_keys(raw, path, set(schema))
        values: dict[str, Any] = {}
        for key, (hint, required) in schema.items():
            value = self.value(hint, raw[key], join(path, key)) if key in raw else _INVALID
            if value is not _INVALID:
                values[key] = value
            elif key not in raw and (required or REQUIRED in _unwrap(hint)[1]):
                base = _unwrap(hint)[0]
                expected = _kind_name(base) if base is Secret else f"expected {_kind_name(base)}"
                self.problem(join(path, key), f"missing required key ({expected})")
        complete = all(key in values for key, (_, required) in schema.items() if required)
        return cls(**values) if complete else None

    def value(self, hint: Any, raw: Any, path: str) -> Any:
        """One value converted to ``hint``, or ``_INVALID`` (the problem is reported)."""
        base, metadata = _unwrap(hint)
        origin = typing.get_origin(base)
        if base is Secret:
            return self._secret(raw, path, NonEmpty in metadata)
        if dataclasses.is_dataclass(base):
            if not isinstance(raw, dict):
                self.problem(path, f"must be a table, got {kind(raw)}")
                return _INVALID
            section = self._build(base, raw, path)
            return _INVALID if section is None else section
        if origin in (tuple, frozenset, list):
            return self._array(origin, typing.get_args(base)[0], metadata, raw, path)
        if base is Path:
            if not isinstance(raw, str) or not raw.strip():
                self.problem(path, _explain(str, (NonEmpty,), raw))
                return _INVALID
            value: Any = Path(raw).expanduser()
            return value if value.is_absolute() else self.base_dir / value
        try:
            value = msgspec.convert(raw, hint)
        except msgspec.ValidationError:
            self.problem(path, _explain(base, metadata, raw))
            return _INVALID
        for rule in metadata:
            message = rule.test(value) if isinstance(rule, Check) else None
            if message:
                self.problem(path, message)
                return _INVALID
        return value

    def _array(self, origin: Any, item: Any, metadata: tuple[Any, ...], raw: Any, path: str) -> Any:
        if not isinstance(raw, list):
            tables = dataclasses.is_dataclass(item) or typing.get_origin(item) is dict
            what = f"an array of tables ([[{path}]])" if tables else "an array"
            self.problem(path, f"must be {what}, got {kind(raw)}")
            return _INVALID
        items = [self.value(item, entry, f"{path}[{i}]") for i, entry in enumerate(raw)]
        for rule in metadata:
            if isinstance(rule, msgspec.Meta) and len(raw) < (rule.min_length or 0):
                self.problem(path, rule.description or "")
            if not isinstance(rule, Unique):
                continue
            for index, entry in enumerate(raw):
                if entry in raw[:index]:
                    self.problem(f"{path}[{index}]", rule.message.format(entry))
        valid = [entry for entry in items if entry is not _INVALID]
        return origin(valid) if len(valid) == len(items) else _INVALID

    def _secret(self, raw: object, path: str, non_empty: bool) -> Secret | Any:
        try:
            if not self._read_secrets:
                return self.secrets.reference(raw)
            secret = self.secrets.read(raw, path)
        except ValueError as exc:
            # The message names the source (variable, file, credential), never the value.
            self.problem(path, str(exc))
            return _INVALID
        if non_empty and secret.is_read and not secret.reveal():
            self.problem(path, "must not be empty")
            return _INVALID
        return secret
