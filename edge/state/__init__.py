"""The line's state database: state and events in one transaction.

See docs/state-and-recovery.md.
"""
