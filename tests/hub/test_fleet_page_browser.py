"""The fleet page in a real browser (headless Chromium through Selenium), on a real hub fed by three real
edge nodes (`harbour edge run`): ship-a healthy, ship-b with a quarantined segment, ship-c silent.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`tests/browser_setup.sh` installs them). If the browser
cannot start, these tests FAIL: a page nobody could check is not a passing page.

The screenshot goes to test-artifacts/fleet-page.png (gitignored).
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest

from edge_node.client import EdgeClient
from scenarios.supervisor import Supervisor, http_json, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1800")
FAST_SEALING = ("--seal-age", "1s", "--seal-size", "256KiB")
SILENT_FOR_SECONDS = 3 * 3600


def telemetry(first: int, n: int, *, text: bool = False) -> pa.Table:
    values = [f"v{i}" for i in range(n)] if text else [float(i) for i in range(n)]
    return pa.table({"row_id": pa.array(range(first, first + n), pa.int64()), "value": pa.array(values)})


class Fleet:
    def __init__(self, supervisor: Supervisor) -> None:
        self.hub = supervisor.hub().start()
        self.operator = self.hub.add_operator("alice")
        self.tokens = {name: self.hub.add_site(name) for name in ("ship-a", "ship-b", "ship-c")}
        self.edges = {name: supervisor.edge(name, hub_url=self.hub.url, token=token, extra=FAST_SEALING)
                      for name, token in self.tokens.items()}
        for edge in self.edges.values():
            edge.start()

    def sites(self) -> dict[str, dict]:
        status, doc = http_json(self.hub.url + "/v1/fleet", token=self.operator)
        assert status == 200, doc
        return {site["site"]: site for site in doc["sites"]}

    def merged(self, site: str, table: str) -> int:
        t = self.sites()[site]["tables"].get(table)
        return t["rows_merged"] if t else 0

    def write(self, site: str, table: str, rows: pa.Table) -> None:
        EdgeClient(self.edges[site].url).write(table, rows)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with Supervisor(tmp_path_factory.mktemp("fleet")) as supervisor:
        fleet = Fleet(supervisor)
        fleet.write("ship-a", "telemetry", telemetry(0, 1000))
        fleet.write("ship-c", "telemetry", telemetry(0, 300))
        wait_until(lambda: fleet.merged("ship-a", "telemetry") == 1000 and fleet.merged("ship-c", "telemetry") == 300,
                   60, "ship-a and ship-c telemetry merged")
        # ship-b's value column is text where the fleet's table has a float: the hub quarantines it.
        fleet.write("ship-b", "telemetry", telemetry(0, 500, text=True))
        fleet.write("ship-b", "events", telemetry(0, 200))
        wait_until(lambda: fleet.sites()["ship-b"]["quarantined"] and fleet.merged("ship-b", "events") == 200,
                   60, "ship-b's quarantine and events")
        # ship-c goes quiet. A real hub's clock cannot be moved, so its last contact is made three hours old
        # in the hub's database, as if the test had waited that long.
        wait_until(lambda: all(t["pending_rows"] == 0 for t in fleet.edges["ship-c"].status()["tables"]), 30,
                   "ship-c to drain")
        fleet.edges["ship-c"].stop()
        with sqlite3.connect(fleet.hub.data / "hub.db") as db:
            db.execute("UPDATE sites SET last_contact = last_contact - ? WHERE site = 'ship-c'", [SILENT_FOR_SECONDS])
            db.execute("UPDATE site_reports SET received_at = received_at - ? WHERE site = 'ship-c'",
                       [SILENT_FOR_SECONDS])
        # The edges report every 30 s; the first report (at start) cannot know the link yet.
        # (a loopback link measured on a busy machine may read "thin": either means measured and up)
        wait_until(lambda: (fleet.sites()["ship-a"]["backlog"] or {}).get("link_state") in ("good", "thin"), 60,
                   "ship-a's second backlog report")
        yield fleet


@pytest.fixture
def browser(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `sh tests/browser_setup.sh` (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as error:
        pytest.fail(f"Chromium did not start: {error.msg}")
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def log_in(browser, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()


def log_in_to_fleet(browser, url: str, token: str, ships: int = 3) -> None:
    """Log in as an operator and wait for the fleet table: the login posts a form, and on a loaded machine the
    login page is still up for a moment after the click."""
    from selenium.webdriver.common.by import By

    log_in(browser, url, token)
    wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")) == ships, 20,
               f"{ships} ships on the fleet page")


def page_shows(browser, css: str, expected: str, timeout: float = 20) -> None:
    """Wait until the element ``css`` holds ``expected``: after a form post the old page may still be up,
    or its elements go stale under our hands, on a loaded machine."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def shown():
        try:
            return expected in browser.find_element(By.CSS_SELECTOR, css).text
        except WebDriverException:
            return False

    wait_until(shown, timeout, f"{expected!r} in {css}")


