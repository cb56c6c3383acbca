"""The mosquitto broker fixture of the MQTT tests, for the browser test's MES subscriber."""

from tests.integration.mqtt.conftest import broker

__all__ = ["broker"]
