"""Playwright (sync API) driving Debian's chromium against a live uvicorn serving the whole ASGI app.

Without /usr/bin/chromium the browser tests are skipped, unless TOLLGATE_REQUIRE_BROWSER=1 (CI), where they fail.
Never runs `playwright install`: the browser is the system's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery"


def _require_browser() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("TOLLGATE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TOLLGATE_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); browser tests skipped")


@pytest.fixture(scope="module")
def browser():
    """Module-scoped, so the flag below is set only while a browser test module runs.

    Playwright's sync API keeps an event loop running in the test thread, and Django then refuses ORM calls
    made by the test itself (fixtures, assertions) as "async unsafe". They are plain sync calls in a sync test.
    """
    _require_browser()
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
            yield instance
            instance.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=live.url)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    yield pg
    context.close()


def shot(page, name: str, *, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(lambda url: "/t/" in url)
