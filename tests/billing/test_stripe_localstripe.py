"""End to end against localstripe (a stateful fake Stripe on 127.0.0.1) through the real `stripe` library:
the app's own Checkout code → the buyer pays → localstripe's signed webhook → the live app credits once;
then auto-recharge charges the saved card off-session, and a declining card turns it off.

Skipped when localstripe (dev extra) is not installed; `-m "not e2e"` skips them too."""

from __future__ import annotations

import threading
import time

import pytest
import requests

pytest.importorskip("localstripe.server")

import stripe  # noqa: E402
from django.core import mail  # noqa: E402
from django.test import TestCase  # noqa: E402

from billing import topups  # noqa: E402
from billing.models import LedgerEntry, LedgerKind, StripeEvent, TopUp, TopUpStatus, Wallet  # noqa: E402
from billing.money import NUSD_PER_USD  # noqa: E402
from config.celery import app as celery_app  # noqa: E402
from tests.billing import localstripe_ext  # noqa: E402
from tests.billing.conftest import META, PRICES, usage  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
USD = NUSD_PER_USD
SECRET_KEY = "sk_test_localstripe_tollgate"
WHSEC = "whsec_localstripe_tollgate"


@pytest.fixture(scope="session")
def localstripe_server():
    return localstripe_ext.shared()


# On the embedded default the live server's threads share the test's in-memory SQLite connection, so the
# test body and each webhook request take turns on it: the test holds this lock except while it waits.
DB_TURN = threading.Lock()


def _serialised(app):
    def wrapped(environ, start_response):
        with DB_TURN:
            response = app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                if hasattr(response, "close"):
                    response.close()

    return wrapped


@pytest.fixture
def stripe_env(localstripe_server, live_server, settings):
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_API_BASE = localstripe_server.url
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    settings.PUBLIC_BASE_URL = live_server.url
    response = requests.post(
        f"{localstripe_server.url}/_config/webhooks/tollgate",
        timeout=5,
        data={"url": f"{live_server.url}/billing/stripe/webhook/", "secret": WHSEC},
    )
    response.raise_for_status()
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    httpd = live_server.thread.httpd
    app = httpd.get_app()
    httpd.set_app(_serialised(app))
    DB_TURN.acquire()
    try:
        yield localstripe_server
        # No delivery may outlive the test: the next test (or the database flush) must not see it.
        localstripe_server.forget_webhooks()
        wait_for(lambda: not localstripe_server.deliveries_pending(), timeout=5)
    finally:
        DB_TURN.release()
        httpd.set_app(app)
        celery_app.conf.task_always_eager = eager


