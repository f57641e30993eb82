"""``GET /openapi.json``: each server's hand-written OpenAPI 3 description, shipped in its package.

Hand-written (``hub/openapi.json``, ``edge_node/openapi.json``) rather than generated from the handlers: the
handlers parse headers and bodies themselves (tus, the manifest, four body formats), so nothing in the code holds
what a generator would need. ``tests/http_shell/test_openapi.py`` keeps each in step with its app's routes, and
the fuzz tests (``tests/http_shell/test_fuzz.py``) make their requests from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

OPENAPI_PATH = "/openapi.json"
OPENAPI_FILES = {"hub": Path(__file__).parents[2] / "hub" / "openapi.json",
                 "edge_node": Path(__file__).parents[2] / "edge_node" / "openapi.json"}
"""Each server's description, in its package (package data, so an installed wheel has them)."""


def description(server: str) -> dict:
    """The OpenAPI document of ``server`` (``hub`` or ``edge_node``)."""
    return json.loads(OPENAPI_FILES[server].read_bytes())


def add_openapi_route(app: web.Application, server: str) -> None:
    """Serve ``server``'s description at ``GET /openapi.json``, read once, when the app is built."""
    body = json.dumps(description(server), indent=1).encode()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get(OPENAPI_PATH, openapi)
