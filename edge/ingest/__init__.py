"""``edge ingest``: the plant's central store (docs/central-store.md).

Every line's MQTT event batches into PostgreSQL, exactly once, scaling out with
an MQTT 5 shared subscription. One module per concern:

- :mod:`edge.ingest.service` — the worker (``IngestService``): subscription,
  pipeline, acknowledgement after the commit, retries, dead letters, HTTP;
- :mod:`edge.ingest.decode` — decoding and checking a batch before the database;
- :mod:`edge.ingest.writer` — one transaction per batch (``StoreWriter``);
- :mod:`edge.ingest.schema` and ``migrations/`` — the versioned schema;
- :mod:`edge.ingest.mqtt` — the MQTT client with manual acknowledgements;
- :mod:`edge.ingest.metrics` — the worker's Prometheus metrics;
- :mod:`edge.ingest.args`, :mod:`edge.ingest.command` — the command line;
- :mod:`edge.ingest.scratch` — a throw-away PostgreSQL cluster (tests, benchmark).

Nothing is imported here: ``edge --help`` stays fast.
"""
