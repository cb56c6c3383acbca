"""The standard node cache: the same nodes as asyncua builds, a first start that
builds it, a damaged one that is replaced, the installation's cache that `edge
prepare` builds and every line reads (edge.serve.opcua.standard_nodes)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shelve
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client
from asyncua.server.address_space import AttributeValue
from asyncua.server.internal_server import InternalServer
from asyncua.server.standard_address_space import standard_address_space

from edge.runtime.service import LineService
from edge.serve import opcua as opcua_server
from edge.serve.opcua import OpcUaServer
from edge.serve.opcua.standard_nodes import (
    COMPLETE_NAME,
    INSTALLED_CACHE_ENV,
    SHELF_NAME,
    CacheState,
    StandardNodeCache,
    build,
    shelf_dir,
)
from edge.serve.opcua.uaids import ObjectIds, numeric

from .conftest import endpoint, free_port, make_config, wait_for

pytestmark = pytest.mark.integration


def _attributes(attributes: dict[Any, AttributeValue]) -> dict[Any, Any]:
    return {key: (held.value.Value if held.value else None) for key, held in attributes.items()}


def _references(node: Any) -> list[tuple[Any, ...]]:
    return sorted(
        (str(r.ReferenceTypeId), r.IsForward, str(r.NodeId), str(r.BrowseName), str(r.NodeClass))
        for r in node.references
    )


def test_the_cache_holds_every_standard_node_as_asyncua_builds_it(tmp_path: Path) -> None:
    target = build(tmp_path)
    assert target == shelf_dir(tmp_path)
    assert (target / COMPLETE_NAME).is_file()
    built = InternalServer()
    standard_address_space.fill_address_space(built.node_mgt_service)  # type: ignore[no-untyped-call]
    expected = dict(built.aspace._nodes.items())
    assert len(expected) > 5000  # the whole base model, not a part of it
    with shelve.open(str(target / SHELF_NAME), "r") as shelf:
        assert len(shelf) == len(expected)
        for node_id, node in expected.items():
            cached = shelf[node_id.to_string()]
            assert _attributes(cached.attributes) == _attributes(node.attributes), node_id
            assert _references(cached) == _references(node), node_id
    # Built again: nothing to do, the same directory.
    assert build(tmp_path) == target


@contextlib.asynccontextmanager
async def _line(tmp_path: Path, cache: Path) -> AsyncIterator[tuple[OpcUaServer, int]]:
    port = free_port()
    config = make_config(tmp_path, port)
    config = dataclasses.replace(
        config, storage=dataclasses.replace(config.storage, cache_dir=cache)
    )
    async with LineService(config, components=[opcua_server.component]) as service:
        yield next(c for c in service.components if isinstance(c, OpcUaServer)), port


async def _read_server_state(port: int) -> tuple[int, str]:
    async with Client(endpoint(port), timeout=5) as c:
        state = await c.get_node(numeric(ObjectIds.Server_ServerStatus_State)).read_value()
        types = c.get_node(numeric(ObjectIds.BaseObjectType))
        subtypes = {(await n.read_browse_name()).Name for n in await types.get_children()}
        return int(state), ",".join(sorted(n for n in subtypes if n == "FolderType"))


async def test_a_first_start_builds_the_cache_and_the_next_one_reads_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    async with _line(tmp_path, cache) as (server, port):
        nodes = server._standard_nodes
        assert nodes is not None and nodes.state in (CacheState.BUILDING, CacheState.BUILT)
        assert await _read_server_state(port) == (0, "FolderType")  # Running
        await wait_for(lambda: nodes.state is CacheState.BUILT, within_s=60)
    assert (shelf_dir(cache) / COMPLETE_NAME).is_file()

    async with _line(tmp_path, cache) as (server, port):
        assert server._standard_nodes is not None
        assert server._standard_nodes.state is CacheState.LOADED
        assert await _read_server_state(port) == (0, "FolderType")


def _damage(target: Path) -> None:
    """Every file of the shelf (dbm.dumb's nodes.dat/.dir, or gdbm's nodes: the dbm
    module the interpreter has) overwritten with what is no database."""
    shelf_files = [p for p in target.iterdir() if p.name.startswith(SHELF_NAME)]
    assert shelf_files
    for path in shelf_files:
        path.write_bytes(b"garbage that is no database\n" * 64)


def test_a_damaged_cache_is_moved_aside_and_not_used(tmp_path: Path) -> None:
    target = build(tmp_path)
    _damage(target)
    cache = StandardNodeCache(tmp_path)
    server = InternalServer()
    assert cache.load_into(server.aspace) is False
    assert not target.exists()
    assert (tmp_path / f"{target.name}.damaged").is_dir()
    assert cache.state is CacheState.BUILDING
    # A cache without its completion marker (a build cut short) is not read at all.
    build(tmp_path)
    (shelf_dir(tmp_path) / COMPLETE_NAME).unlink()
    assert StandardNodeCache(tmp_path).load_into(InternalServer().aspace) is False
    assert numeric(ObjectIds.Server) not in InternalServer().aspace._nodes


def _edge_prepare(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "prepare", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def test_edge_prepare_builds_the_installation_cache(tmp_path: Path) -> None:
    done = _edge_prepare("--cache-dir", str(tmp_path / "installed"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(shelf_dir(tmp_path / "installed"))
    assert (shelf_dir(tmp_path / "installed") / COMPLETE_NAME).is_file()
    # Its default directory comes from the environment; empty means none, said so.
    refused = _edge_prepare(**{INSTALLED_CACHE_ENV: ""})
    assert refused.returncode == 2
    assert INSTALLED_CACHE_ENV in refused.stderr and "--cache-dir" in refused.stderr
    # A directory it cannot write: the reason, status 1.
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    failed = _edge_prepare("--cache-dir", str(blocked / "cache"))
    assert failed.returncode == 1
    assert "cannot build the OPC UA standard node cache" in failed.stderr


def test_a_line_without_its_own_cache_reads_the_installations(tmp_path: Path) -> None:
    installed = tmp_path / "installed"
    build(installed)
    own = tmp_path / "line-cache"
    cache = StandardNodeCache(own, installed)
    server = InternalServer()
    assert cache.load_into(server.aspace) is True
    assert cache.state is CacheState.LOADED
    assert cache.loaded_from == shelf_dir(installed)
    assert numeric(ObjectIds.Server) in server.aspace
    assert not own.exists()  # nothing built, nothing written for the line
    # The line's own cache, once it has one, comes first.
    build(own)
    first = StandardNodeCache(own, installed)
    assert first.load_into(InternalServer().aspace) is True
    assert first.loaded_from == shelf_dir(own)


def test_a_damaged_installation_cache_is_passed_over_and_left_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    installed = tmp_path / "installed"
    target = build(installed)
    _damage(target)
    cache = StandardNodeCache(tmp_path / "line-cache", installed)
    server = InternalServer()
    assert cache.load_into(server.aspace) is False
    assert cache.state is CacheState.BUILDING
    assert (target / COMPLETE_NAME).is_file()  # the installation's: not moved, not removed
    assert any("edge prepare" in r.getMessage() for r in caplog.records)
    # The address space is as before the attempt: the slow build fills it normally.
    standard_address_space.fill_address_space(server.node_mgt_service)  # type: ignore[no-untyped-call]
    assert numeric(ObjectIds.Server) in server.aspace._nodes


async def test_a_first_start_after_an_install_reads_the_installation_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "installed"
    build(installed)
    monkeypatch.setenv(INSTALLED_CACHE_ENV, str(installed))
    cache = tmp_path / "cache"
    async with _line(tmp_path, cache) as (server, port):
        nodes = server._standard_nodes
        assert nodes is not None
        assert nodes.state is CacheState.LOADED
        assert nodes.loaded_from == shelf_dir(installed)
        assert await _read_server_state(port) == (0, "FolderType")
    assert not shelf_dir(cache).exists()  # no builder was started
