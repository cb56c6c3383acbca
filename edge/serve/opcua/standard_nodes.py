"""asyncua's standard address space from a cache, so the server starts in a third of the time.

Every OPC UA server carries the ~6,200 nodes of the base information model
(OPC 10000-5: the type hierarchy, the Server object, the data types). asyncua
builds them on every start by running generated Python code that creates each
node through its AddNodes service: ~1.1 s of a 2-core line PC and ~50 MB that
stay resident (the nodes, and the code objects of the generated modules), for
nodes a client mostly never reads.

asyncua can instead read them from a ``shelve`` file, lazily: a node is
unpickled the first time it is looked up and kept from then on, so the server
holds only the few hundred it uses (the server starts in ~0.3 s, and a client
that browses the whole model loads the rest on the way). This module keeps that
shelf:

- it is derived data, one per asyncua version (the nodes differ between
  versions), kept in the cache directory (``[storage] cache_dir``, systemd's
  ``$CACHE_DIRECTORY``, else ``<state_dir>/cache``): deleting it costs one slow
  start, nothing else;
- it is built by a separate process (:func:`main`), started by the first
  server that finds none, while that server builds its nodes the slow way:
  the build (~1 s more of pickling) never delays a start, and its memory is
  not the service's; stopping the service stops it;
- it is written into a temporary directory, completed with a marker, and renamed
  into place, so a server never reads a half-written shelf; one that cannot be
  opened is moved aside and built again;
- an installation builds it once, beside the code (``edge prepare``, which
  ``make install-runtime`` runs, like its byte-compilation): a line whose own
  cache directory has none reads that one, so even the first start after an
  install is fast. It is read-only to the service; a damaged one is reported
  and passed over, never moved (it belongs to the installation).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dbm
import importlib.metadata
import logging
import os
import shelve
import shutil
import subprocess
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from asyncua.server.address_space import AddressSpace

from edge.serve.opcua.uaids import ObjectIds, numeric

log = logging.getLogger("edge.opcua_server")

SHELF_NAME = "nodes"  # the shelf's files: nodes.dat/.dir (dbm.dumb), nodes(.db) (gdbm, ndbm)
COMPLETE_NAME = "complete"  # written last: the shelf beside it is whole
# A node every shelf has; reading it proves the shelf opens and unpickles.
_PROBE = numeric(ObjectIds.Server)
BUILDER_POLL_S = 0.5
# Where an installation keeps what `edge prepare` built: beside the interpreter's
# prefix (the virtual environment of `make install-runtime`). A package that puts
# it elsewhere names it here; set empty, no installation cache is read.
INSTALLED_CACHE_ENV = "EDGE_INSTALLED_CACHE_DIR"
# Not ``-m``: the package imports this module before runpy would run it.
BUILDER_COMMAND = f"import sys; from {__name__} import main; sys.exit(main())"


class CacheState(Enum):
    LOADED = "loaded"  # the nodes come from the shelf
    BUILDING = "building"  # no usable shelf: nodes built the slow way, a builder runs
    BUILT = "built"  # the builder finished: the next start loads the shelf
    FAILED = "failed"  # the builder failed (logged): the next start tries again


def _asyncua_version() -> str:
    try:
        return importlib.metadata.version("asyncua")
    except importlib.metadata.PackageNotFoundError:  # a source checkout of asyncua
        return "unknown"


def shelf_dir(cache_dir: Path) -> Path:
    """Where the shelf of the installed asyncua version lives."""
    return cache_dir / f"opcua-standard-nodes-asyncua-{_asyncua_version()}"


def installed_cache_dir() -> Path | None:
    """The installation's cache directory (``edge prepare``), or None when disabled."""
    configured = os.environ.get(INSTALLED_CACHE_ENV)
    if configured is None:
        return Path(sys.prefix) / "var" / "cache" / "edge"
    return Path(configured) if configured else None


def _open_shelf(aspace: AddressSpace, path: Path) -> Exception | None:
    """Point ``aspace`` at the shelf in ``path``; the error when it cannot be read.

    A shelf that opens but does not unpickle leaves ``aspace`` as it was, so the
    slow build that follows does not read through the damaged file.
    """
    before = aspace._nodes
    try:
        aspace.load_aspace_shelf(path / SHELF_NAME)
        aspace[_PROBE]
    except Exception as exc:  # a damaged file: dbm, pickle or OS errors alike
        opened, aspace._nodes = aspace._nodes, before
        if opened is not before:
            with contextlib.suppress(Exception):
                opened.source.close()  # type: ignore[attr-defined]
        return exc
    return None


