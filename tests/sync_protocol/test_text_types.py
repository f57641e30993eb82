"""Text in CSV and JSON Lines: one rule for dates and timestamps (UTC), whatever the format."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.table_types import DATE, TIMESTAMP
from sync_protocol.text_types import as_text_type, guessed_temporal, infer_columns, infer_text

UTC = dt.UTC


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-12-01T10:00:00Z", dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("2026-12-01T10:00:00", dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),  # zone-less: taken as UTC
    ("2026-12-01 10:00", dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("2026-12-01T10:00:00.5Z", dt.datetime(2026, 12, 1, 10, 0, 0, 500000, tzinfo=UTC)),
    ("2026-12-01T10:00:00.123456789Z", dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2026-12-01T12:00:00+02:00", dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("2026-12-01T12:00:00+0200", dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("2026-12-01T05:30:00-04:30", dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),
])
def test_iso_timestamps_are_utc_microseconds(text, moment):
    inferred = infer_text(pa.array([text, None]))
    assert inferred.type == TIMESTAMP and inferred.to_pylist() == [moment, None]


def test_dates_alone_are_dates_and_with_timestamps_midnight_utc():
    assert infer_text(pa.array(["2026-12-01", None])).type == DATE
    mixed = infer_text(pa.array(["2026-12-01", "2026-12-01T10:00:00Z"]))
    assert mixed.to_pylist() == [dt.datetime(2026, 12, 1, tzinfo=UTC), dt.datetime(2026, 12, 1, 10, tzinfo=UTC)]


@pytest.mark.parametrize("values", [["10:00:00"], ["2026-02-30"], ["2026-12-01", "soon"], ["20261201"],
                                    ["2026-12-01t10:00:00z"], [None, None]])
def test_anything_else_stays_text(values):
    assert infer_text(pa.array(values, pa.string())).type == pa.string()


def test_nested_text_is_typed_by_the_same_rule():
    table = pa.table({"s": pa.array([{"at": "2026-12-01T10:00:00Z", "days": ["2026-12-01"], "note": "x"}, None])})
    inferred = infer_columns(table)
    assert inferred.schema.field("s").type == pa.struct(
        [("at", TIMESTAMP), ("days", pa.list_(DATE)), ("note", pa.string())])
    assert inferred.column("s").to_pylist()[1] is None


def test_guessed_temporal_types_are_read_again_as_text():
    schema = pa.schema([("a", pa.timestamp("s")), ("b", pa.struct([("c", pa.date32())])), ("d", pa.int64())])
    assert guessed_temporal(schema)
    assert as_text_type(schema.field("b").type) == pa.struct([("c", pa.string())])
    assert not guessed_temporal(pa.schema([("d", pa.int64())]))


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
       st.sampled_from(["", "Z", "+00:00", "+05:30", "-11:00"]), st.sampled_from(["T", " "]))
def test_any_iso_text_becomes_the_instant_it_names(moment, zone, separator):
    offset = dt.timedelta(hours=int(zone[:3]), minutes=int(zone[0] + zone[4:])) if len(zone) > 1 else dt.timedelta()
    text = moment.isoformat(sep=separator) + zone
    instant = moment - offset
    inferred = infer_text(pa.array([text]))
    if dt.datetime(1, 1, 1) <= instant <= dt.datetime(9999, 12, 31, 23, 59, 59, 999999):
        assert inferred.to_pylist() == [instant.replace(tzinfo=UTC)]
