"""A throw-away PostgreSQL cluster in a temporary directory (tests, ``edge bench``, the plant demo).

``initdb`` a fresh cluster, start ``postgres`` on 127.0.0.1 and a free port with its
unix socket in the same directory, trust authentication for the one superuser
``postgres``, and remove everything on exit::

    with ScratchCluster.start() as cluster:
        dsn = cluster.dsn()          # postgresql://postgres@127.0.0.1:PORT/postgres

The binaries come from ``$EDGE_PG_BINDIR``, else the newest
``/usr/lib/postgresql/<version>/bin`` (Debian's layout), else ``pg_config
--bindir``, else ``initdb`` on ``PATH``; :func:`find_binaries` returns None
when there are none (callers skip, saying so).

PostgreSQL refuses to run as root. As root the cluster runs as ``nobody``
(Popen's ``user``/``group``, no setuid helper needed): its directory is made
in a temporary folder every user may traverse and handed to that user. Nothing
is read from or written to ``$HOME``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from edge.errors import EdgeError

__all__ = [
    "PgBinaries",
    "ScratchCluster",
    "ScratchClusterError",
    "find_binaries",
    "scratch_cluster",
]

SUPERUSER = "postgres"
_UNPRIVILEGED = "nobody"


class ScratchClusterError(EdgeError):
    """The throw-away cluster could not be created or started."""


@dataclass(frozen=True, slots=True)
class PgBinaries:
    bindir: Path

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (0,)


def find_binaries() -> PgBinaries | None:
    """Where ``initdb`` and ``postgres`` are, or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    env = os.environ.get("EDGE_PG_BINDIR")
    if env:
        candidates.append(Path(env))
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates.extend(debian)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return PgBinaries(bindir)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _traversable_by_all(path: Path) -> bool:
    """Every folder from / down to ``path`` lets other users pass (o+x)."""
    for folder in (path, *path.parents):
        try:
            if not folder.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _base_dir() -> Path:
    base = Path(tempfile.gettempdir())
    if os.geteuid() != 0 or _traversable_by_all(base):
        return base
    return Path("/tmp")


class ScratchCluster:
    """One throw-away cluster; :meth:`start` creates and starts it, leaving the block removes it."""

    def __init__(self, binaries: PgBinaries, directory: Path, port: int, *, durable: bool) -> None:
        self.binaries = binaries
        self.directory = directory
        self.data = directory / "data"
        self.socket_dir = directory / "socket"
        self.log = directory / "postgres.log"
        self.port = port
        self.durable = durable
        self._proc: subprocess.Popen[bytes] | None = None
        self._as: pwd.struct_passwd | None = (
            pwd.getpwnam(_UNPRIVILEGED) if os.geteuid() == 0 else None
        )

    @classmethod
    def start(
        cls, binaries: PgBinaries | None = None, *, durable: bool = False, port: int | None = None
    ) -> ScratchCluster:
        """A new cluster, running. ``durable=False`` turns fsync off (tests: faster, and a
        worker killed with -9 does not need the disk to have it; the server is not killed)."""
        found = binaries or find_binaries()
        if found is None:
            raise ScratchClusterError("PostgreSQL is not installed (no initdb found)")
        directory = Path(tempfile.mkdtemp(prefix="edge-pg-", dir=_base_dir()))
        cluster = cls(found, directory, port or _free_port(), durable=durable)
        try:
            cluster._init()
            cluster._launch()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def _uid(self) -> int | None:
        return self._as.pw_uid if self._as is not None else None

    @property
    def _gid(self) -> int | None:
        return self._as.pw_gid if self._as is not None else None

    @property
    def _groups(self) -> list[int] | None:
        return [] if self._as is not None else None

    def _env(self) -> dict[str, str]:
        # Nothing from the caller's HOME or locale: a clean clone in CI has neither.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": "/"}

    def _init(self) -> None:
        self.socket_dir.mkdir()
        if self._as is not None:
            for path in (self.directory, self.socket_dir):
                os.chown(path, self._as.pw_uid, self._as.pw_gid)
        result = subprocess.run(
            [
                str(self.binaries.initdb),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            env=self._env(),
            cwd=self.directory,
            timeout=120,
            check=False,
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
        )
        if result.returncode != 0:
            raise ScratchClusterError(
                f"initdb failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).decode(errors='replace').strip()}"
            )

    def _launch(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "100",
            "shared_buffers": "128MB",
            "logging_collector": "off",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        args = [str(self.binaries.postgres), "-D", str(self.data)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with self.log.open("ab") as log:
            if self._as is not None:
                os.chown(self.log, self._as.pw_uid, self._as.pw_gid)
            self._proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.directory,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ScratchClusterError(
                    f"postgres exited ({self._proc.returncode}): "
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            if self._accepts():
                return
            time.sleep(0.05)
        raise ScratchClusterError("postgres did not start accepting connections within 60 s")

    def _accepts(self) -> bool:
        # The socket file appears once postgres listens; a TCP connect is not enough
        # (the postmaster accepts before recovery ends), so ask pg_isready when there.
        if not any(self.socket_dir.glob(".s.PGSQL.*")):
            return False
        isready = self.binaries.bindir / "pg_isready"
        if not isready.is_file():
            return True
        result = subprocess.run(
            [str(isready), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER],
            env=self._env(),
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: SIGTERM would wait for clients
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def scratch_cluster(*, durable: bool = False) -> Iterator[ScratchCluster]:
    """``with scratch_cluster() as cluster``: :meth:`ScratchCluster.start`, removed after."""
    cluster = ScratchCluster.start(durable=durable)
    try:
        yield cluster
    finally:
        cluster.stop()
