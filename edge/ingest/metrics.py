"""The ingest worker's Prometheus metrics (prometheus_client, a registry of its own).

Served on ``/metrics`` beside ``/healthz`` and ``/readyz`` (``edge ingest --metrics``,
default 127.0.0.1:9713). Prefix ``edge_ingest_``, base units, no per-edge labels
(the database has the per-line figures)::

    edge_ingest_batches_total{result}        stored | duplicate (a redelivery: no-op) | dead_letter
    edge_ingest_events_total                 events stored
    edge_ingest_duplicate_events_total       events of a new batch already stored under another id
    edge_ingest_dead_letters_total{cause}    malformed | refused (the database refused the data)
    edge_ingest_store_errors_total           failed attempts to reach/write the database (retried)
    edge_ingest_batch_duration_seconds       decode + transaction, per batch (histogram)
    edge_ingest_lag_seconds                  now - sent_at of the last batch stored
    edge_ingest_inflight_messages            received, not yet acknowledged
    edge_ingest_mqtt_connected, edge_ingest_database_up      0/1
    edge_ingest_seq_gaps{explained}          open gaps in the plant's sequences (from the
    edge_ingest_seq_gap_events{explained}    database, older than the grace period)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["IngestMetrics"]


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.batches = Counter(
            "edge_ingest_batches", "Batches received, by outcome", ["result"], registry=r
        )
        self.events = Counter("edge_ingest_events", "Events stored", registry=r)
        self.duplicate_events = Counter(
            "edge_ingest_duplicate_events",
            "Events of a new batch already stored under another batch id (skipped)",
            registry=r,
        )
        self.dead_letters = Counter(
            "edge_ingest_dead_letters", "Messages stored as dead letters", ["cause"], registry=r
        )
        self.store_errors = Counter(
            "edge_ingest_store_errors",
            "Failed attempts to reach or write the database (the batch is retried)",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "edge_ingest_batch_duration_seconds",
            "Decode and transaction time per batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.lag = Gauge(
            "edge_ingest_lag_seconds", "Now minus sent_at of the last batch stored", registry=r
        )
        self.inflight = Gauge(
            "edge_ingest_inflight_messages", "Messages received, not acknowledged yet", registry=r
        )
        self.mqtt_connected = Gauge(
            "edge_ingest_mqtt_connected", "1 while subscribed to the broker", registry=r
        )
        self.database_up = Gauge(
            "edge_ingest_database_up", "1 while the database answers", registry=r
        )
        self.seq_gaps = Gauge(
            "edge_ingest_seq_gaps",
            "Open gaps in the plant's event sequences older than the grace period",
            ["explained"],
            registry=r,
        )
        self.seq_gap_events = Gauge(
            "edge_ingest_seq_gap_events",
            "Events missing in those gaps",
            ["explained"],
            registry=r,
        )
        for result in ("stored", "duplicate", "dead_letter"):
            self.batches.labels(result)
        for cause in ("malformed", "refused"):
            self.dead_letters.labels(cause)
        for explained in ("true", "false"):
            self.seq_gaps.labels(explained).set(0)
            self.seq_gap_events.labels(explained).set(0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