class StandardNodeCache:
    """Loads asyncua's standard nodes into an address space from the shelf, or says
    it cannot and starts the process that builds one (see the module docstring)."""

    def __init__(self, cache_dir: Path, installed: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.path = shelf_dir(cache_dir)
        self.installed_path = shelf_dir(installed) if installed is not None else None
        self.state = CacheState.BUILDING
        self.loaded_from: Path | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._builder: subprocess.Popen[bytes] | None = None

    def load_into(self, aspace: AddressSpace) -> bool:
        """Point ``aspace`` at the line's shelf, else the installation's; False when
        neither is usable."""
        if self._load_own(aspace) or self._load_installed(aspace):
            self.state = CacheState.LOADED
            return True
        return False

    def _load_installed(self, aspace: AddressSpace) -> bool:
        path = self.installed_path
        if path is None or path == self.path or not (path / COMPLETE_NAME).is_file():
            return False
        if (exc := _open_shelf(aspace, path)) is not None:
            log.warning(
                "the installation's OPC UA standard node cache cannot be read; "
                "run `edge prepare` again (this line builds its own meanwhile)",
                extra={"path": str(path), "error": str(exc)},
            )
            return False
        self.loaded_from = path
        return True

    def _load_own(self, aspace: AddressSpace) -> bool:
        if not (self.path / COMPLETE_NAME).is_file():
            return False
        if (exc := _open_shelf(aspace, self.path)) is not None:
            aside = self.path.with_name(f"{self.path.name}.damaged")
            log.warning(
                "OPC UA standard node cache cannot be read; moved aside and built again",
                extra={"path": str(self.path), "aside": str(aside), "error": str(exc)},
            )
            shutil.rmtree(aside, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.path.rename(aside)
            return False
        self.loaded_from = self.path
        return True

    def start_builder(self) -> None:
        """Build the shelf for the next start, in another process (never awaited by a start).

        The process belongs to the service: stopping the service stops it (what it
        left in its temporary directory goes with the next build).
        """
        if self._watcher is not None:
            return
        log_path = self.cache_dir / "opcua-standard-nodes.log"
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with log_path.open("wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-c", BUILDER_COMMAND, str(self.cache_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=output,
                )
        except OSError as exc:
            self.state = CacheState.FAILED
            log.warning(
                "OPC UA standard node cache: cannot start its builder",
                extra={"path": str(self.path), "error": str(exc)},
            )
            return
        self._builder = process
        self._watcher = asyncio.ensure_future(self._watch(process, log_path))
        self._watcher.set_name("opcua-standard-node-cache")

    async def _watch(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        # Polled: no pipes to await, and no child watcher tied to this loop.
        while (code := process.poll()) is None:  # noqa: ASYNC110
            await asyncio.sleep(BUILDER_POLL_S)
        if code == 0:
            self.state = CacheState.BUILT
            log.info("OPC UA standard node cache built", extra={"path": str(self.path)})
            return
        self.state = CacheState.FAILED
        lines: list[str] = []
        with contextlib.suppress(OSError):
            # A few lines the builder wrote as it died.
            text = log_path.read_text(encoding="utf-8", errors="replace")  # noqa: ASYNC240
            lines = text.strip().splitlines()
        log.warning(
            "OPC UA standard node cache: the builder failed; the next start tries again",
            extra={
                "path": str(self.path),
                "exit": code,
                "error": (lines[-1] if lines else "no message"),
                "log": str(log_path),
            },
        )

    async def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        builder, self._builder = self._builder, None
        if builder is not None and builder.poll() is None:
            builder.kill()
            while builder.poll() is None:  # noqa: ASYNC110 - as in _watch
                await asyncio.sleep(0.01)


def build(cache_dir: Path) -> Path:
    """Build the shelf of the installed asyncua version in ``cache_dir``; its directory.

    The nodes are made exactly as a server makes them (asyncua's own fill of the
    standard address space, nothing of the edge's), before any server-specific
    value is written, as asyncua's own shelf option stores them.
    """
    from asyncua.server.internal_server import InternalServer  # noqa: PLC0415
    from asyncua.server.standard_address_space import standard_address_space  # noqa: PLC0415

    target = shelf_dir(cache_dir)
    if (target / COMPLETE_NAME).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(f"{target.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    work = cache_dir / f"{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        iserver = InternalServer()
        standard_address_space.fill_address_space(iserver.node_mgt_service)  # type: ignore[no-untyped-call]
        iserver.aspace.make_aspace_shelf(work / SHELF_NAME)
        with shelve.open(str(work / SHELF_NAME), "r") as shelf:  # it reads back
            if _PROBE.to_string() not in shelf:
                raise RuntimeError("the built shelf has no Server node")
        (work / COMPLETE_NAME).write_text(f"asyncua {_asyncua_version()}\n", encoding="utf-8")
        try:
            work.rename(target)
        except OSError:
            # Another builder was first (its shelf is as good); ours goes.
            if not (target / COMPLETE_NAME).is_file():
                raise
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def build_and_report(cache_dir: Path) -> int:
    """Build the shelf in ``cache_dir``, print where it is; exit status 0, or 1 with
    the reason on stderr."""
    try:
        print(build(cache_dir))
    except (OSError, RuntimeError, *dbm.error) as exc:
        print(f"cannot build the OPC UA standard node cache in {cache_dir}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edge-opcua-standard-nodes",
        description="Build the cache of asyncua's standard OPC UA nodes in DIR.",
    )
    parser.add_argument("cache_dir", type=Path, metavar="DIR")
    return build_and_report(parser.parse_args(argv).cache_dir)
