"""Both real servers under requests made from their OpenAPI descriptions and damaged at random (``fuzzer``).

Asserted after each run: no answer 5xx (a client's mistake is 4xx, so that clients do not retry it forever; 507 is
the storage limits' answer and counted apart), both processes alive and healthy, nothing stored that was refused
(the edge holds exactly the rows it answered 200 for; the hub committed no segment, since no fuzzed upload is ever
whole and true), and no token the requests carried in any log line. The seed is printed; ``HARBOUR_TEST_SEED``
replays a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import duckdb
import pytest

from edge_node.query import run_query
from hub.http_shell.openapi import description
from sync_protocol.identifiers import SegmentId
from sync_protocol.limits import GENESIS_DIGEST
from sync_protocol.manifest import Manifest

from . import fuzzer

pytestmark = pytest.mark.integration

DEFAULT_REQUESTS_PER_SERVER = 1_500
SOAK_REQUESTS_PER_SERVER = 50_000
MAX_LOG_BYTES = 1024 * 1024
"""Either server's log after a run, whatever the number of requests: malformed and refused requests are logged
once per kind a minute (``sync_protocol.log_hygiene``), not once each."""


def manifests(rng: random.Random) -> list[str]:
    found = []
    for site in fuzzer.SITES:
        for table in fuzzer.TABLES:
            for seq in (1, 2, 3):
                found.append(Manifest.create(
                    SegmentId.of(site, table, seq), row_count=rng.randint(0, 100), byte_size=rng.choice([1, 100, 5000]),
                    sha256=hashlib.sha256(rng.randbytes(8)).hexdigest(), schema_fingerprint="f" * 64,
                    prev_sha256=GENESIS_DIGEST if seq == 1 else "1" * 64, priority=5, clock=lambda: 1.7e9,
                ).to_upload_metadata())
    return found


def edge_lock_token(edge_data) -> str:
    """The token the running edge keeps in its lock file (written just after it says it listens)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return json.loads((edge_data / "edge.lock").read_text())["token"]
        except (ValueError, KeyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/healthz", timeout=10) as answer:
        return answer.status == 200


def stored_rows(edge_data, table: str) -> int:
    try:
        return run_query(edge_data, f'SELECT COUNT(*) AS n FROM "{table}"').to_pylist()[0]["n"]
    except duckdb.CatalogException:  # never written
        return 0


def committed_segments(hub_data) -> int:
    result = subprocess.run([sys.executable, "-m", "harbour_cli", "hub", "status", "--data", str(hub_data),
                             "--format", "json"], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout)
    return sum(table.get("segments_committed", 0) + table.get("rows_merged", 0)
               for site in report["sites"] for table in site["tables"].values())


def fuzz_both(servers, requests_per_server: int) -> dict[str, fuzzer.Tally]:
    seed = int(os.environ.get("HARBOUR_TEST_SEED", random.SystemRandom().randrange(2**32)))
    print(f"fuzz seed {seed} (replay with HARBOUR_TEST_SEED={seed})")
    rng = random.Random(seed)
    lock_token = edge_lock_token(servers.edge_data)
    hub = fuzzer.Fuzzer(description("hub"), random.Random(rng.random()),
                        {"bearer": [servers.site_token, servers.operator_token], "Tus-Resumable": ["1.0.0"],
                         "Upload-Metadata": manifests(rng)}, fuzzer.hub_bodies(rng))
    edge = fuzzer.Fuzzer(description("edge_node"), random.Random(rng.random()),
                         {"Harbour-Lock-Token": [lock_token]}, fuzzer.edge_bodies(rng))
    tallies = {"hub": fuzzer.Tally(), "edge": fuzzer.Tally()}
    started = time.monotonic()
    with ThreadPoolExecutor(2) as both:  # the two servers at once
        runs = [both.submit(fuzzer.run, hub, urlsplit(servers.hub_url).port, requests_per_server, tallies["hub"]),
                both.submit(fuzzer.run, edge, urlsplit(servers.edge_url).port, requests_per_server, tallies["edge"])]
        for run in runs:
            run.result()
    took = time.monotonic() - started
    for name, tally in tallies.items():
        print(f"{name}: {tally.sent} requests in {took:.0f} s, statuses {dict(sorted(tally.statuses.items()))}, "
              f"no answer {tally.no_answer}")
    assert_nothing_broke(servers, tallies, [servers.site_token, servers.operator_token, lock_token, fuzzer.FAKE_TOKEN],
                         seed)
    return tallies


def assert_nothing_broke(servers, tallies: dict[str, fuzzer.Tally], secrets: list[str], seed: int) -> None:
    for name, tally in tallies.items():
        assert not tally.server_errors, (f"seed {seed}: {len(tally.server_errors)} answers 5xx from the {name}, e.g.",
                                         tally.server_errors[:3])
        assert tally.statuses[200] + tally.statuses[204] + tally.statuses[201] > 0, (name, tally.statuses)
    assert servers.hub.poll() is None and servers.edge.poll() is None
    assert healthy(servers.hub_url) and healthy(servers.edge_url)
    for table in set(fuzzer.TABLES) | set(tallies["edge"].rows_stored):  # a damaged path may name another table
        stored = stored_rows(servers.edge_data, table)
        assert stored == tallies["edge"].rows_stored[table], (seed, table, stored, tallies["edge"].rows_stored)
    assert committed_segments(servers.hub_data) == 0, seed
    for log in (servers.hub_log, servers.edge_log):
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text and secret[:16] not in text, (seed, log.name, secret[:6])
        assert len(text) < MAX_LOG_BYTES, (seed, log.name, len(text), text[-3000:])
        assert "Traceback" not in text, (seed, log.name, text[text.index("Traceback") - 500:][:3000])


@pytest.mark.guarantee("G5", "G6")
def test_fuzzed_requests_get_no_5xx_store_nothing_refused_and_leak_no_token(hub_and_edge):
    fuzz_both(hub_and_edge, DEFAULT_REQUESTS_PER_SERVER)


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.guarantee("G5", "G6")
def test_fuzz_soak_100k_requests(hub_and_edge):
    tallies = fuzz_both(hub_and_edge, SOAK_REQUESTS_PER_SERVER)
    assert sum(tally.sent for tally in tallies.values()) >= 100_000
