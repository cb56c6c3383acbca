"""Forwarding the line's events to the centre: the streams' consumers (MQTT, QMIB)."""
