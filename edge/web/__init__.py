"""The line's HTTP side: the line display (pages, JSON API, live feed), ``/metrics``,
``/healthz`` and ``/readyz``, on aiohttp (edge.web.component says what is served where).
"""

from edge.web.component import WebComponent, component

__all__ = ["WebComponent", "component"]
