"""The line's HTTP side: the line display (pages, JSON API, live feed), ``/metrics``,
``/healthz`` and ``/readyz``, on aiohttp (edge.serve.web.component says what is served where).
"""

from edge.serve.web.component import WebComponent, component

__all__ = ["WebComponent", "component"]
