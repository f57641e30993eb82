"""The checker catches loss, duplication, rows that were never written and gaps -- proved on fabricated
hub results, since a clean run can only ever show zeros."""

from __future__ import annotations

import numpy as np
import pytest

from scenarios.checker import WriteLog, check
from scenarios.workloads import first_row_id

SHIPS = ["aurora", "borealis"]


def log_with_writes() -> WriteLog:
    log = WriteLog()
    a, b = first_row_id(0), first_row_id(1)
    log.record("aurora", "telemetry", a, 100, "acked", 800)
    log.record("aurora", "telemetry", a + 100, 10, "refused")  # a 507: nothing stored
    log.record("aurora", "telemetry", a + 110, 5, "unknown")  # killed mid-write: may or may not be stored
    log.record("aurora", "telemetry", a + 115, 50, "acked", 400)
    log.record("borealis", "telemetry", b, 30, "acked", 240)
    return log


def hub(*parts: tuple[str, np.ndarray]) -> dict:
    sites = np.concatenate([np.full(len(ids), site, dtype=object) for site, ids in parts])
    return {"telemetry": (sites, np.concatenate([ids for _, ids in parts]).astype(np.int64))}


def exact() -> list[tuple[str, np.ndarray]]:
    a, b = first_row_id(0), first_row_id(1)
    return [("aurora", np.arange(a, a + 100)), ("aurora", np.arange(a + 115, a + 165)),
            ("borealis", np.arange(b, b + 30))]


def counts(result, ship="aurora", table="telemetry"):
    return result.by_ship_table[(ship, table)]


def test_everything_acked_exactly_once_passes():
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*exact()), {})
    assert result.passed
    c = counts(result)
    assert (c.acked, c.refused, c.unknown, c.at_hub, c.lost, c.duplicated, c.unexpected) == (150, 10, 5, 150, 0, 0, 0)


def test_unanswered_writes_may_arrive_once():
    a = first_row_id(0)
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*exact(), ("aurora", np.arange(a + 110, a + 115))), {})
    assert result.passed and counts(result).unknown_stored == 5


def test_a_lost_row_fails_and_is_named():
    parts = exact()
    parts[0] = ("aurora", parts[0][1][:-3])  # the last three rows of the first write never arrived
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*parts), {})
    assert not result.passed
    assert counts(result).lost == 3 and counts(result).examples["lost"] == [first_row_id(0) + 97 + i for i in range(3)]
    assert counts(result, "borealis").lost == 0 and result.totals().lost == 3


def test_a_duplicated_row_fails_also_an_unanswered_one():
    a = first_row_id(0)
    twice = [("aurora", np.array([a + 5, a + 5, a + 111, a + 111]))]
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*exact(), *twice), {})
    assert not result.passed and counts(result).duplicated == 3  # a+5 three times (2 extra), a+111 twice (1)
    assert counts(result).lost == 0


def test_a_refused_write_that_shows_up_is_unexpected():
    a = first_row_id(0)
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*exact(), ("aurora", np.array([a + 100]))), {})
    assert not result.passed and counts(result).unexpected == 1


def test_rows_never_generated_or_filed_under_another_ship_are_unexpected():
    a = first_row_id(0)
    parts = exact()
    parts[2] = ("aurora", parts[2][1])  # borealis's rows arrive labelled as aurora's
    strangers = ("aurora", np.array([a + 10**6, first_row_id(7)]))  # never generated; a ship not in the fleet
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*parts, strangers), {})
    assert counts(result, "borealis").unexpected == 30 and counts(result, "borealis").lost == 0
    assert counts(result).unexpected == 1
    assert counts(result, "(unknown ship)").unexpected == 1
    assert not result.passed


def test_a_missing_table_loses_every_acknowledged_row():
    result = check(log_with_writes(), SHIPS, ["telemetry"], {}, {})
    assert counts(result).lost == 150 and counts(result, "borealis").lost == 30 and not result.passed


@pytest.mark.parametrize("problem", [{"gaps": [[3, 4]]}, {"chain_breaks": [7]}])
def test_gaps_and_chain_breaks_at_the_hub_fail(problem):
    status = {"sites": [{"site": "borealis", "tables": {"telemetry": {"gaps": [], "chain_breaks": [], **problem}},
                         "quarantined": []}]}
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*exact()), status)
    assert not result.passed and counts(result, "borealis").gaps == 1 and result.gap_details


def test_a_quarantined_segment_fails():
    status = {"sites": [{"site": "aurora", "tables": {}, "quarantined": [
        {"table": "telemetry", "seq": 4, "reason": "type conflict"}]}]}
    result = check(log_with_writes(), SHIPS, ["telemetry"], hub(*exact()), status)
    assert not result.passed and "quarantined" in result.gap_details[0]


def test_the_report_form_carries_the_verdict_and_examples():
    parts = exact()
    parts[0] = ("aurora", parts[0][1][1:])
    data = check(log_with_writes(), SHIPS, ["telemetry"], hub(*parts), {}).to_json()
    assert data["passed"] is False and data["totals"]["lost"] == 1
    row = next(r for r in data["by_ship_table"] if r["ship"] == "aurora")
    assert row["examples"] == {"lost": [first_row_id(0)]}


def test_a_write_log_rejects_an_unknown_outcome():
    with pytest.raises(ValueError, match="outcome"):
        WriteLog().record("aurora", "telemetry", 1, 1, "maybe")
