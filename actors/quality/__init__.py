"""Quality stations: parameters, the pure station core (inspections, dispositions,
SPC, alarms) and the QualityStationActor. See :mod:`actors.quality.core` and
docs/orders-and-quality.md.
"""

from actors.quality.core import Alarm, QualityStationCore, StationStatus
from actors.quality.params import CharacteristicParams, Disposition, StationParams

__all__ = [
    "Alarm",
    "CharacteristicParams",
    "Disposition",
    "QualityStationCore",
    "StationParams",
    "StationStatus",
]
