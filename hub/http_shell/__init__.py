"""The HTTP shell both of Harbour's servers (the hub's and the edge's, both aiohttp) share: bounding clients too
slow to send their request (``slow_clients``) and serving each API's OpenAPI description (``openapi``). It holds
I/O glue only (limits and error bodies come from ``sync_protocol``, which may not import aiohttp) and imports
nothing else of the hub: it lives here because the project's top-level layout is fixed, and the edge imports
this one sub-package of ``hub`` (``hub/__init__`` is import-free, so the edge loads nothing more of the hub)."""
