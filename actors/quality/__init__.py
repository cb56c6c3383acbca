"""Quality stations: parameters (:mod:`actors.quality.params`), the pure station core
(:mod:`actors.quality.core`: inspections, dispositions, SPC, alarms), their events
(:mod:`actors.quality.events`) and the QualityStationActor (:mod:`actors.quality.actor`).

Nothing is imported here, so that the config loader can read
:mod:`actors.quality.params` without importing numpy. See docs/orders-and-quality.md.
"""
