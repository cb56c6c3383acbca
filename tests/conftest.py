"""Session setup shared by every test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from edge.serve.opcua.standard_nodes import INSTALLED_CACHE_ENV, build

_OWN_CACHE = "EDGE_TEST_OWN_CACHE"


def pytest_configure(config: pytest.Config) -> None:
    # Every OPC UA server a test starts (in this process or in an `edge run` child)
    # reads asyncua's standard nodes from one cache built here, as a line's service
    # does from its second start on; without it each start would also spawn a
    # builder. tests/integration/opcua_server/test_standard_nodes.py covers the
    # first start, the build and a damaged cache in caches of its own.
    # Hermetic: no test reads the cache `edge prepare` left in the virtual
    # environment; the tests of the installation's cache give theirs explicitly.
    os.environ[INSTALLED_CACHE_ENV] = ""
    if "CACHE_DIRECTORY" not in os.environ:
        os.environ["CACHE_DIRECTORY"] = tempfile.mkdtemp(prefix="edge-test-cache-")
        os.environ[_OWN_CACHE] = os.environ["CACHE_DIRECTORY"]
    build(Path(os.environ["CACHE_DIRECTORY"]))


def pytest_unconfigure(config: pytest.Config) -> None:
    own = os.environ.pop(_OWN_CACHE, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)
        os.environ.pop("CACHE_DIRECTORY", None)
