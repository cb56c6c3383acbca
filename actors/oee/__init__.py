"""The pure OEE core: counters, machine state, stops, shift calendar, KPIs.

Synchronous, no I/O, no wall clock: everything is driven by sample timestamps,
so replay, tests and live operation compute identical numbers (OEE.md).
"""
