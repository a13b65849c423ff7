"""Every main page renders in the browser with data, keyboard-reachable, and is saved as a screenshot artifact."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.keys import mint_key
from accounts.services import invite_member
from billing.services import grant_credit
from tests.browser.conftest import PASSWORD, log_in, shot
from tests.dashboard.conftest import make_receipt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = [
    ("overview", "", "Acme"),
    ("keys", "keys/", "API keys"),
    ("billing", "billing/", "Billing"),
    ("usage", "usage/", "Usage"),
    ("receipts", "receipts/", "Receipts"),
    ("members", "members/", "Members"),
    ("models", "models/", "Models & pricing"),
    ("quickstart", "quickstart/", "Quickstart"),
    ("settings", "settings/", "Team settings"),
]
PHONE = {"width": 390, "height": 844}


def _seed(team, owner, developer) -> None:
    grant_credit(team, amount_nusd=5_000_000_000, reason="welcome credit")
    key = mint_key(team=team, name="prod backend", created_by=owner).key
    mint_key(team=team, name="sandbox", mode="test", created_by=developer)
    for _ in range(3):
        make_receipt(team, key)
    invite_member(actor=owner, team=team, email="new@acme.test", role="viewer")


def _no_sideways_scroll(page) -> None:
    """At phone width the page itself never scrolls sideways (wide tables scroll inside their card)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the screen"


def test_the_main_pages_render_with_data_and_are_saved_as_screenshots(page, owner, team, developer):
    _seed(team, owner, developer)
    log_in(page, owner.email)
    for name, path, heading in PAGES:
        page.goto(f"/t/{team.public_id}/{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        shot(page, f"page-{name}")
    page.goto(f"/t/{team.public_id}/keys/")
    page.keyboard.press("Tab")  # the skip link comes first, for keyboard users
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()


def test_the_main_pages_fit_a_phone_screen(browser, live, owner, team, developer):
    _seed(team, owner, developer)
    context = browser.new_context(viewport=PHONE, base_url=live.url, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, owner.email)
        for name, path, heading in PAGES:
            page.goto(f"/t/{team.public_id}/{path}")
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            _no_sideways_scroll(page)
            shot(page, f"phone-{name}")
        page.get_by_role("button", name="Menu").click()  # the sidebar opens over the page
        expect(page.get_by_role("link", name="Team settings")).to_be_visible()
        shot(page, "phone-menu", full_page=False)
    finally:
        context.close()


def test_account_and_top_up_result_pages_share_the_dashboard_layout(page, owner, team):
    log_in(page, owner.email)
    page.goto("/2fa/")
    expect(page.get_by_role("heading", name="Two-Factor Authentication")).to_be_visible()
    expect(page.get_by_role("link", name="Team settings")).to_be_visible()  # the team's sidebar stays
    shot(page, "account-2fa")
    page.get_by_role("link", name="Activate").click()
    expect(page.get_by_role("heading", name="Confirm Access")).to_be_visible()  # allauth asks for the password
    shot(page, "account-reauthenticate")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Activate Authenticator App")).to_be_visible()
    expect(page.get_by_label("Authenticator secret")).to_be_disabled()
    expect(page.get_by_role("img", name=re.compile(r"^[A-Z2-7]{16,}$"))).to_be_visible()  # the QR code
    shot(page, "account-2fa-activate")
    page.goto("/password/change/")
    shot(page, "account-password")
    page.goto("/billing/topup/cancel/")
    expect(page.get_by_text("nothing was charged")).to_be_visible()
    shot(page, "topup-cancel")
