"""Workloads: unique row ids that name their ship, realistic content, deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

from scenarios.workloads import MENU, WORKLOADS, first_row_id, guest_spending, rows_due, ship_number_of


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_each_workload_makes_rows_with_the_ids_it_was_given(name):
    ids = np.arange(first_row_id(2), first_row_id(2) + 500, dtype=np.int64)
    table = WORKLOADS[name].generate(np.random.default_rng(1), ids, 1_700_000_000_000, 60_000)
    assert table.num_rows == 500 and table.column("row_id").to_pylist() == ids.tolist()
    assert (ship_number_of(table.column("row_id").to_numpy()) == 2).all()
    ts = table.column("ts").cast("int64").to_numpy()
    assert ts.min() >= 1_700_000_000_000 and ts.max() < 1_700_000_060_000


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_a_seed_gives_the_same_rows(name):
    ids = np.arange(100, dtype=np.int64)
    make = lambda: WORKLOADS[name].generate(np.random.default_rng(9), ids, 0, 1000)  # noqa: E731
    assert make().equals(make())


def test_point_of_sale_sells_from_the_menu_and_the_promotion_sells_badly():
    ids = np.arange(20_000, dtype=np.int64)
    table = WORKLOADS["point_of_sale"].generate(np.random.default_rng(3), ids, 0, 1000)
    menu = {(venue, item, price) for venue, items in MENU.items() for item, _, price in items}
    seen = set(zip(*(table.column(c).to_pylist() for c in ("venue", "item", "unit_price")), strict=True))
    assert seen <= menu and len({v for v, _, _ in seen}) == len(MENU)
    sold = {item: pc.sum(pc.filter(table.column("quantity"), pc.equal(table.column("item"), item))).as_py()
            for item in ("Sunset Spritz offer", "Frozen Margarita")}
    assert sold["Sunset Spritz offer"] < sold["Frozen Margarita"] / 3


def test_ships_never_share_ids():
    assert first_row_id(1) - first_row_id(0) >= 10**12
    assert ship_number_of(np.array([first_row_id(0), first_row_id(19) + 5])).tolist() == [0, 19]


def test_sales_follow_the_guests_day_and_drop_in_port():
    assert guest_spending(21, False) > 3 * guest_spending(4, False)
    assert guest_spending(13, True) < guest_spending(13, False) / 2


def test_rare_tables_write_now_and_then():
    rng = np.random.default_rng(0)
    counts = [rows_due(rng, 0.5, 1.0, 0.5) for _ in range(2000)]
    assert 0.2 < np.mean(counts) < 0.3 and counts.count(0) > 1000
