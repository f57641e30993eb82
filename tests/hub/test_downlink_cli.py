"""``harbour hub publish``, ``datasets`` and ``configure`` as an operator runs them: what they print, and the
clear error (non-zero exit, nothing published) for each kind of bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .conftest import harbour


@pytest.fixture
def data(tmp_path):
    for site in ("ship-1", "ship-2"):
        harbour("hub", "add-site", site, "--data", str(tmp_path / "hub"))
    return tmp_path / "hub"


def csv_file(tmp_path, name="offers.csv", rows=3):
    path = tmp_path / name
    path.write_text("sku,price\n" + "".join(f"s{i},{i}\n" for i in range(rows)))
    return path


def test_publish_prints_the_version_and_datasets_lists_it(data, tmp_path):
    first = harbour("hub", "publish", "offers", str(csv_file(tmp_path)), "--data", str(data))
    assert first.stdout == "1\n" and "published offers version 1 (csv): 3 rows" in first.stderr
    pq.write_table(pa.table({"sku": ["x"], "price": [9.5]}), tmp_path / "offers.parquet")
    second = harbour("hub", "publish", "offers", str(tmp_path / "offers.parquet"), "--data", str(data),
                     "--ships", "ship-2")
    assert second.stdout == "2\n" and "for ship-2" in second.stderr
    listing = json.loads(harbour("hub", "datasets", "--data", str(data), "--format", "json").stdout)
    versions = listing["datasets"][0]["versions"]
    assert [(v["version"], v["ships"], v["rows"]) for v in versions] == [(1, "all", 3), (2, ["ship-2"], 1)]
    assert all(len(v["sha256"]) == 64 and v["pruned_at"] is None for v in versions)
    text = harbour("hub", "datasets", "--data", str(data)).stdout
    assert "offers" in text and "ships ship-2" in text and "ships all" in text and "held: no ship" in text
    assert "waiting for: ship-1 (v1), ship-2 (v2)" in text


@pytest.mark.parametrize("args, words", [
    (["offers", "{tmp}/missing.csv"], "is not a file"),
    (["offers", "{tmp}/notes.txt"], "cannot tell what format"),
    (["offers", "{tmp}/corrupt.parquet"], "is not valid parquet"),
    (["offers", "{tmp}/empty.csv"], "is empty"),
    (["Offers", "{tmp}/offers.csv"], "table name 'Offers' is not valid"),
    (["../etc", "{tmp}/offers.csv"], "is not valid"),
    (["offers", "{tmp}/offers.csv", "--ships", "ship-9"], "unknown ship(s): ship-9"),
    (["offers", "{tmp}/offers.csv", "--ships", "Ship 1"], "site id 'Ship 1' is not valid"),
    (["offers", "{tmp}/offers.csv", "--ships", ","], "name at least one ship"),
    (["offers", "{tmp}/offers.csv", "--input-format", "xml"], "'xml' is not one of"),
])
def test_publish_refuses_bad_input_clearly_and_publishes_nothing(data, tmp_path, args, words):
    csv_file(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    (tmp_path / "empty.csv").write_bytes(b"")
    result = harbour("hub", "publish", *[a.format(tmp=tmp_path) for a in args], "--data", str(data), check=False)
    assert result.returncode != 0 and result.stdout == "" and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    listing = json.loads(harbour("hub", "datasets", "--data", str(data), "--format", "json").stdout)
    assert listing == {"datasets": []}
    assert not [p for p in (data / "datasets").rglob("*") if p.is_file()]


def test_publish_needs_an_existing_hub(tmp_path):
    result = harbour("hub", "publish", "offers", str(csv_file(tmp_path)), "--data", str(tmp_path / "typo"),
                     check=False)
    assert result.returncode != 0 and "no hub in" in result.stderr and not (tmp_path / "typo").exists()


def test_configure_prints_what_each_ship_runs_with(data):
    shown = harbour("hub", "configure", "--all", "--set", "metered=yes", "--set", "seal-age=10m",
                    "--data", str(data)).stdout
    assert shown.count("revision 1 (changed)") == 2 and "metered = true    [all ships]" in shown
    shown = harbour("hub", "configure", "ship-1", "--set", "seal-age=1h", "--unset", "metered",
                    "--data", str(data)).stdout
    # ship-1 had no value of its own for metered: unsetting it there changes nothing the ship runs with
    assert "seal-age = 1h    [ship-1]" in shown and "metered = true    [all ships]" in shown
    assert "ship-2" not in shown
    quiet = harbour("hub", "configure", "--all", "--data", str(data)).stdout
    assert "(changed)" not in quiet and "ship-2  revision 1" in quiet and "ship-1  revision 2" in quiet


@pytest.mark.parametrize("args, words", [
    (["ship-1", "--set", "seal-size=lots"], "--set seal-size: 'lots' is not a size"),
    (["ship-1", "--set", "token=abc"], "'token' is not a managed setting; choose from"),
    (["ship-1", "--set", "seal-size"], "is not KEY=VALUE"),
    (["ship-1", "--unset", "data"], "'data': not a managed setting"),
    (["ship-1", "--set", "metered=true", "--unset", "metered"], "metered is both --set and --unset"),
    (["--set", "metered=true"], "name the ships (SITE...) or give --all"),
    (["ship-1", "--all", "--set", "metered=true"], "name the ships (SITE...) or give --all"),
    (["ship-9", "--set", "metered=true"], "unknown ship(s): ship-9"),
    (["Ship_1", "--set", "metered=true"], "site id 'Ship_1' is not valid"),
])
def test_configure_refuses_bad_input_clearly_and_changes_nothing(data, args, words):
    result = harbour("hub", "configure", *args, "--data", str(data), check=False)
    assert result.returncode != 0 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "revision 0" in harbour("hub", "configure", "--all", "--data", str(data)).stdout
