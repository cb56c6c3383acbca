"""Where samples come from: the PLC sources, the line simulator, recorded traces."""
