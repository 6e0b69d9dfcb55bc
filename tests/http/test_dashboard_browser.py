"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

Load the page, put and publish through a client, and watch the numbers
change without a reload. Screenshots go to a temporary folder, or, with
MINIBROKER_UPDATE_SCREENSHOTS=1, to docs/images (shown in docs/dashboard.md),
so a test run never changes the checkout. Skipped, saying how to install it,
when there is no browser; .ci/run installs it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import minibroker
from minibroker.testing import ThreadedBroker, run_in_thread

CHROMIUM = Path("/usr/bin/chromium")
IMAGES = (
    Path(__file__).resolve().parents[2] / "docs" / "images"
    if os.environ.get("MINIBROKER_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="minibroker-screenshots-"))
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Milliseconds to wait for the page to show a change (one event per second).
SEEN_WITHIN_MS = 15_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no browser: install Debian's chromium (apt-get install -y chromium) "
    "to run the dashboard's browser tests",
)


@pytest.fixture(scope="module")
def served() -> Iterator[ThreadedBroker]:
    with run_in_thread(http_port=0) as broker:
        yield broker


@pytest.fixture(scope="module")
def page(served: ThreadedBroker) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        yield page
        browser.close()


def _cell(page: object, table: str, row: str, column: int) -> str:
    """The text of ``column`` in the row of ``table`` whose first cell is ``row``."""
    locator = page.locator(f"#{table} tr:has(td:first-child:text-is('{row}')) td")  # type: ignore[attr-defined]
    return str(locator.nth(column).inner_text())


def test_the_page_follows_puts_and_publishes_without_a_reload(
    served: ThreadedBroker, page: object
) -> None:
    with minibroker.connect_sync(served.url) as mb:
        mb.declare_queue("jobs")
        mb.bind("jobs", "orders.#")
        page.goto(served.http_url + "/")  # type: ignore[attr-defined]
        page.wait_for_selector("#queues- td:text-is('jobs')", timeout=SEEN_WITHIN_MS)  # type: ignore[attr-defined]
        assert _cell(page, "queues-", "jobs", 1) == "0"
        page.screenshot(path=str(IMAGES / "dashboard-empty.png"))  # type: ignore[attr-defined]

        mb.put_many("jobs", [b"a", b"b", b"c"])
        mb.publish("orders.created", b"o-1")
        page.wait_for_function(  # type: ignore[attr-defined]
            "() => [...document.querySelectorAll('#queues- td')]"
            ".some((td, i, all) => td.textContent === 'jobs' && all[i + 1].textContent === '4')",
            timeout=SEEN_WITHIN_MS,
        )
        assert _cell(page, "queues-", "jobs", 1) == "4"
        mb.fetch("jobs", max_messages=2)
        page.wait_for_function(  # type: ignore[attr-defined]
            "() => [...document.querySelectorAll('#queues- td')]"
            ".some((td, i, all) => td.textContent === 'jobs' && all[i + 2].textContent === '2')",
            timeout=SEEN_WITHIN_MS,
        )
        assert _cell(page, "queues-", "jobs", 2) == "2"
        assert "msgpack" in page.inner_text("#connections")  # type: ignore[attr-defined]
        with mb.respond("svc.resize", group="workers"):
            mb.put("jobs", b"x" * 20_000)
            page.wait_for_function(  # type: ignore[attr-defined]
                "() => [...document.querySelectorAll('#connections tr')].some((tr) =>"
                " tr.cells[3].textContent === 'msgpack' && Number(tr.cells[4].textContent) > 20000"
                " && Number(tr.cells[5].textContent) > 0)",
                timeout=SEEN_WITHIN_MS,
            )
            page.wait_for_selector("#rpc- td:text-is('svc.resize')", timeout=SEEN_WITHIN_MS)  # type: ignore[attr-defined]
            assert _cell(page, "rpc-", "svc.resize", 1) == "1"
            assert _cell(page, "rpc-", "svc.resize", 2) == "workers"
            page.screenshot(path=str(IMAGES / "dashboard-live.png"), full_page=True)  # type: ignore[attr-defined]


def test_the_xray_view_follows_one_message(served: ThreadedBroker, page: object) -> None:
    page.goto(served.http_url + "/")  # type: ignore[attr-defined]
    page.fill("#xray-pattern", "orders.*")  # type: ignore[attr-defined]
    page.click("#xray-toggle")  # type: ignore[attr-defined]
    page.wait_for_selector("#xray-toggle:text-is('stop')", timeout=SEEN_WITHIN_MS)  # type: ignore[attr-defined]
    with minibroker.connect_sync(served.url) as mb:
        with mb.subscribe("orders.#"):
            mb.publish("orders.shipped", b"o-2")
        page.click("#xray-traces li:has-text('publish orders.shipped')", timeout=SEEN_WITHIN_MS)  # type: ignore[attr-defined]
    timeline = page.locator("#xray-timeline")  # type: ignore[attr-defined]
    timeline.locator("text=minibroker/core/topics.py::Topics.publish").wait_for(
        timeout=SEEN_WITHIN_MS
    )
    text = timeline.inner_text()
    for step in ("decode", "trie match", "publish", "deliveries"):
        assert step in text
    page.locator("#xray").screenshot(path=str(IMAGES / "dashboard-xray.png"))  # type: ignore[attr-defined]
    page.click("#xray-toggle")  # type: ignore[attr-defined]
    page.wait_for_selector("#xray-toggle:text-is('start')", timeout=SEEN_WITHIN_MS)  # type: ignore[attr-defined]
    assert served.server.broker.xray is None
