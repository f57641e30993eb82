"""What both of Harbour's HTTP servers (the hub's and the edge's, both aiohttp) do the same way at the socket:
bounding clients too slow to send their request, and serving the API's description. The edge and the hub
never import each other; this is the one shell module they share. It holds I/O glue only: the limits and the
error bodies come from ``sync_protocol``."""
