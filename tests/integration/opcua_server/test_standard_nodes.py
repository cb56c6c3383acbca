"""The standard node cache: the same nodes as asyncua builds, a first start that
builds it, a damaged one that is replaced (edge.serve.opcua.standard_nodes)."""

from __future__ import annotations

import contextlib
import dataclasses
import shelve
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


def test_a_damaged_cache_is_moved_aside_and_not_used(tmp_path: Path) -> None:
    target = build(tmp_path)
    # Every file of the shelf (dbm.dumb's nodes.dat/.dir, or gdbm's nodes: the dbm
    # module the interpreter has) overwritten with what is no database.
    shelf_files = [p for p in target.iterdir() if p.name.startswith(SHELF_NAME)]
    assert shelf_files
    for path in shelf_files:
        path.write_bytes(b"garbage that is no database\n" * 64)
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
