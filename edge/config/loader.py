"""Reading a line config file: every section, then the rules between them, every problem at once."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from edge.config.calendar import read_calendar
from edge.config.line import BUILTIN_PLC_MAPS, LineConfig, read_line
from edge.config.logs import LoggingConfig
from edge.config.machines import read_machines
from edge.config.metrics import MetricsConfig
from edge.config.mqtt import read_mqtt
from edge.config.opcua import read_opcua
from edge.config.orders import OrdersConfig
from edge.config.plcs import read_plcs
from edge.config.qmib import read_qmib
from edge.config.schema import Reader
from edge.config.simulator import SimulatorConfig
from edge.config.stations import read_stations
from edge.config.storage import read_outbox, read_storage
from edge.config.web import read_web
from edge.errors import ConfigError, Problem
from edge.secrets import SecretReader

_SECTIONS = {"line", "calendar", "machines", "plcs", "simulator", "opcua", "mqtt", "metrics"}
_SECTIONS |= {"qmib", "storage", "outbox", "logging", "plc_map_dirs", "quality_stations", "orders"}
_SECTIONS |= {"web"}


def parse_config(
    doc: dict[str, Any], source: str, base_dir: Path, *, defer_credentials: bool = False
) -> LineConfig:
    """Validate an already-parsed TOML document; raises ConfigError with every problem.

    ``defer_credentials`` (``edge check-config``): without ``$CREDENTIALS_DIRECTORY``,
    systemd credentials are listed in ``unread_secrets`` instead of being problems.
    """
    secrets = SecretReader.from_environment(base_dir, defer_credentials=defer_credentials)
    reader = Reader(base_dir, secrets)
    reader.known_keys(doc, "", _SECTIONS)
    line = read_line(reader, doc)
    calendar = read_calendar(reader, doc)
    extra_dirs = reader.value(tuple[Path, ...], doc.get("plc_map_dirs", []), "plc_map_dirs")
    extra_dirs = extra_dirs if isinstance(extra_dirs, tuple) else ()
    map_dirs = (*extra_dirs, base_dir / "plc_maps", BUILTIN_PLC_MAPS)
    plcs = read_plcs(reader, doc)
    machines = read_machines(reader, doc, plcs, map_dirs)
    storage = read_storage(reader, doc, line.id)
    config = LineConfig(
        source_path=Path(source),
        line=line,
        calendar=calendar,
        machines=tuple(machines.configs),
        plcs=tuple(plcs.by_id.values()),
        simulator=_plain(reader, SimulatorConfig, doc, "simulator"),
        opcua=read_opcua(reader, doc),
        mqtt=read_mqtt(reader, doc),
        metrics=_plain(reader, MetricsConfig, doc, "metrics"),
        web=read_web(reader, doc),
        qmib=read_qmib(reader, doc),
        storage=storage,
        outbox=read_outbox(reader, doc, storage),
        logging=_plain(reader, LoggingConfig, doc, "logging"),
        plc_map_dirs=tuple(dict.fromkeys(map_dirs)),
        quality_stations=read_stations(reader, doc, machines, plcs, map_dirs),
        orders=_plain(reader, OrdersConfig, doc, "orders"),
        unread_secrets=tuple(secrets.deferred),
    )
    if reader.problems:
        raise ConfigError(source, reader.problems)
    return config


def _plain(reader: Reader, cls: Any, doc: dict[str, Any], key: str) -> Any:
    """A section with no rules beyond its keys' (every key has a default)."""
    return reader.section(cls, reader.table(doc, key), key) or cls()


def load_config(path: str | Path, *, defer_credentials: bool = False) -> LineConfig:
    """Read and validate a line config file; raises ConfigError naming every problem."""
    file = Path(path)
    try:
        doc = tomllib.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(str(file), [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), [Problem("", f"not UTF-8 text: {exc.reason}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), [Problem("", f"invalid TOML: {exc}")]) from exc
    return parse_config(doc, str(file), file.resolve().parent, defer_credentials=defer_credentials)
