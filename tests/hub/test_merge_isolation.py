"""One segment cannot stall the merger (G7, issue 12 item 5), against a real ``harbour hub run``: hand-made
segments that an unmodified edge would never seal -- a ``_site`` that is not text, duplicate struct
fields, an out-of-range date64, invalid UTF-8, a timestamp[s] of 10^13, a 60-deep struct -- are each
quarantined with the reason, while the good segments of other sites, in the same table and in the table
after it, merge in the same rounds; afterwards ``SELECT *`` works for every site and /healthz is ok."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest

from .conftest import harbour, make_segment, rows_table

pytestmark = pytest.mark.integration

TWICE = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
BAD_SEGMENTS = {  # site: (its segment's columns from the hostile values, what the quarantine reason says)
    "site-struct": (lambda h: {"_site": pa.array([{"name": "site-struct"}])}, "'_site' is struct"),
    "site-list": (lambda h: {"_site": pa.array([["site-list"]])}, "'_site' is list"),
    "site-binary": (lambda h: {"_site": pa.array([b"\xffsite"], pa.binary())}, "'_site' is binary"),
    "dup-fields": (lambda h: {"s": TWICE}, "struct field 's.a' appears twice"),
    "far-date": (lambda h: {"d": pa.array([4_000_000 * 86_400_000], pa.date64())}, "outside what Harbour stores"),
    "bad-text": (lambda h: {"note": h.invalid_utf8}, "not valid UTF-8"),
    "far-time": (lambda h: {"t": pa.array([10**13], pa.timestamp("s"))},  # Parquet has no seconds: ms
                 "column 't' holds the timestamp[ms] value 10000000000000000, outside"),
    "deep": (lambda h: {"deep": h.deep_struct(60)}, "nested more than 32 levels"),
}


def quarantine_reasons(hub) -> dict[str, str]:
    report = json.loads(harbour("hub", "status", "--data", str(hub.data), "--format", "json").stdout)
    return {site["site"]: q["reason"] for site in report["sites"] for q in site["quarantined"]}


@pytest.mark.guarantee("G7")
def test_bad_segments_are_quarantined_and_every_other_site_keeps_merging(hub, hostile):
    sites = [*BAD_SEGMENTS, "good-a", "good-b"]
    tokens = {site: hub.add_site(site) for site in sites}
    uploaded = {}
    for site, (columns, _) in BAD_SEGMENTS.items():
        uploaded[site] = make_segment(site, "telemetry", 1, pa.table({"row_id": [1], **columns(hostile)}))
        assert hub.upload(tokens[site], uploaded[site]).committed, site
    hub.upload(tokens["good-a"], make_segment("good-a", "telemetry", 1, rows_table(0, 5)))
    hub.upload(tokens["good-b"], make_segment("good-b", "zulu", 1, rows_table(0, 3)))
    hub.wait_merged(5, "telemetry")
    hub.wait_merged(3, "zulu")
    deadline = time.monotonic() + 30
    while len(reasons := quarantine_reasons(hub)) < len(BAD_SEGMENTS) and time.monotonic() < deadline:
        time.sleep(0.3)
    for site, (_, fragment) in BAD_SEGMENTS.items():
        assert fragment in reasons.get(site, ""), (site, reasons.get(site), hub.log()[-2000:])
    assert "good-a" not in reasons and "good-b" not in reasons
    rows = hub.query("SELECT * FROM telemetry")  # one invalid string merged would make this fail for all
    assert {row["_site"] for row in rows} == {"good-a"} and len(rows) == 5
    assert hub.request("GET", "/healthz").status == 200
    # later segments of the same sites still merge: nothing is stuck behind the quarantined ones
    later = make_segment("far-time", "telemetry", 2, rows_table(100, 2), prev=uploaded["far-time"])
    hub.upload(tokens["far-time"], later)
    hub.wait_merged(7, "telemetry")
