"""The central store's schema: versioned migrations, applied on start.

The migrations are the ``NNNN_name.sql`` files beside this module, applied in
order, each in its own transaction, each recorded in ``plant.schema_migrations``
(version, name, checksum, when). Workers starting together take turns on a
session advisory lock, so a migration runs once. A database that already has a
version this build does not know (a newer ``edge ingest`` ran against it) is
refused: this worker would write into a schema it does not understand. A
migration whose file changed after it was applied is refused too, naming it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from edge.ingest.errors import StoreError

__all__ = ["MIGRATIONS", "Migration", "apply_migrations", "load_migrations"]

log = logging.getLogger("edge.ingest.schema")

# Any constant; one lock for "the plant schema is being migrated".
_MIGRATION_LOCK = 0x6564_6765_5F70_6C61  # "edge_pla"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def load_migrations() -> tuple[Migration, ...]:
    found: list[Migration] = []
    for entry in resources.files("edge.ingest").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"migrations must be numbered 1, 2, 3, ... without gaps: {versions}")
    return tuple(found)


MIGRATIONS = load_migrations()

_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS plant;
CREATE TABLE IF NOT EXISTS plant.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


async def apply_migrations(
    conn: asyncpg.Connection, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[Migration]:
    """Bring the schema up to date; returns the migrations applied now (maybe none)."""
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(_BOOKKEEPING)
        rows = await conn.fetch("SELECT version, name, checksum FROM plant.schema_migrations")
        done = {int(r["version"]): (str(r["name"]), str(r["checksum"])) for r in rows}
        known = {m.version: m for m in migrations}
        newer = sorted(v for v in done if v not in known)
        if newer:
            raise StoreError(
                f"the database has schema version {newer[-1]}, newer than this edge ingest "
                f"knows ({len(migrations)}): upgrade edge ingest"
            )
        for migration in migrations:
            previous = done.get(migration.version)
            if previous is not None:
                if previous[1] != migration.checksum:
                    raise StoreError(
                        f"migration {migration.version:04d}_{migration.name} was changed after "
                        f"it was applied (checksum {previous[1]}, now {migration.checksum})"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO plant.schema_migrations (version, name, checksum) "
                    "VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info(
                "schema migration applied",
                extra={"version": migration.version, "migration": migration.name},
            )
            applied_now.append(migration)
    except asyncpg.PostgresError as exc:
        raise StoreError(f"cannot migrate the schema: {exc}") from exc
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def timescaledb_in_use(conn: asyncpg.Connection) -> bool:
    """True when plant.events is a TimescaleDB hypertable."""
    installed = await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if not installed:
        return False
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = 'plant' AND hypertable_name = 'events'"
        )
    )
