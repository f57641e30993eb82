"""The HTTP shell both of Harbour's servers (the hub's and the edge's, both aiohttp) share: bounding clients too
slow to send their request (``slow_clients``) and serving each API's OpenAPI description (``openapi``). The edge
and the hub never import each other; this is the one shell package they both use. It holds I/O glue only: limits
and error bodies come from ``sync_protocol``."""
