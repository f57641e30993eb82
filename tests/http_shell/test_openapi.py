"""Each server's OpenAPI description (``http_shell.openapi``) describes every route its app registers, and no
route it does not; both are served at ``GET /openapi.json`` by the real processes."""

from __future__ import annotations

import json
import urllib.request

import pytest
from aiohttp import web

from hub.http_shell.openapi import OPENAPI_PATH, description

METHODS = {"get", "put", "post", "delete", "options", "head", "patch"}


def described(document: dict) -> set[tuple[str, str]]:
    """(method, path) of every operation but a HEAD beside a GET (aiohttp serves those from the GET route)."""
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item
            if method in METHODS and not (method == "head" and "get" in item)}


def registered(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route but the catch-all one (unknown paths: 404/405) and the HEAD aiohttp adds to a
    GET route by itself (same handler)."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical
        if path == "/{path}":
            continue
        if route.method == "HEAD" and any(other.method == "GET" and other.handler is route.handler
                                          for other in route.resource):
            continue
        routes.add((route.method, path))
    return routes


def hub_app() -> web.Application:
    from hub.http_api import build_app

    return build_app(None, None)  # routes only: nothing is served


def edge_app(tmp_path) -> web.Application:
    from edge_node.config import EdgeConfig
    from edge_node.node import EdgeNode
    from edge_node.server import make_app
    from sync_protocol import SiteId

    return make_app(EdgeNode(EdgeConfig(SiteId("ship-1"), tmp_path / "edge"), lambda: 0.0))


@pytest.mark.parametrize("package", ["hub", "edge_node"])
def test_every_route_is_described_and_every_description_is_a_route(package, tmp_path):
    app = hub_app() if package == "hub" else edge_app(tmp_path)
    document = description(package)
    assert document["openapi"].startswith("3.")
    assert described(document) == registered(app)


@pytest.mark.parametrize("package", ["hub", "edge_node"])
def test_every_operation_answers_json_errors_and_every_reference_resolves(package):
    document = description(package)
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = document
        for key in ref.split("/"):
            node = node[key]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (method, path)
            assert all(code.isdigit() for code in operation["responses"]), (method, path)


@pytest.mark.integration
def test_the_real_servers_serve_their_description(hub_and_edge):
    for url, package in ((hub_and_edge.hub_url, "hub"), (hub_and_edge.edge_url, "edge_node")):
        with urllib.request.urlopen(url + OPENAPI_PATH, timeout=10) as answer:
            assert answer.headers["Content-Type"].startswith("application/json")
            assert json.loads(answer.read()) == description(package)
