"""A top-up through the Stripe test flow (localstripe, see ../shared/STRIPE.md) raises the balance shown live."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import log_in, shot
from tests.conftest import requires_postgres

pytest.importorskip("localstripe.server")

from config.celery import app as celery_app  # noqa: E402
from tests.billing import localstripe_ext  # noqa: E402

# localstripe delivers checkout.session.completed and payment_intent.succeeded at the same moment; on the
# embedded default's shared-cache in-memory SQLite test database two writers then meet "database table is
# locked" (and localstripe never redelivers), so this flow runs on PostgreSQL, as CI's second pass does.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.django_db(transaction=True),
    requires_postgres,
]
SECRET_KEY = "sk_test_localstripe_dashboard"
WHSEC = "whsec_localstripe_dashboard"


@pytest.fixture(scope="module")
def localstripe():
    return localstripe_ext.shared()  # one per process, shared with tests/billing


@pytest.fixture
def stripe_env(localstripe, live, settings):
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = localstripe.url
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    requests.post(
        f"{localstripe.url}/_config/webhooks/dashboard",
        timeout=5,
        data={"url": f"{live.url}/billing/stripe/webhook/", "secret": WHSEC},
    ).raise_for_status()
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield localstripe
    celery_app.conf.task_always_eager = eager


def test_a_card_top_up_through_checkout_raises_the_balance_on_the_open_billing_page(page, stripe_env, owner, team):
    log_in(page, owner.email)
    watcher = page.context.new_page()  # a second tab that stays on Billing and is updated live
    watcher.goto(f"/t/{team.public_id}/billing/")
    expect(watcher.locator("body[data-live-ready]")).to_have_count(1)
    expect(watcher.get_by_test_id("balance")).to_have_text("$0.00")

    page.goto(f"/t/{team.public_id}/billing/")
    page.get_by_label("Top up by card (USD)").fill("25")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(re.compile(r"/v1/checkout/sessions/cs_test_\w+/_test_pay$"))  # Stripe's Checkout page
    checkout_url = page.url
    session_id = checkout_url.split("/")[-2]
    paid = requests.post(
        checkout_url,
        data={"card": "4242424242424242"},
        timeout=5,  # the buyer pays
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
    )
    assert paid.status_code == 200, paid.text

    expect(watcher.get_by_test_id("balance")).to_have_text("$25.00", timeout=15_000)
    shot(watcher, "billing-after-topup")
    page.goto(f"/billing/topup/success/?session_id={session_id}")  # where Stripe sends the buyer back
    expect(page.get_by_test_id("balance")).to_have_text("$25.00", timeout=15_000)
    shot(page, "topup-success")
