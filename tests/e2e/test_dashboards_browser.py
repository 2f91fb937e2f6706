"""The dashboards in a real headless Chromium (Debian's, driven by Selenium through Debian's chromedriver).

Generated activity in a closed window of its own, months back (random, so no cache and no other test has
data there), goes through the real pipeline (triggers, relay, Kafka, Pinot). Each dashboard is opened with
its time-range filter set to that window: every chart must render (no error box, something drawn), a
screenshot is saved per dashboard, and for charts of every dashboard the numbers the browser received
from Superset's chart data API must equal the query library's answer from Pinot for the same window. The
Support dashboard gets a day of its own (tickets resolved in it, and tickets still open).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from connectors.pinot import broker_connection
from connectors.superset import Superset
from pipeline.analytics import dashboards, tables
from pipeline.analytics.queries import run_query
from pipeline.devstack.generator import Generator
from pipeline.devstack.superset import login as superset_login
from pipeline.resources import DASHBOARDS
from tests.support.database import scratch_database
from tests.support.exactness import Ingested, ledger_ingested
from tests.support.polling import wait_until
from tests.support.relay import RelayProcess
from tests.support.services import Services
from tests.support.ticket_queries import tickets_ingested

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1200",
]
SLUGS = ["orders_live", "deliveries", "restaurants"]
ORDERS = 600
RENDER_TIMEOUT_S = 90
ANIMATION_S = 2  # ECharts draws its series in about a second after the data arrived: screenshot after that


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    cities: list[str]

    @property
    def time_range(self) -> str:
        return f"{self.since:%Y-%m-%dT%H:%M:%S} : {self.until:%Y-%m-%dT%H:%M:%S}"


@pytest.fixture(scope="module")
def window(services: Services) -> Iterator[Window]:
    """Activity placed in a closed three-hour window 30-300 days back, ingested by Pinot; some orders still open."""
    settings = services.settings()
    tables.apply(settings)
    start = (datetime.now(UTC) - timedelta(days=random.randint(30, 300))).replace(minute=0, second=0, microsecond=0)
    start = start.replace(hour=random.randint(1, 20))
    with scratch_database(services.database_url, "dash", migrated=True) as db:
        suffix = f"-{uuid.uuid4().hex[:6]}"
        # No seed: a seed repeats its ids, and Pinot's upsert tables keep an id's row from an earlier run.
        generator = Generator(db, city_suffix=suffix)
        generator.run_batch(ORDERS, start, per_minute=5)  # two hours of orders: hourly charts get two points
        with psycopg.connect(db) as conn:  # still under way at the window's end: "active" charts count them
            generator.place(conn, 40, start + timedelta(minutes=100))
            generator.advance(conn, start + timedelta(minutes=115))
        cities = sorted({r.city for r in generator.world.restaurants})
        relay = RelayProcess(services, db)
        try:
            cursor = broker_connection(services.pinot_broker_url).cursor()
            city_list = ", ".join(f"'{c}'" for c in cities)

            def ingested() -> bool:
                cursor.execute(f"SELECT COUNT(*) FROM orders WHERE city IN ({city_list})")
                return cursor.fetchone()[0] == ORDERS + 40

            wait_until(ingested, 300, what="Pinot to ingest the window's orders")
            # Deliveries arrive on their own topic; wait until the last hand-over is queryable too.
            with psycopg.connect(db) as conn:
                (delivered,) = conn.execute(
                    "SELECT count(*) FROM driver_service.deliveries WHERE status = 'delivered'"
                ).fetchone()

            def deliveries_ingested() -> bool:
                cursor.execute(f"SELECT COUNT(*) FROM deliveries WHERE status = 'delivered' AND city IN ({city_list})")
                return cursor.fetchone()[0] == delivered

            wait_until(deliveries_ingested, 300, what="Pinot to ingest the window's deliveries")
            # The library's order queries read the order ledger, another topic: wait for it too.
            scope = Ingested(db, cities, start, start + timedelta(hours=3), cursor)
            wait_until(lambda: ledger_ingested(scope), 300, what="Pinot's order ledger to sum to PostgreSQL's orders")
        finally:
            relay.terminate()
        yield Window(start, start + timedelta(hours=3), cities)


@pytest.fixture(scope="module")
def superset(services: Services) -> Superset:
    settings = services.settings()
    login = superset_login(settings)
    client = dashboards.connect(login)
    dashboards.apply(settings, client, DASHBOARDS)
    return client


def log_in(driver: webdriver.Chrome, login: dashboards.SupersetLogin, attempts: int = 3) -> None:
    """Log in through Superset's form. Superset 6 now and then answers a right password with the login page
    again (its log: "Failed to add user to db session"): the form is sent again, a few times at most."""
    for attempt in range(1, attempts + 1):
        driver.get(f"{login.url}/login/")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "username"))
        driver.find_element(By.ID, "username").send_keys(login.user)
        driver.find_element(By.ID, "password").send_keys(login.password + "\n")
        try:
            WebDriverWait(driver, 60).until(lambda d: "/login" not in d.current_url)
            return
        except TimeoutException:
            if attempt == attempts:
                raise


@pytest.fixture(scope="module")
def browser(services: Services, superset: Superset) -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="nibble-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        log_in(driver, superset_login(services.settings()))
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot_dir(services: Services) -> Path:
    path = services.settings().stack.state_dir.resolve() / "test-output" / "dashboards"
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_dashboard(driver: webdriver.Chrome, url: str, slug: str, window: Window) -> float:
    """Open a dashboard with its time filter on `window`; seconds until every chart finished loading."""
    filter_id = f"NATIVE_FILTER-{slug}-time"
    time_range = f"'{window.time_range}'"
    native_filters = (
        f"({filter_id}:(extraFormData:(time_range:{time_range}),filterState:(value:{time_range}),id:{filter_id}))"
    )
    driver.get_log("performance")  # drop what earlier pages logged
    started = time.monotonic()
    # force=true: every chart asks Pinot, none is answered from Superset's cache.
    driver.get(f"{url}/superset/dashboard/{slug}/?force=true&native_filters={native_filters}")

    def loaded(d: webdriver.Chrome) -> bool:
        holders = d.find_elements(By.CSS_SELECTOR, ".dashboard-component-chart-holder")
        return bool(holders) and not d.find_elements(By.CSS_SELECTOR, ".dashboard-component-chart-holder .loading")

    try:
        WebDriverWait(driver, RENDER_TIMEOUT_S, poll_frequency=0.2).until(loaded)
    except TimeoutException:
        pytest.fail(f"dashboard {slug}: charts still loading after {RENDER_TIMEOUT_S} s")
    return time.monotonic() - started


def chart_problems(driver: webdriver.Chrome) -> list[str]:
    """Every chart that shows an error box, or nothing at all."""
    problems = []
    for holder in driver.find_elements(By.CSS_SELECTOR, ".dashboard-component-chart-holder"):
        title = holder.find_element(By.CSS_SELECTOR, ".header-title, [data-test='editable-title']").text
        errors = holder.find_elements(By.CSS_SELECTOR, "[role='alert'], .alert-danger, .ant-alert-error")
        if errors:
            problems.append(f"{title}: error box: {errors[0].text[:200]}")
        drawn = holder.find_elements(By.CSS_SELECTOR, "canvas, svg, table tbody tr, .header-line")
        if not drawn or "No results" in holder.text:
            problems.append(f"{title}: nothing drawn")
    return problems


def received_chart_data(driver: webdriver.Chrome) -> dict[int, dict[str, Any]]:
    """What the browser received from /api/v1/chart/data since the page was opened, by chart id (each request
    must have asked Superset to bypass its cache)."""
    slice_ids: dict[str, int] = {}
    bodies: dict[int, dict[str, Any]] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent" and "/api/v1/chart/data" in params["request"]["url"]:
            query_context = json.loads(params["request"].get("postData") or "{}")
            form_data = query_context.get("form_data", {})
            if "slice_id" in form_data:
                assert query_context.get("force") is True, f"chart {form_data['slice_id']} was not forced"
                slice_ids[params["requestId"]] = int(form_data["slice_id"])
        elif message["method"] == "Network.loadingFinished" and params["requestId"] in slice_ids:
            body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": params["requestId"]})["body"]
            bodies[slice_ids[params["requestId"]]] = json.loads(body)
    return bodies


def chart_ids(superset: Superset) -> dict[str, int]:
    """Chart id by the chart's file name in dashboards/charts (its library query's name)."""
    by_uuid = {uuid_: row["id"] for uuid_, row in dashboards.managed(superset, "chart").items()}
    return {
        a.path.split("/")[-1][:-5]: by_uuid[a.uuid] for a in dashboards.load_bundle(DASHBOARDS) if a.kind == "charts"
    }


def rows_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    (result,) = response["result"]
    assert not result.get("is_cached"), "the chart came from the cache, not from Pinot"
    return result["data"]


def close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def test_every_dashboard_renders_and_shows_what_pinot_answers(
    services: Services, window: Window, superset: Superset, browser: webdriver.Chrome
) -> None:
    cursor = broker_connection(services.pinot_broker_url).cursor()
    ids = chart_ids(superset)
    shots = screenshot_dir(services)
    received: dict[int, dict[str, Any]] = {}
    for slug in SLUGS:
        seconds = open_dashboard(browser, superset.url, slug, window)
        time.sleep(ANIMATION_S)
        browser.save_screenshot(str(shots / f"{slug}.png"))
        problems = chart_problems(browser)
        assert not problems, f"dashboard {slug}: {problems} (screenshot: {shots / slug}.png)"
        received.update(received_chart_data(browser))
        print(f"dashboard {slug}: rendered in {seconds:.1f} s, screenshot {shots / slug}.png")

    since, until = window.since, window.until
    # Orders live: the funnel, stage by stage.
    funnel = run_query(cursor, "funnel", since=since, until=until)
    assert {r["status"]: r["orders"] for r in rows_of(received[ids["funnel"]])} == dict(funnel.rows)
    # Orders live: the average basket, all cities together (the library query splits it by city).
    cursor.execute(
        "SELECT AVG(subtotal_cents) / 100.0 FROM orders "
        "WHERE placed_at >= %(since)s AND placed_at < %(until)s AND status <> 'cancelled'",
        {"since": int(since.timestamp() * 1000), "until": int(until.timestamp() * 1000)},
    )
    (basket,) = rows_of(received[ids["average_basket"]])
    assert close(next(iter(basket.values())), cursor.fetchone()[0])
    # Deliveries: the late-delivery share by city.
    late = run_query(cursor, "late_deliveries", since=since, until=until)
    chart = {r["city"]: r["late_share"] for r in rows_of(received[ids["late_deliveries"]])}
    assert chart.keys() == {row[0] for row in late.rows}
    assert all(close(chart[city], share) for city, _, _, share in late.rows)
    # Restaurants: the top ten by GMV, in EUR.
    top = run_query(cursor, "top_restaurants", since=since, until=until, limit=10)
    chart_top = [
        (r["restaurant_name"], r["city"], r["gmv_eur"], r["orders"]) for r in rows_of(received[ids["top_restaurants"]])
    ]
    assert len(chart_top) == 10
    library_top = [(name, city, gmv / 100, orders) for _, name, city, gmv, orders in top.rows]
    assert [(n, c, o) for n, c, _, o in chart_top] == [(n, c, o) for n, c, _, o in library_top]
    assert all(close(a[2], b[2]) for a, b in zip(chart_top, library_top, strict=True))


@pytest.fixture(scope="module")
def support_window(services: Services) -> Iterator[Window]:
    """The Support dashboard's own day, months back: two hours of orders whose tickets ran their course (resolved
    within the day), then more orders written up to its fifth hour, so tickets are still open, some unanswered."""
    tables.apply(services.settings())
    start = (datetime.now(UTC) - timedelta(days=random.randint(30, 300))).replace(hour=0, minute=0, second=0)
    start = start.replace(microsecond=0)
    with scratch_database(services.database_url, "support", migrated=True) as db:
        suffix = f"-{uuid.uuid4().hex[:6]}"
        generator = Generator(db, city_suffix=suffix)  # no seed: Pinot's upsert tables keep an id's earlier row
        generator.run_batch(ORDERS, start, per_minute=5)
        at = start + timedelta(minutes=120)
        with psycopg.connect(db) as conn:
            while at < start + timedelta(minutes=240):
                generator.advance(conn, at)
                generator.place(conn, 20, at)
                at += timedelta(minutes=2)
            generator.advance(conn, start + timedelta(minutes=300))
        cities = sorted({r.city for r in generator.world.restaurants})
        relay = RelayProcess(services, db)
        try:
            cursor = broker_connection(services.pinot_broker_url).cursor()
            scope = Ingested(db, cities, start, start + timedelta(days=1), cursor)
            wait_until(lambda: tickets_ingested(scope), 300, what="Pinot to hold every ticket as PostgreSQL does")
        finally:
            relay.terminate()
        yield Window(start, start + timedelta(days=1), cities)


def test_the_support_dashboard_renders_and_shows_what_pinot_answers(
    services: Services, support_window: Window, superset: Superset, browser: webdriver.Chrome
) -> None:
    seconds = open_dashboard(browser, superset.url, "support", support_window)
    time.sleep(ANIMATION_S)
    shots = screenshot_dir(services)
    browser.save_screenshot(str(shots / "support.png"))
    problems = chart_problems(browser)
    assert not problems, f"dashboard support: {problems} (screenshot: {shots / 'support.png'})"
    received = received_chart_data(browser)
    print(f"dashboard support: rendered in {seconds:.1f} s, screenshot {shots / 'support.png'}")
    ids = chart_ids(superset)
    cursor = broker_connection(services.pinot_broker_url).cursor()

    # Open tickets by priority and age: the library's rows per city, added up (the chart shows all cities),
    # and the window's tickets about no order (no city), read from Pinot: months old, all over 24 h.
    since_ms, until_ms = (int(moment.timestamp() * 1000) for moment in (support_window.since, support_window.until))
    window_sql = f"created_at >= {since_ms} AND created_at < {until_ms} AND status IN ('open', 'in_progress')"
    library: Counter[tuple[str, str]] = Counter()
    for city in support_window.cities:
        for priority, age, tickets, _ in run_query(cursor, "open_tickets", city=city).rows:
            library[priority, age] += tickets
    cursor.execute(
        f"SELECT priority, COUNT(*) FROM support_tickets WHERE order_id = 'null' AND {window_sql} GROUP BY priority"
    )
    for priority, tickets in cursor.fetchall():
        library[priority, "over 24 h"] += tickets
    chart = {
        (row["priority"], age): tickets
        for row in rows_of(received[ids["open_tickets"]])
        for age, tickets in row.items()
        if age != "priority" and tickets is not None
    }
    assert chart == dict(library) and chart

    # Resolution time p50/p90 by priority over the tickets resolved in the window.
    times = run_query(cursor, "ticket_response_times", since=support_window.since, until=support_window.until)
    resolution = {p: (n, p50, p90) for p, measure, n, p50, p90 in times.rows if measure == "resolution"}
    chart_times = {
        r["priority"]: (r["tickets"], r["resolution_p50_minutes"], r["resolution_p90_minutes"])
        for r in rows_of(received[ids["ticket_response_times"]])
    }
    assert chart_times.keys() == resolution.keys() and chart_times
    for priority, (n, p50, p90) in resolution.items():
        assert chart_times[priority][0] == n
        assert close(chart_times[priority][1], p50) and close(chart_times[priority][2], p90)

    # The oldest unanswered tickets: the library's, all cities together, and those about no order, oldest first.
    oldest = [
        (created_at, ticket)
        for city in support_window.cities
        for ticket, *_, created_at, _ in run_query(cursor, "oldest_unanswered_tickets", city=city).rows
    ]
    cursor.execute(
        "SELECT ticket_id, created_at FROM support_tickets WHERE order_id = 'null' "
        f"AND first_response_at < created_at AND {window_sql} LIMIT 1000"
    )
    oldest += [(datetime.fromtimestamp(created_at / 1000, UTC), ticket) for ticket, created_at in cursor.fetchall()]
    chart_oldest = [r["ticket_id"] for r in rows_of(received[ids["oldest_unanswered_tickets"]])]
    assert chart_oldest == [ticket for _, ticket in sorted(oldest)[:20]] and chart_oldest
