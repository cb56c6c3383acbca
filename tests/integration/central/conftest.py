"""Fixtures: one throw-away PostgreSQL cluster per test session, a fresh database per test.

The cluster is :class:`edge.ingest.scratch.ScratchCluster` (initdb in a temporary
directory, 127.0.0.1 and a free port, run as ``nobody`` when the tests run as
root). Without PostgreSQL the tests that need it are skipped, saying so; ``make
test`` installs it with apt-get when run as root.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from edge.ingest.scratch import ScratchCluster, find_binaries
from tests.integration.mqtt.conftest import _watchdog, broker

__all__ = ["_watchdog", "broker", "database", "pg_cluster"]

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ScratchCluster]:
    if find_binaries() is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb; make test installs the postgresql "
            "package with apt-get as root)"
        )
    with ScratchCluster.start() as cluster:
        yield cluster


@pytest.fixture
async def database(pg_cluster: ScratchCluster) -> AsyncIterator[str]:
    """The DSN of a new, empty database (no schema yet: the code under test migrates it)."""
    name = f"plant_{next(_numbers)}"
    admin = await asyncpg.connect(pg_cluster.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield pg_cluster.dsn(name)
