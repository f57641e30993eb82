from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.errors import ErrorCode, RemoteProtocolError
from sync_protocol.identifiers import SegmentId, SiteId, TableName, parse_seq


@pytest.mark.parametrize("good", ["a", "ship-1", "0", "x" * 63, "msc-bellissima"])
def test_good_site_ids(good):
    assert str(SiteId(good)) == good


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("bad", ["", "-ship", "Ship", "ship_1", "x" * 64, "ship 1", "ship/1", "ship.1", "é", None, 7])
def test_bad_site_ids_cannot_exist(bad):
    with pytest.raises(RemoteProtocolError) as caught:
        SiteId(bad)
    assert caught.value.code is ErrorCode.BAD_IDENTIFIER
    assert "site id" in str(caught.value)


@pytest.mark.guarantee("G6")
@pytest.mark.parametrize("bad", ["", "1abc", "Sales", "sales-2", "x" * 64, "sqlite_master", "pg_class", "a b"])
def test_bad_table_names_cannot_exist(bad):
    with pytest.raises(RemoteProtocolError):
        TableName(bad)


@pytest.mark.parametrize("bad", ["0", "-1", "+1", " 1", "1.0", "", "99999999999999999999", "٣", 0, True, None])
def test_bad_seqs_are_rejected(bad):
    with pytest.raises(RemoteProtocolError):
        parse_seq(bad)


def test_upload_key_round_trips_and_orders():
    segment = SegmentId.of("ship-1", "telemetry", 42)
    assert SegmentId.from_upload_key(segment.upload_key) == segment
    assert segment.previous() == SegmentId.of("ship-1", "telemetry", 41)
    assert SegmentId.of("ship-1", "telemetry", 1).previous() is None
    assert SegmentId.of("a", "t", 2) < SegmentId.of("a", "t", 10)


def test_segment_id_refuses_raw_strings():
    with pytest.raises(TypeError):
        SegmentId("ship-1", "telemetry", 1)  # type: ignore[arg-type]


@pytest.mark.guarantee("G6")
@given(st.text(max_size=80))
def test_any_upload_key_either_parses_or_is_a_remote_protocol_error(text):
    try:
        segment = SegmentId.from_upload_key(text)
    except RemoteProtocolError:
        return
    assert segment.upload_key == text
