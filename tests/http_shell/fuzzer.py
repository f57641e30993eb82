"""A seeded mutator of HTTP requests, made from a server's OpenAPI description (``http_shell.openapi``).

Why not schemathesis: it sends well-formed HTTP through ``requests`` (the damage it does is to values, never to the
request line, header syntax or framing, which is where aiohttp's parser and our header checks broke), brings some
twenty packages and their pins, and makes a few hundred cases a second at best; the soak run needs 100,000
requests on two cores in minutes. This makes each request from an operation of the description -- path, declared
headers, a body of a declared media type, with valid values most of the time -- then damages some of them at
random: a value, a header line, the request line, bytes of the serialised head. Everything comes from one
``random.Random(seed)``; the test prints the seed and ``HARBOUR_TEST_SEED`` replays it.

Requests go one per connection (``Connection: close``), over plain sockets to 127.0.0.1 only, with a
Content-Length never above the body sent (slow and stalled bodies are tested on their own, with their timeouts).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import socket
import string
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

FAKE_TOKEN = "hbs_" + "FuzzSecret" * 4
"""A token-shaped value the fuzzer sends in damaged headers; no log may quote it."""

DAMAGED_TOKEN_BYTES = ("\x01", " ", "\x7f", "é")
TABLES = ("events", "telemetry", "t2")
SITES = ("ship-1", "ship-2")
TEXT = string.ascii_letters + string.digits + "-_./%~"
NASTY = ["", " ", "\t", "0", "-1", "1e9", "9" * 40, "NaN", "null", "\x7f", "é", "\u202e", "a" * 300, "%00", "..",
         "../../etc/passwd", "\\", "'", '"', "<script>", "${x}", "\xff"]


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def serialise(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body


@dataclass
class Tally:
    """What the server answered: counts by status, the 5xx seen (request and answer) and the rows a 200 took."""

    statuses: Counter = field(default_factory=Counter)
    server_errors: list[tuple[bytes, bytes]] = field(default_factory=list)
    no_answer: int = 0
    rows_stored: Counter = field(default_factory=Counter)  # table -> rows the edge said it stored

    def add(self, request: bytes, answer: bytes) -> None:
        while answer.startswith(b"HTTP/1.1 100 "):  # the interim answer to Expect: 100-continue
            answer = answer.split(b"\r\n\r\n", 1)[1]
        if not answer.startswith(b"HTTP/1."):
            self.no_answer += 1
            return
        status = int(answer[9:12])
        self.statuses[status] += 1
        if status >= 500 and status != 507:
            self.server_errors.append((request[:600], answer[:600]))
        if status == 200 and b'"rows"' in answer:
            doc = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            if isinstance(doc, dict) and set(doc) == {"table", "rows"}:  # the edge's answer to a write
                self.rows_stored[doc["table"]] += doc["rows"]

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + self.no_answer


class Fuzzer:
    """Requests for one server: ``document`` its OpenAPI description, ``secrets`` maps a security scheme or header
    name to the valid values it may use (tokens), ``bodies`` media type -> valid example bodies."""

    def __init__(self, document: dict, rng: random.Random, secrets: dict[str, list[str]],
                 bodies: dict[str, list[bytes]]) -> None:
        self.rng = rng
        self.secrets = secrets
        self.bodies = bodies
        self.operations = [(path, method.upper(), operation) for path, item in document["paths"].items()
                           for method, operation in item.items()]
        self.components = document.get("components", {})

    # -- one request -------------------------------------------------------------------------------------

    def request(self) -> tuple[bytes, bool]:
        """The bytes of one request, and whether they were damaged below HTTP (an answer may then never come: the
        server may rightly wait for the rest of a head or body the damage made longer)."""
        rng = self.rng
        if rng.random() < 0.03:
            return self._garbage(), True
        path, method, operation = rng.choice(self.operations)
        if rng.random() < 0.05:
            method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "BREW", "get"])
        request = Request(method, self._path(path, operation), [], b"")
        for parameter in self._parameters(operation):
            if parameter["in"] == "header" and (parameter.get("required") or rng.random() < 0.5):
                request.headers.append((parameter["name"], self._header_value(parameter)))
        self._auth(request, operation)
        self._body(request, operation)
        self._damage_headers(request)
        raw = request.serialise()
        return (self._damage_bytes(raw), True) if rng.random() < 0.08 else (raw, False)

    def _parameters(self, operation: dict) -> list[dict]:
        resolved = []
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:
                parameter = self.components["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
            resolved.append(parameter)
        return resolved

    def _path(self, template: str, operation: dict) -> str:
        rng = self.rng
        values = {"key": lambda: f"{rng.choice(SITES)}.{rng.choice(TABLES)}.{rng.randint(1, 5)}",
                  "site": lambda: rng.choice(SITES), "table": lambda: rng.choice(TABLES),
                  "name": lambda: rng.choice(TABLES), "version": lambda: str(rng.randint(0, 3))}
        path = template
        for name, make in values.items():
            if "{" + name + "}" in path:
                value = make() if rng.random() < 0.8 else self._nasty_text()
                path = path.replace("{" + name + "}", value.replace(" ", "%20").replace("?", "%3F").replace("#", "%23"))
        if rng.random() < 0.03:
            path += rng.choice(["/", "//x", "?a=1&a=2", "%", "%zz", "/.." * 5, ";x", "?" + "q" * 2000])
        return path

    def _nasty_text(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice(NASTY)
        return "".join(rng.choice(TEXT) for _ in range(rng.randint(1, 80)))

    def _header_value(self, parameter: dict) -> str:
        rng = self.rng
        schema = parameter.get("schema", {})
        if parameter["name"] in self.secrets and rng.random() < 0.7:
            return rng.choice(self.secrets[parameter["name"]])
        if rng.random() < 0.3:
            return self._nasty_text()
        if "enum" in schema:
            return str(rng.choice(schema["enum"]))
        if schema.get("type") == "integer":
            return str(rng.choice([0, 1, 7, 100, 4096, 2**20, schema.get("maximum", 2**31), 2**63, -5]))
        if parameter["name"] == "Upload-Metadata":
            return self.secrets["Upload-Metadata"][rng.randrange(len(self.secrets["Upload-Metadata"]))]
        if parameter["name"] == "Upload-Checksum":
            digest = base64.b64encode(rng.randbytes(rng.choice([20, 32]))).decode()
            return f"{rng.choice(['sha1', 'sha256', 'md5', ''])} {digest}"
        return self._nasty_text()

    def _auth(self, request: Request, operation: dict) -> None:
        rng = self.rng
        security = operation.get("security")
        tokens = self.secrets.get("bearer", [])
        if not tokens or (security == [] and rng.random() < 0.9):
            return
        token = rng.choice(tokens) if rng.random() < 0.7 else FAKE_TOKEN
        form = rng.random()
        if form < 0.75:
            request.headers.append(("Authorization", f"Bearer {token}"))
        elif form < 0.85:
            request.headers.append(("Authorization", f"Basic {token}"))
        elif form < 0.9:
            request.headers += [("Authorization", f"Bearer {token}")] * 2
        else:
            flaw = rng.choice(DAMAGED_TOKEN_BYTES)
            request.headers.append(("Authorization", f"Bearer {token[:5]}{flaw}{token[5:]}"))

    def _body(self, request: Request, operation: dict) -> None:
        rng = self.rng
        content = (operation.get("requestBody") or {}).get("content", {})
        if not content or rng.random() < 0.05:
            if rng.random() < 0.05:
                request.body = rng.randbytes(rng.randint(1, 300))
            return
        media = rng.choice(sorted(content))
        if rng.random() < 0.1:
            media = rng.choice(["text/plain", "application/json; charset=latin-1", "", "*/*", "multipart/form-data"])
        request.headers.append(("Content-Type", media))
        examples = self.bodies.get(media.split(";")[0]) or [rng.randbytes(rng.randint(0, 2000))]
        body = rng.choice(examples)
        damage = rng.random()
        if damage < 0.15:
            body = body[: rng.randint(0, len(body))]
        elif damage < 0.3 and body:
            flipped = bytearray(body)
            for _ in range(rng.randint(1, 4)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            body = bytes(flipped)
        elif damage < 0.35:
            body = rng.randbytes(rng.randint(0, 4000))
        if rng.random() < 0.03:
            request.headers.append(("Content-Encoding", rng.choice(["gzip", "deflate", "br", "zstd", "x"])))
        request.body = body

    def _damage_headers(self, request: Request) -> None:
        rng = self.rng
        if rng.random() < 0.1 and request.headers:
            name, value = rng.choice(request.headers)
            request.headers.append((name, value if rng.random() < 0.5 else self._nasty_text()))
        if rng.random() < 0.05:
            request.headers.append(("Expect", rng.choice(["100-continue", "100-continué", "nothing", ""])))
        if rng.random() < 0.05:
            request.headers.append((rng.choice(["Transfer-Encoding", "Origin", "Sec-Fetch-Site", "Cookie", "X-\x01"]),
                                    rng.choice(["chunked", "null", "cross-site", f"harbour_session={FAKE_TOKEN}",
                                                "x"])))
        if rng.random() < 0.02:
            request.headers.append(("X-Long", "v" * rng.choice([100, 9000, 20000])))

    def _damage_bytes(self, raw: bytes) -> bytes:
        rng = self.rng
        damaged = bytearray(raw)
        head = raw.find(b"\r\n\r\n")
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(max(min(head, len(damaged)), 1))
            if not damaged:
                break
            choice = rng.random()
            if choice < 0.4:
                damaged[where] ^= 1 << rng.randrange(8)
            elif choice < 0.7:
                damaged[where:where] = rng.choice([b"\r\n", b"\n", b"\x00", b" ", b":", b"\r\n\r\n", b"\xff"])
            else:
                del damaged[where:where + rng.randint(1, 10)]
        if b"\r\n\r\n" not in damaged:
            damaged += b"\r\n\r\n"  # a head that never ends only tests the header deadline, tested on its own
        return bytes(damaged)

    def _garbage(self) -> bytes:
        rng = self.rng
        return rng.choice([rng.randbytes(rng.randint(1, 200)), b"GET / HTTP/9.9\r\n\r\n", b"\r\n\r\n",
                           b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET " + b"/a" * 5000 + b" HTTP/1.1\r\n\r\n",
                           b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                           b"POST /v1/tables/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n"])


ANSWER_SECONDS = 20.0
"""How long an intact request's answer may take (a hub commit fsyncs; two cores are shared)."""
DAMAGED_ANSWER_SECONDS = 1.0
"""How long a damaged request's answer is waited for: a server rightly waiting for more is not held up for."""


