"""Batches as an edge sends them (edge.wire), for the store's tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from edge.wire import BatchHeader, batch_id_for, encode_batch, encode_envelope

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

Event = tuple[str, dict[str, Any]]  # (type, data)


def pieces(machine: str, ts: float, count: int = 1, role: str = "total_count") -> Event:
    return (
        "PiecesCounted",
        {"machine_id": machine, "ts": ts, "role": role, "count": count, "order_id": None},
    )


def encode(
    events: Sequence[Event],
    *,
    first: int,
    edge_id: str = "edge-T-L1",
    epoch: str = "e1",
    batch_id: str | None = None,
    historical: bool = False,
) -> bytes:
    last = first + len(events) - 1
    envelopes = [encode_envelope(first + i, t, d) for i, (t, d) in enumerate(events)]
    header = BatchHeader(
        edge_id=edge_id,
        epoch=epoch,
        batch_id=batch_id or batch_id_for(epoch, first, last),
        seq_first=first,
        seq_last=last,
        count=len(events),
        historical=historical,
        sent_at=T0 + last,
    )
    return encode_batch(header, envelopes)


def piece_batches(
    machine: str, total: int, size: int, *, edge_id: str = "edge-T-L1", epoch: str = "e1"
) -> list[bytes]:
    """``total`` single-piece events of one machine in batches of ``size``."""
    out = []
    seq = itertools.count(1)
    for start in range(0, total, size):
        n = min(size, total - start)
        events = [pieces(machine, T0 + start + i) for i in range(n)]
        first = next(seq)
        for _ in range(n - 1):
            next(seq)
        out.append(encode(events, first=first, edge_id=edge_id, epoch=epoch))
    return out


def chunks(items: Sequence[Event], size: int) -> Iterable[tuple[int, Sequence[Event]]]:
    for start in range(0, len(items), size):
        yield start + 1, items[start : start + size]
