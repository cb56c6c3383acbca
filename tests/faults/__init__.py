"""The fault campaign and the live tests of the fault rules (real processes and servers)."""
