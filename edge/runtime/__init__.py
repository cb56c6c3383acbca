"""The line service that composes everything, and its systemd side (notify, watchdog, heap)."""
