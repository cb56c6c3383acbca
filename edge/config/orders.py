"""``[orders]``: defaults of the order runtime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from edge.config.schema import between


@dataclass(frozen=True, slots=True)
class OrdersConfig:
    # series: good = the last machine's good, rejects summed; parallel: everything summed.
    quantity_rule: Literal["series", "parallel"] = "series"
    # finished orders kept for queries (info and batch record)
    retain_finished: Annotated[int, between(0, 100_000)] = 100
    # scan ids of finished orders kept to spot resends
    max_finished_scans: Annotated[int, between(0, 10_000_000)] = 10_000
