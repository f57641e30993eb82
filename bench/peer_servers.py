"""The peers' receiving ends, each run in its own process (as a real deployment would run them):

    python bench/peer_servers.py json DIR     # aiohttp: POST /files/NAME, gzip JSON lines body -> DIR/NAME + fsync
    python bench/peer_servers.py flight DIR   # Arrow Flight: do_put stream -> DIR/<n>.arrows (IPC file) + fsync
    python bench/peer_servers.py static DIR   # aiohttp: GET /files/NAME -> DIR/NAME (the downlink's plain-GET peer)

Each prints ``listening PORT`` on stdout once it accepts connections, and runs until SIGTERM.
Both persist what they receive and fsync before answering, as the hub does before its ack, so that a
loopback comparison is between durable receivers.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

READ_BYTES = 1024 * 1024


def serve_json(directory: Path) -> None:
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        name = Path(request.match_info["name"]).name
        path = directory / name
        with open(path, "wb") as file:
            async for block in request.content.iter_chunked(READ_BYTES):
                file.write(block)
            file.flush()
            os.fsync(file.fileno())
        return web.json_response({"stored": name, "bytes": path.stat().st_size}, status=201)

    async def started(app: web.Application) -> None:
        print(f"listening {runner_port()}", flush=True)

    app = web.Application(client_max_size=1024**3)
    app.router.add_post("/files/{name}", receive)
    app.on_startup.append(started)
    sock = _bound_socket()

    def runner_port() -> int:
        return sock.getsockname()[1]

    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


STATIC_HEADER = "X-Bench-File"
"""Every file the static server sends carries this header, so a meter at the link proxy can tell its body bytes
from anything else on the connection (as ``Harbour-Dataset-Version`` marks the hub's dataset downloads)."""


def serve_static(directory: Path) -> None:
    """A plain HTTP GET of a file, the way any web server sends it (aiohttp's FileResponse: sendfile)."""
    from aiohttp import web

    async def send(request: web.Request) -> web.StreamResponse:
        name = Path(request.match_info["name"]).name
        return web.FileResponse(directory / name, headers={STATIC_HEADER: name,
                                                           "Content-Type": "application/octet-stream"})

    sock = _bound_socket()

    async def started(app: web.Application) -> None:
        print(f"listening {sock.getsockname()[1]}", flush=True)

    app = web.Application()
    app.router.add_get("/files/{name}", send)
    app.on_startup.append(started)
    web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)


def serve_flight(directory: Path) -> None:
    import pyarrow as pa
    import pyarrow.flight as flight

    counter = itertools.count(1)

    class Receiver(flight.FlightServerBase):
        def do_put(self, context, descriptor, reader, writer):  # noqa: ARG002 -- Flight's signature
            path = directory / f"{next(counter)}.arrows"
            with open(path, "wb") as file:
                sink = pa.PythonFile(file, mode="w")
                ipc = None
                for chunk in reader:
                    if ipc is None:
                        ipc = pa.ipc.new_file(sink, chunk.data.schema)
                    ipc.write_batch(chunk.data)
                if ipc is not None:
                    ipc.close()
                file.flush()
                os.fsync(file.fileno())

    server = Receiver("grpc://127.0.0.1:0")
    print(f"listening {server.port}", flush=True)
    server.serve()


def _bound_socket():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


if __name__ == "__main__":
    kind, target = sys.argv[1], Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    {"json": serve_json, "flight": serve_flight, "static": serve_static}[kind](target)
