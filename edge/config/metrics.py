"""``[metrics]``: where Prometheus scrapes ``/metrics`` (and ``/healthz``, ``/readyz``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from edge.config.schema import NonEmpty, Port


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    host: Annotated[str, NonEmpty] = "127.0.0.1"
    # 9712: not taken by the well-known exporters (node 9100, OTel 9464, ...).
    port: Annotated[int, Port] = 9712