def exchange(port: int, raw: bytes, damaged: bool) -> bytes:
    """Send ``raw`` on a new connection to 127.0.0.1:``port`` and read the answer to its close."""
    timeout = DAMAGED_ANSWER_SECONDS if damaged else ANSWER_SECONDS
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS) as connection:
        connection.settimeout(timeout)
        with contextlib.suppress(OSError):  # the server may answer and close before it has read all
            connection.sendall(raw)
        answer = bytearray()
        try:
            while chunk := connection.recv(65536):
                answer += chunk
                if len(answer) > 1 << 20:
                    break
        except (ConnectionResetError, TimeoutError):
            if not damaged and not answer:
                raise
        return bytes(answer)


def run(fuzzer: Fuzzer, port: int, count: int, tally: Tally, threads: int = 12) -> Tally:
    """Send ``count`` of ``fuzzer``'s requests to ``port``, ``threads`` at a time (made in one thread, in order, so
    a seed gives the same requests)."""
    requests = [fuzzer.request() for _ in range(count)]
    with ThreadPoolExecutor(threads) as pool:
        answers = pool.map(lambda request: exchange(port, *request), requests)
        for (raw, _), answer in zip(requests, answers, strict=True):
            tally.add(raw, answer)
    return tally


# -- valid example bodies -----------------------------------------------------------------------------------

