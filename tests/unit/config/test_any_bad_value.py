"""Any key of a full config given a value of the wrong shape: a ConfigError, never a crash."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.config import DEFAULT_CONFIG, parse_config
from edge.errors import ConfigError

EXAMPLE = DEFAULT_CONFIG.parent / "example-line.toml"
# Shapes a TOML value can have that a key does not expect, and a string urlsplit chokes on.
BAD_VALUES: list[Any] = [3, True, "http://[::1", [1], {"a": 1}]


def key_paths(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if path:
        yield path
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        yield from key_paths(child, (*path, key))


def test_every_key_with_any_bad_value_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    user = {"name": "op", "password": "pw", "roles": ["operator"], "pin": "1234"}
    doc["opcua"]["users"] = [user]  # the example leaves its users commented out
    paths = list(key_paths(doc))
    assert len(paths) > 150  # every section of the example is walked
    crashes = []
    for path in paths:
        for bad in BAD_VALUES:
            broken = copy.deepcopy(doc)
            parent = broken
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = bad
            try:
                parse_config(broken, "line.toml", EXAMPLE.parent, defer_credentials=True)
            except ConfigError:
                pass
            except Exception as exc:  # what this test looks for
                crashes.append(f"{path} = {bad!r}: {type(exc).__name__}: {exc}")
    assert not crashes, crashes[:10]
