"""The line config: one TOML file per line, parsed once at start.

:func:`load_config` turns the file into frozen, validated objects or raises one
:class:`~edge.errors.ConfigError` listing *every* problem, each with its key
path and what was expected (``machines[2].ideal_cycle_s: must be > 0, got -1``).
Nothing is started before the whole file is valid. Unknown keys are errors too
(with a "did you mean" hint): a misspelt key silently ignored is a default
nobody chose. One module per section, its frozen dataclass the schema
(:mod:`edge.config.schema`); every key is explained in ``config/example-line.toml``.
"""

from edge.config.line import (
    BUILTIN_PLC_MAPS,
    DEFAULT_CONFIG,
    PROJECT_ROOT,
    LineConfig,
    LineIdentity,
)
from edge.config.loader import load_config, parse_config
from edge.config.logs import LoggingConfig
from edge.config.machines import MachineConfig
from edge.config.metrics import MetricsConfig
from edge.config.mqtt import MQTT_COMMANDS, MqttConfig
from edge.config.opcua import (
    OPCUA_DEFAULT_METHOD_ROLES,
    OPCUA_ROLES,
    OPCUA_SECURITY_MODES,
    OPCUA_SECURITY_POLICIES,
    OpcUaServerConfig,
    OpcUaUser,
)
from edge.config.orders import OrdersConfig
from edge.config.plcs import ModbusPlcConfig, OpcUaPlcConfig, PlcConfig
from edge.config.qmib import QmibConfig
from edge.config.simulator import SimulatorConfig
from edge.config.stations import QualityStationConfig
from edge.config.storage import OutboxConfig, StorageConfig
from edge.config.web import WebConfig