def edge_bodies(rng: random.Random) -> dict[str, list[bytes]]:
    rows = pa.table({"id": pa.array([rng.randint(0, 10**6) for _ in range(3)], pa.int64()),
                     "name": ["a", "b", "c"], "value": [0.5, 1.5, None]})
    arrow, parquet = io.BytesIO(), io.BytesIO()
    with ipc.new_stream(arrow, rows.schema) as writer:
        writer.write(rows)
    pq.write_table(rows, parquet)
    return {
        "application/vnd.apache.arrow.stream": [arrow.getvalue()],
        "application/vnd.apache.parquet": [parquet.getvalue()],
        "application/x-ndjson": [b'{"id": 1, "name": "x", "value": 2.5}\n{"id": 2, "name": "y"}\n',
                                 b'{"id": 1, "nested": {"a": [1, 2, {"b": null}]}}\n', b"[" * 5000 + b"\n"],
        "text/csv": [b"id,name,value\n1,x,2.5\n2,y,\n", b"id,name\n1,\xff\xfe\n", b"\n\n"],
        "application/json": [b'{"segments": ["ship-1/events/1"]}', b'{"all": true}', b'{"segments": "x"}', b"[]"],
    }


def hub_bodies(rng: random.Random) -> dict[str, list[bytes]]:
    report = {"backlog_bytes": 10, "pending_segments": 1, "parked_segments": 0, "reported_at": 1.7e9,
              "link": {"state": "good", "rtt_ms": 600, "last_error": None}}
    return {
        "application/offset+octet-stream": [rng.randbytes(n) for n in (0, 1, 100, 5000)],
        "application/json": [json.dumps(report).encode(), b'{"link": {"state": "bad"}}', b"[" * 3000,
                             b'{"backlog_bytes": NaN}'],
        "application/x-www-form-urlencoded": [b"token=" + FAKE_TOKEN.encode(), b"token=", b"a=b&token=%ff"],
    }
