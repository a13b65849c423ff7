"""Every main page renders in the browser with data, keyboard-reachable, and is saved as a screenshot artifact."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.keys import mint_key
from accounts.services import invite_member
from billing.services import grant_credit
from tests.browser.conftest import log_in, shot
from tests.dashboard.conftest import make_receipt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = [("overview", "", "Acme"), ("keys", "keys/", "API keys"), ("billing", "billing/", "Billing"),
         ("usage", "usage/", "Usage"), ("receipts", "receipts/", "Receipts"), ("members", "members/", "Members"),
         ("models", "models/", "Models & pricing"), ("quickstart", "quickstart/", "Quickstart")]


def test_the_main_pages_render_with_data_and_are_saved_as_screenshots(page, owner, team, developer):
    grant_credit(team, amount_nusd=5_000_000_000, reason="welcome credit")
    key = mint_key(team=team, name="prod backend", created_by=owner).key
    mint_key(team=team, name="sandbox", mode="test", created_by=developer)
    for _ in range(3):
        make_receipt(team, key)
    invite_member(actor=owner, team=team, email="new@acme.test", role="viewer")
    log_in(page, owner.email)
    for name, path, heading in PAGES:
        page.goto(f"/t/{team.public_id}/{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        shot(page, f"page-{name}")
    page.goto(f"/t/{team.public_id}/keys/")
    page.keyboard.press("Tab")  # the skip link comes first, for keyboard users
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
