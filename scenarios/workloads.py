"""What a ship's applications write: engine telemetry, point-of-sale receipts, alarms.

Every row carries a ``row_id`` that is unique across the fleet and never reused, so that the checker can
say of each row whether it was lost, duplicated or never written. The id encodes the ship:
``row_id = (ship_number + 1) * ROW_ID_SHIP_STRIDE + n``.

Generators are deterministic for a seed (a numpy ``Generator`` is passed in) and vectorised, so a flood of
tens of thousands of rows costs milliseconds of the scenario's CPU, not the edge's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

ROW_ID_SHIP_STRIDE = 10**12
"""A trillion ids per ship: no scenario comes near it, and ids stay readable (ship 3 writes 3000000000017)."""


def first_row_id(ship_number: int) -> int:
    return (ship_number + 1) * ROW_ID_SHIP_STRIDE


def ship_number_of(row_ids: np.ndarray) -> np.ndarray:
    return row_ids // ROW_ID_SHIP_STRIDE - 1


SENSORS = (
    ("main-engine-1.exhaust_temp", "degC", 380.0, 25.0), ("main-engine-1.rpm", "rpm", 514.0, 8.0),
    ("main-engine-2.exhaust_temp", "degC", 375.0, 25.0), ("main-engine-2.rpm", "rpm", 512.0, 8.0),
    ("shaft-1.power", "kW", 8200.0, 600.0), ("fuel.flow", "kg/h", 1650.0, 140.0),
    ("hvac.deck-7.temp", "degC", 21.5, 0.6), ("freshwater.tank-3.level", "m3", 412.0, 30.0),
    ("stabiliser.port.angle", "deg", 0.0, 6.0), ("gps.speed_over_ground", "kn", 18.5, 1.2),
)

# Venues and their menus (item, category, price in EUR). "Sunset Spritz offer" is the on-board promotion
# that the analysts' first fleet-wide query finds selling badly.
MENU = {
    "Lido Pool Bar": (("Frozen Margarita", "cocktail", 11.5), ("Draft Lager 0.4l", "beer", 7.9),
                      ("Sunset Spritz offer", "promotion", 6.0), ("Mineral Water", "soft drink", 3.5)),
    "Ocean Grill": (("Ribeye Steak", "main", 34.0), ("Grilled Sea Bass", "main", 29.0),
                    ("Caesar Salad", "starter", 12.0), ("Chocolate Fondant", "dessert", 9.5)),
    "Café Promenade": (("Cappuccino", "coffee", 4.2), ("Espresso", "coffee", 3.1),
                       ("Almond Croissant", "pastry", 3.9), ("Gelato, 2 scoops", "dessert", 4.8)),
    "Horizon Spa": (("Hot Stone Massage 50'", "treatment", 149.0), ("Thermal Suite Day Pass", "pass", 39.0),
                    ("Facial 30'", "treatment", 89.0)),
    "Duty Free Boutique": (("Eau de Parfum 50ml", "fragrance", 78.0), ("Single Malt 70cl", "spirits", 54.0),
                           ("Logo Hoodie", "apparel", 45.0), ("Sunglasses", "accessories", 120.0)),
    "Shore Excursions Desk": (("Old Town Walking Tour", "excursion", 59.0), ("Snorkel Trip", "excursion", 89.0),
                              ("Island Jeep Safari", "excursion", 119.0)),
}
VENUE_WEIGHTS = {"Lido Pool Bar": 0.28, "Ocean Grill": 0.18, "Café Promenade": 0.3, "Horizon Spa": 0.06,
                 "Duty Free Boutique": 0.1, "Shore Excursions Desk": 0.08}
ITEM_POPULARITY = {"Sunset Spritz offer": 0.15}  # relative to 1.0 for every other item

ALARM_SYSTEMS = (("bilge", "high level in bilge well {n}"), ("fire-panel", "smoke detector loop {n} fault"),
                 ("main-engine-1", "lube oil pressure low ({n})"), ("freshwater", "tank {n} below 20%"),
                 ("hvac", "deck {n} supply air temperature high"), ("navigation", "GNSS signal lost on receiver {n}"))
SEVERITIES = ("info", "warning", "critical")


def _timestamps(rng: np.random.Generator, n: int, start_ms: int, span_ms: int) -> pa.Array:
    offsets = np.sort(rng.integers(0, max(1, span_ms), n))
    return pa.array(start_ms + offsets, pa.timestamp("ms", tz="UTC"))


def telemetry(rng: np.random.Generator, ids: np.ndarray, start_ms: int, span_ms: int) -> pa.Table:
    n = len(ids)
    which = rng.integers(0, len(SENSORS), n)
    means = np.array([s[2] for s in SENSORS])[which]
    spreads = np.array([s[3] for s in SENSORS])[which]
    names = np.array([s[0] for s in SENSORS], dtype=object)[which]
    units = np.array([s[1] for s in SENSORS], dtype=object)[which]
    return pa.table({
        "row_id": pa.array(ids, pa.int64()), "ts": _timestamps(rng, n, start_ms, span_ms),
        "sensor": pa.array(names, pa.string()), "value": pa.array(np.round(rng.normal(means, spreads), 3)),
        "unit": pa.array(units, pa.string()),
    })


_ITEMS = [(venue, item, category, price) for venue, items in MENU.items() for item, category, price in items]
_ITEM_WEIGHTS = np.array([VENUE_WEIGHTS[v] / len(MENU[v]) * ITEM_POPULARITY.get(i, 1.0) for v, i, _, _ in _ITEMS])
_ITEM_WEIGHTS /= _ITEM_WEIGHTS.sum()


def point_of_sale(rng: np.random.Generator, ids: np.ndarray, start_ms: int, span_ms: int) -> pa.Table:
    n = len(ids)
    which = rng.choice(len(_ITEMS), n, p=_ITEM_WEIGHTS)
    column = lambda k: np.array([item[k] for item in _ITEMS], dtype=object)[which]  # noqa: E731
    return pa.table({
        "row_id": pa.array(ids, pa.int64()), "ts": _timestamps(rng, n, start_ms, span_ms),
        "venue": pa.array(column(0), pa.string()), "item": pa.array(column(1), pa.string()),
        "category": pa.array(column(2), pa.string()),
        "quantity": pa.array(1 + rng.geometric(0.7, n) - 1, pa.int32()),
        "unit_price": pa.array(np.array([item[3] for item in _ITEMS])[which]),
        "currency": pa.array(["EUR"] * n, pa.string()),
        "cabin": pa.array(rng.integers(2001, 15999, n), pa.int32()),
        "payment": pa.array(np.where(rng.random(n) < 0.85, "cabin-charge", "card").astype(object), pa.string()),
    })


def alarms(rng: np.random.Generator, ids: np.ndarray, start_ms: int, span_ms: int) -> pa.Table:
    n = len(ids)
    which = rng.integers(0, len(ALARM_SYSTEMS), n)
    numbers = rng.integers(1, 12, n)
    severity = np.array(SEVERITIES, dtype=object)[rng.choice(3, n, p=[0.6, 0.3, 0.1])]
    pairs = list(zip(which, numbers, strict=True))
    return pa.table({
        "row_id": pa.array(ids, pa.int64()), "ts": _timestamps(rng, n, start_ms, span_ms),
        "system": pa.array([ALARM_SYSTEMS[w][0] for w in which], pa.string()),
        "severity": pa.array(severity, pa.string()),
        "code": pa.array([f"{ALARM_SYSTEMS[w][0][:3].upper()}-{num:03d}" for w, num in pairs]),
        "message": pa.array([ALARM_SYSTEMS[w][1].format(n=num) for w, num in pairs]),
    })


def steady(hour_of_day: float, in_port: bool) -> float:
    return 1.0


def guest_spending(hour_of_day: float, in_port: bool) -> float:
    """Sales follow the guests: quiet at night, peaks at lunch and in the evening; most guests are
    ashore in port, so sales drop to a third."""
    day = 0.15 + 0.85 * math.exp(-((hour_of_day - 13) / 2.5) ** 2) + 1.1 * math.exp(-((hour_of_day - 21) / 2.0) ** 2)
    return day * (0.35 if in_port else 1.0)


@dataclass(frozen=True)
class Workload:
    name: str
    generate: Callable[[np.random.Generator, np.ndarray, int, int], pa.Table]
    shape: Callable[[float, bool], float]
    description: str


WORKLOADS = {
    "telemetry": Workload("telemetry", telemetry, steady, "engine, hull and hotel sensors, steady"),
    "point_of_sale": Workload("point_of_sale", point_of_sale, guest_spending,
                              "receipts from six venues; follows the guests' day, low in port"),
    "alarms": Workload("alarms", alarms, steady, "rare alarms from ship systems, Poisson arrivals"),
}


def rows_due(rng: np.random.Generator, rate_per_second: float, shape: float, seconds: float) -> int:
    """How many rows arrive in ``seconds``: Poisson, so rare tables (alarms) write now and then."""
    return int(rng.poisson(max(0.0, rate_per_second * shape * seconds)))
