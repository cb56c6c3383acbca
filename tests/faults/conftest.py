"""The integration tests' fixtures (free ports) for the fault tests too."""

from tests.integration.conftest import free_port, free_port_factory

__all__ = ["free_port", "free_port_factory"]