def wait_for(predicate, timeout: float = 8.0):
    """localstripe delivers webhooks about a second after the event; poll the database, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        DB_TURN.release()  # let a webhook request in
        try:
            time.sleep(0.05)
        finally:
            DB_TURN.acquire()
    raise AssertionError("timed out waiting for the webhook to land")


def api(server) -> stripe.StripeClient:
    return stripe.StripeClient(SECRET_KEY, base_addresses={"api": server.url})


def saved_card(server, team, number: str) -> None:
    """A customer with a card attached, as a past Checkout payment with setup_future_usage leaves it."""
    client = api(server)
    customer = client.v1.customers.create(params={"name": team.name})
    pm = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    Wallet.objects.filter(team=team).update(stripe_customer_id=customer.id, stripe_payment_method_id=pm.id)


def test_a_checkout_top_up_is_credited_once_by_the_signed_webhook_and_saves_the_card(stripe_env, team, owner):
    url = topups.start_checkout(team, 2500, owner)
    topup = TopUp.objects.get()
    assert url.startswith(stripe_env.url) and topup.stripe_session_id in url
    session = api(stripe_env).v1.checkout.sessions.retrieve(topup.stripe_session_id)
    assert session["metadata"]["tollgate_topup"] == topup.public_id

    paid = requests.post(
        url, data={"card": "4242424242424242"}, timeout=5, headers={"Authorization": f"Bearer {SECRET_KEY}"}
    )
    assert paid.status_code == 200, paid.text

    wait_for(lambda: TopUp.objects.filter(pk=topup.pk, status=TopUpStatus.PAID).exists())
    wallet = wait_for(lambda: Wallet.objects.filter(team=team).exclude(stripe_payment_method_id="").first())
    assert wallet.balance_nusd == 25 * USD
    assert LedgerEntry.objects.filter(wallet=wallet, kind=LedgerKind.TOPUP).count() == 1
    assert wallet.stripe_customer_id == session["customer"]
    assert StripeEvent.objects.filter(type="checkout.session.completed", status="processed").count() == 1
    assert any("$25.00" in m.subject for m in mail.outbox)


def test_auto_recharge_charges_the_saved_card_off_session_and_credits_once(stripe_env, team, owner, live_key):
    saved_card(stripe_env, team, "4242424242424242")
    topups.update_auto_recharge(team, actor=owner, enabled=True, threshold_cents=1000, amount_cents=2000)

    with TestCase.captureOnCommitCallbacks(execute=True):  # a settlement's receiver enqueues the (eager) task
        from billing.services import grant_credit
        from tests.billing.calls import place_hold, settle

        grant_credit(team, amount_nusd=5 * USD)
        hold = place_hold(
            team_id=team.id, key_id=live_key.key.id, request_id="req_e2e", amount_nusd=10**7, is_test=False
        )
        settle(hold, usage=usage(), prices=PRICES, meta=META)

    topup = TopUp.objects.get(kind="auto_recharge")
    assert topup.status == TopUpStatus.PAID and topup.stripe_payment_intent_id.startswith("pi_")
    intent = api(stripe_env).v1.payment_intents.retrieve(topup.stripe_payment_intent_id)
    assert (intent["status"], intent["amount"], intent["metadata"]["tollgate_topup"]) == (
        "succeeded",
        2000,
        topup.public_id,
    )
    # localstripe's payment_intent.succeeded for the same intent lands a second later: no second credit.
    wait_for(lambda: StripeEvent.objects.filter(type="payment_intent.succeeded").exists())
    assert LedgerEntry.objects.filter(kind=LedgerKind.AUTO_RECHARGE).count() == 1
    wallet = Wallet.objects.get(team=team)
    assert wallet.auto_recharge_in_flight_since is None and wallet.auto_recharge_enabled
    assert wallet.balance_nusd == 25 * USD - 150_000 - 100_000 + 0  # $5 + $20 minus the request


def test_a_declining_saved_card_turns_auto_recharge_off_and_emails_the_owners(stripe_env, team, owner):
    saved_card(stripe_env, team, "4000000000000341")  # attaches fine, declines every charge
    topups.update_auto_recharge(team, actor=owner, enabled=True, threshold_cents=1000, amount_cents=2000)

    assert topups.run_auto_recharge(Wallet.objects.get(team=team).pk) == "declined"

    wallet = Wallet.objects.get(team=team)
    assert not wallet.auto_recharge_enabled and "declined" in wallet.auto_recharge_last_error
    assert wallet.balance_nusd == 0
    assert TopUp.objects.get(kind="auto_recharge").status == TopUpStatus.FAILED
    assert [m.to for m in mail.outbox if "Auto-recharge failed" in m.subject] == [["olivia.owner@acme.test"]]


def test_a_card_that_needs_3d_secure_cannot_be_charged_off_session(stripe_env, team, owner):
    saved_card(stripe_env, team, "4000002500003155")
    topups.update_auto_recharge(team, actor=owner, enabled=True, threshold_cents=1000, amount_cents=2000)

    assert topups.run_auto_recharge(Wallet.objects.get(team=team).pk) == "declined"

    wallet = Wallet.objects.get(team=team)
    assert not wallet.auto_recharge_enabled and "authenticate" in wallet.auto_recharge_last_error
