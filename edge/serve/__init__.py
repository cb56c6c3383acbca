"""Serving the line: its OPC UA server, the line display and JSON API, metrics and health."""
