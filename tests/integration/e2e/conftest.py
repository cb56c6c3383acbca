"""The mosquitto broker fixture of the MQTT tests, for end-to-end tests too."""

from tests.integration.mqtt.conftest import broker

__all__ = ["broker"]