def cells(browser, site: str) -> dict[str, str]:
    """The fleet table row of ``site`` as {column heading: visible text}, read in one script call: the
    page's refresh replaces the rows every few seconds, so element by element would race it."""
    headings, values = browser.execute_script(
        "const row = document.querySelector('#fleet-rows tr[data-site=\"' + arguments[0] + '\"]');"
        "return [Array.from(document.querySelectorAll('#fleet thead th'), th => th.innerText.trim()),"
        "        Array.from(row.children, cell => cell.innerText.trim())];", site)
    return dict(zip(headings, values, strict=True))


def steady(read, attempts: int = 5):
    """Run ``read`` again if the page's refresh replaced the elements it was reading (every few seconds)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for attempt in range(attempts):
        try:
            return read()
        except StaleElementReferenceException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def row_order(browser) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#fleet-rows tr'), row => row.dataset.site)")


def test_only_an_operator_token_opens_the_page(fleet, browser):
    from selenium.webdriver.common.by import By

    browser.get(fleet.hub.url + "/")
    assert browser.find_elements(By.ID, "fleet") == []
    label = browser.find_element(By.CSS_SELECTOR, "label[for=token]")
    assert label.text == "Operator token" and browser.find_element(By.ID, "token").get_attribute("type") == "password"

    log_in(browser, fleet.hub.url, fleet.tokens["ship-a"])
    page_shows(browser, "#login-error", "site) token")
    assert browser.find_elements(By.ID, "fleet") == [] and "ship-b" not in browser.page_source

    log_in(browser, fleet.hub.url, "hbo_not-a-real-token")
    page_shows(browser, "#login-error", "not valid")

    log_in_to_fleet(browser, fleet.hub.url, fleet.operator)
    cookie = browser.get_cookie("harbour_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read the session

    browser.find_element(By.CSS_SELECTOR, "header form button").click()  # log out
    # the click posts a form: wait for the login page to replace the fleet (a loaded CI machine is slow)
    wait_until(lambda: browser.find_elements(By.ID, "fleet") == [] and browser.find_elements(By.ID, "token"),
               20, "the login form after logging out")


def test_the_page_shows_the_fleet_as_it_is(fleet, browser):
    from selenium.webdriver.common.by import By

    log_in_to_fleet(browser, fleet.hub.url, fleet.operator)
    sites = fleet.sites()
    a, b, c = cells(browser, "ship-a"), cells(browser, "ship-b"), cells(browser, "ship-c")
    # States in words (with an icon), not by colour alone.
    assert a["State"].startswith("\u2713 OK")
    assert b["State"].startswith("\u26a0 Needs attention") and "1 segment(s) quarantined" in b["State"]
    assert c["State"].startswith("\u2715 Silent") and "no contact for 3 h" in c["State"]
    assert c["Last contact"] == "3 h ago" and a["Last contact"].endswith("s ago")
    reported = sites["ship-a"]["backlog"]
    assert a["Link (reported)"] == reported["link_state"] in ("good", "thin") and a["Backlog"] == "0 B"
    assert c["Link (reported)"] == sites["ship-c"]["backlog"]["link_state"]  # its last word, hours ago
    assert (a["Rows merged today"], b["Rows merged today"], c["Rows merged today"]) == ("1,000", "200", "300")
    assert (a["Quarantined"], b["Quarantined"], c["Quarantined"]) == ("0", "1", "0")
    assert {a["Missing segments"], b["Missing segments"], c["Missing segments"]} == {"0"}
    # Most urgent first: the silent ship, then the one that needs a person.
    assert row_order(browser) == ["ship-c", "ship-b", "ship-a"]

    totals = dict(browser.execute_script(
        "return Array.from(document.querySelectorAll('#totals dt'),"
        "                  dt => [dt.innerText, dt.nextElementSibling.innerText])"))
    assert (totals["Ships"], totals["Silent"], totals["Need attention"], totals["OK"]) == ("3", "1", "1", "1")
    assert (totals["Rows merged today (UTC)"], totals["Quarantined segments"]) == ("1,500", "1")

    # Table markup: column headings with scope=col, one row heading (the ship) per row.
    assert {th.get_attribute("scope") for th in browser.find_elements(By.CSS_SELECTOR, "#fleet thead th")} == {"col"}
    assert browser.execute_script("return document.querySelectorAll('#fleet-rows th[scope=row]').length") == 3

    # Sorting by a heading, both ways, and saying so to assistive technology.
    heading = browser.find_element(By.XPATH, "//thead//button[text()='Ship']")
    heading.click()
    assert row_order(browser) == ["ship-a", "ship-b", "ship-c"]
    heading.click()
    assert browser.find_element(By.XPATH, "//thead//th[.//button[text()='Ship']]").get_attribute(
        "aria-sort") == "descending"
    browser.find_element(By.XPATH, "//thead//button[text()='Rows merged today']").click()
    assert row_order(browser)[0] == "ship-b"

    # Ship detail: per-table watermark, the quarantine reason, the charts.
    steady(lambda: browser.find_element(By.LINK_TEXT, "ship-b").click())
    reason = sites["ship-b"]["quarantined"][0]["reason"]
    assert "value" in reason

    def read_detail():
        detail = browser.find_element(By.ID, "ship-ship-b")
        events = detail.find_element(By.XPATH, ".//table[contains(@class,'tables')]//tr[th[text()='events']]")
        charts = detail.find_elements(By.CSS_SELECTOR, "svg.chart")
        return (detail.get_attribute("open") is not None, detail.find_element(By.CSS_SELECTOR, "table.quarantine").text,
                [td.text for td in events.find_elements(By.TAG_NAME, "td")][:3],
                [(int(svg.get_attribute("data-points")), svg.get_attribute("aria-label")) for svg in charts])

    is_open, quarantine, events, charts = steady(read_detail)
    assert is_open and reason in quarantine
    assert events == ["200", "0", "1"]  # rows merged, waiting to merge, watermark
    assert len(charts) == 2 and all(points >= 1 for points, _ in charts)
    assert "Rows merged from ship-b" in charts[1][1]

    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(1400, browser.execute_script("return document.body.scrollHeight") + 100)
    assert browser.save_screenshot(str(ARTIFACTS / "fleet-page.png"))


def test_the_page_refreshes_itself_without_a_reload(fleet, browser):
    from selenium.webdriver.common.by import By

    log_in_to_fleet(browser, fleet.hub.url, fleet.operator)
    before = int(cells(browser, "ship-a")["Rows merged today"].replace(",", ""))
    browser.execute_script("window.notReloaded = true")
    steady(lambda: browser.find_element(By.LINK_TEXT, "ship-a").click())  # open details stay open on refresh
    fleet.write("ship-a", "telemetry", telemetry(100_000, 250))
    wait_until(lambda: cells(browser, "ship-a")["Rows merged today"] == f"{before + 250:,}", 60,
               "the page to show ship-a's new rows")
    assert browser.execute_script("return window.notReloaded === true")
    assert steady(lambda: browser.find_element(By.ID, "ship-ship-a").get_attribute("open")) is not None
