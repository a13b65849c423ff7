"""Auto-recharge: settings, the check after each settlement, one attempt in flight, success credits once,
a decline turns it off and tells the owners. Stripe is replaced at our own boundary (billing.stripe_client);
the localstripe tests drive the real library."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client, TestCase
from django.utils import timezone

from accounts.models import AuditLog
from accounts.services import PermissionDenied
from billing import stripe_client, topups
from billing.models import LedgerEntry, LedgerKind, TopUp, TopUpStatus, Wallet
from billing.money import NUSD_PER_USD
from config.celery import app as celery_app
from tests.billing.calls import place_hold, settle
from tests.billing.conftest import META, PRICES, fund, usage
from tests.billing.stripe_fixtures import WHSEC, event, post
from tests.conftest import requires_postgres

USD = NUSD_PER_USD


class FakeStripe:
    """Records off-session charges; answers with `outcome` ("succeeded", "processing" or "declined")."""

    def __init__(self) -> None:
        self.charges: list[dict] = []
        self.outcome = "succeeded"
        self.lock = threading.Lock()

    def charge_off_session(self, **kwargs):
        with self.lock:
            self.charges.append(kwargs)
            n = len(self.charges)
        if self.outcome == "declined":
            raise stripe_client.PaymentDeclined(
                "Your card was declined.", code="card_declined", payment_intent_id=f"pi_declined_{n}"
            )
        return stripe_client.OffSessionCharge(payment_intent_id=f"pi_auto_{n}", status=self.outcome)


@pytest.fixture
def fake_stripe(settings, monkeypatch):
    settings.STRIPE_SECRET_KEY = "sk_test_fake_for_unit_tests"
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    fake = FakeStripe()
    monkeypatch.setattr(stripe_client, "charge_off_session", fake.charge_off_session)
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # REDIS_URL runs would otherwise enqueue to a broker
    yield fake
    celery_app.conf.task_always_eager = eager


def enable(team, *, balance_usd: int = 10, threshold_usd: int = 5, amount_usd: int = 20) -> Wallet:
    fund(team, balance_usd)
    Wallet.objects.filter(team=team).update(
        auto_recharge_enabled=True,
        auto_recharge_threshold_nusd=threshold_usd * USD,
        auto_recharge_amount_nusd=amount_usd * USD,
        stripe_customer_id="cus_test_acme",
        stripe_payment_method_id="pm_test_visa",
    )
    return Wallet.objects.get(team=team)


def spend(team, key, cost_completion_tokens: int = 1000) -> None:
    """One paid request through the real hold/settle path; after-commit receivers run."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        hold = place_hold(
            team_id=team.id,
            key_id=key.key.id,
            request_id=f"req_{timezone.now().timestamp()}",
            amount_nusd=cost_completion_tokens * PRICES.output_nusd + 10**6,
            is_test=False,
        )
        settle(hold, usage=usage(prompt=0, completion=cost_completion_tokens), prices=PRICES, meta=META)


# --- settings ----------------------------------------------------------------------------------------


def test_an_owner_turns_auto_recharge_on_for_a_saved_card(team, owner, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    Wallet.objects.filter(team=team).update(
        stripe_customer_id="cus_1", stripe_payment_method_id="pm_1", auto_recharge_last_error="old decline"
    )

    wallet = topups.update_auto_recharge(team, actor=owner, enabled=True, threshold_cents=1000, amount_cents=5000)

    assert (wallet.auto_recharge_enabled, wallet.auto_recharge_threshold_nusd, wallet.auto_recharge_amount_nusd) == (
        True,
        10 * USD,
        50 * USD,
    )
    assert wallet.auto_recharge_last_error == ""
    assert AuditLog.objects.filter(action="billing.auto_recharge_updated", actor=owner).exists()


@pytest.mark.parametrize(
    ("threshold", "amount", "code"),
    [
        (1000, 499, "invalid_amount"),
        (1000, 1_000_001, "invalid_amount"),
        (-1, 5000, "invalid_threshold"),
        (1000, 50.0, "invalid_amount"),
        ("10", 5000, "invalid_threshold"),
        (1_000_001, 5000, "invalid_threshold"),
    ],
)
def test_it_refuses_bad_auto_recharge_settings_and_changes_nothing(team, owner, settings, threshold, amount, code):
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    Wallet.objects.filter(team=team).update(stripe_customer_id="cus_1", stripe_payment_method_id="pm_1")

    with pytest.raises(topups.TopUpError) as exc:
        topups.update_auto_recharge(team, actor=owner, enabled=True, threshold_cents=threshold, amount_cents=amount)

    assert exc.value.code == code
    assert not Wallet.objects.get(team=team).auto_recharge_enabled
    assert not AuditLog.objects.filter(action="billing.auto_recharge_updated").exists()


def test_it_refuses_to_enable_auto_recharge_before_a_card_is_saved(team, owner, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    with pytest.raises(topups.TopUpError) as exc:
        topups.update_auto_recharge(team, actor=owner, enabled=True, threshold_cents=500, amount_cents=2000)
    assert exc.value.code == "no_saved_card"


def test_a_viewer_cannot_change_auto_recharge(team, viewer):
    with pytest.raises(PermissionDenied):
        topups.update_auto_recharge(team, actor=viewer, enabled=False, threshold_cents=500, amount_cents=2000)


def saved_card(team, settings) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    Wallet.objects.filter(team=team).update(stripe_customer_id="cus_1", stripe_payment_method_id="pm_1")


@pytest.mark.parametrize(
    ("threshold", "amount", "message"),
    [
        ("-3", "20", "The threshold cannot be negative."),
        ("ten", "20", "Enter an amount in dollars, e.g. 5 or 12.50."),
        ("5", "4.99", "Add at least $5 each time."),
        ("5", "20.001", "Use whole cents, e.g. 20 or 25.50."),
        ("5", "", "Enter how much to add each time, e.g. 20."),
        ("10001", "20", "The threshold can be at most $10,000."),
    ],
)
def test_bad_auto_recharge_values_get_inline_errors_on_the_billing_page(
    client, team, owner, settings, threshold, amount, message
):
    saved_card(team, settings)
    client.force_login(owner)
    response = client.post(
        f"/t/{team.public_id}/billing/auto-recharge/",
        {"enabled": "on", "threshold_usd": threshold, "amount_usd": amount},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and "<h1>Billing</h1>" in html  # the same page, the error under its field
    assert "threshold_usd" not in message and "Saved" not in html
    wallet = Wallet.objects.get(team=team)
    assert not wallet.auto_recharge_enabled and wallet.auto_recharge_threshold_nusd == 5 * USD
    assert not AuditLog.objects.filter(action="billing.auto_recharge_updated").exists()


def test_a_valid_auto_recharge_save_says_saved(client, team, owner, settings):
    saved_card(team, settings)
    client.force_login(owner)
    response = client.post(
        f"/t/{team.public_id}/billing/auto-recharge/", {"enabled": "on", "threshold_usd": "7.5", "amount_usd": "25"}
    )
    assert response.status_code == 200
    assert 'data-testid="auto-recharge-saved"' in response.content.decode()
    wallet = Wallet.objects.get(team=team)
    assert (wallet.auto_recharge_enabled, wallet.auto_recharge_threshold_nusd, wallet.auto_recharge_amount_nusd) == (
        True,
        7_500_000_000,
        25 * USD,
    )
    page = client.get(f"/t/{team.public_id}/billing/").content.decode()
    assert 'value="7.5"' in page and 'value="25"' in page and "2E+1" not in page


@pytest.mark.parametrize("stripe_on", [False, True])
def test_the_auto_recharge_form_is_disabled_with_a_reason_until_stripe_is_on_and_a_card_is_saved(
    client, team, owner, settings, stripe_on
):
    settings.STRIPE_SECRET_KEY = "sk_test_fake" if stripe_on else ""
    client.force_login(owner)
    html = client.get(f"/t/{team.public_id}/billing/").content.decode()
    fieldset = html[html.index('<fieldset class="plain"') :].split(">", 1)[0]
    assert "disabled" in fieldset
    reason = "top up by card once to turn it on" if stripe_on else "card payments are not enabled on this installation"
    assert reason in html and "STRIPE" not in html
    saved_card(team, settings)
    html = client.get(f"/t/{team.public_id}/billing/").content.decode()
    assert "disabled" not in html[html.index('<fieldset class="plain"') :].split(">", 1)[0]


def test_a_service_refusal_is_shown_inline_too(client, team, owner, settings):
    saved_card(team, settings)
    Wallet.objects.filter(team=team).update(stripe_payment_method_id="")  # the card went away meanwhile
    client.force_login(owner)
    response = client.post(
        f"/t/{team.public_id}/billing/auto-recharge/", {"enabled": "on", "threshold_usd": "5", "amount_usd": "20"}
    )
    assert response.status_code == 400 and b"Top up once by card first" in response.content
    assert not Wallet.objects.get(team=team).auto_recharge_enabled


# --- firing --------------------------------------------------------------------------------------------


def test_a_settlement_below_the_threshold_charges_the_saved_card_once_and_credits_once(
    team, owner, live_key, fake_stripe
):
    enable(team, balance_usd=10, threshold_usd=20, amount_usd=25)

    spend(team, live_key)

    assert len(fake_stripe.charges) == 1
    charge = fake_stripe.charges[0]
    assert (charge["customer_id"], charge["payment_method_id"], charge["amount_cents"]) == (
        "cus_test_acme",
        "pm_test_visa",
        2500,
    )
    topup = TopUp.objects.get(kind="auto_recharge")
    assert (topup.status, topup.stripe_payment_intent_id) == (TopUpStatus.PAID, "pi_auto_1")
    assert charge["metadata"]["tollgate_topup"] == topup.public_id
    assert charge["idempotency_key"] == f"tollgate-auto-recharge-{topup.public_id}"
    entry = LedgerEntry.objects.get(kind=LedgerKind.AUTO_RECHARGE)
    assert entry.amount_nusd == 25 * USD
    wallet = Wallet.objects.get(team=team)
    assert wallet.auto_recharge_in_flight_since is None and wallet.auto_recharge_enabled
    assert any("auto-recharge" in m.subject for m in mail.outbox)


def test_the_later_webhook_for_the_same_payment_intent_does_not_credit_again(
    client, team, owner, live_key, fake_stripe
):
    enable(team, balance_usd=10, threshold_usd=20, amount_usd=25)
    spend(team, live_key)
    topup = TopUp.objects.get(kind="auto_recharge")
    before = Wallet.objects.get(team=team).balance_nusd

    intent = {
        "id": "pi_auto_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 2500,
        "amount_received": 2500,
        "customer": "cus_test_acme",
        "payment_method": "pm_test_visa",
        "metadata": {
            "tollgate_team": team.public_id,
            "tollgate_topup": topup.public_id,
            "tollgate_kind": "auto_recharge",
        },
    }
    response = post(client, event("payment_intent.succeeded", intent))

    assert response.json()["detail"] == "already credited"
    assert Wallet.objects.get(team=team).balance_nusd == before
    assert LedgerEntry.objects.filter(kind=LedgerKind.AUTO_RECHARGE).count() == 1


def test_it_does_not_fire_again_while_an_attempt_is_in_flight(client, team, owner, live_key, fake_stripe):
    fake_stripe.outcome = "processing"  # the bank has not answered yet
    enable(team, balance_usd=10, threshold_usd=20, amount_usd=25)

    spend(team, live_key)
    spend(team, live_key)
    spend(team, live_key)

    assert len(fake_stripe.charges) == 1
    assert Wallet.objects.get(team=team).auto_recharge_in_flight_since is not None
    topup = TopUp.objects.get(kind="auto_recharge")
    assert topup.status == TopUpStatus.PENDING

    # The payment settles: the webhook credits it and frees the slot.
    intent = {
        "id": "pi_auto_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 2500,
        "amount_received": 2500,
        "customer": "cus_test_acme",
        "payment_method": "pm_test_visa",
        "metadata": {
            "tollgate_team": team.public_id,
            "tollgate_topup": topup.public_id,
            "tollgate_kind": "auto_recharge",
        },
    }
    assert post(client, event("payment_intent.succeeded", intent)).json()["detail"] == "credited"
    wallet = Wallet.objects.get(team=team)
    assert wallet.auto_recharge_in_flight_since is None
    assert LedgerEntry.objects.filter(kind=LedgerKind.AUTO_RECHARGE).count() == 1


def test_it_does_not_fire_while_available_credit_is_above_the_threshold(team, owner, live_key, fake_stripe):
    enable(team, balance_usd=10, threshold_usd=5)
    spend(team, live_key)
    assert fake_stripe.charges == []


def test_an_attempt_stuck_for_more_than_ten_minutes_can_be_retried(team, fake_stripe):
    wallet = enable(team, balance_usd=1, threshold_usd=5)
    now = timezone.now()
    Wallet.objects.filter(pk=wallet.pk).update(auto_recharge_in_flight_since=now - timedelta(minutes=9))
    assert topups.run_auto_recharge(wallet.pk, now=now) == "skipped"

    Wallet.objects.filter(pk=wallet.pk).update(auto_recharge_in_flight_since=now - timedelta(minutes=11))
    assert topups.run_auto_recharge(wallet.pk, now=now) == "charged"
    assert len(fake_stripe.charges) == 1


def test_a_decline_turns_auto_recharge_off_and_emails_the_owners(team, owner, admin_user, live_key, fake_stripe):
    fake_stripe.outcome = "declined"
    enable(team, balance_usd=10, threshold_usd=20)

    spend(team, live_key)
    spend(team, live_key)  # no second attempt: it is off now

    assert len(fake_stripe.charges) == 1
    wallet = Wallet.objects.get(team=team)
    assert not wallet.auto_recharge_enabled
    assert wallet.auto_recharge_last_error == "Your card was declined."
    assert wallet.auto_recharge_in_flight_since is None
    assert not LedgerEntry.objects.filter(kind=LedgerKind.AUTO_RECHARGE).exists()
    assert TopUp.objects.get(kind="auto_recharge").status == TopUpStatus.FAILED
    failed = [m for m in mail.outbox if "Auto-recharge failed" in m.subject]
    assert len(failed) == 1 and failed[0].to == ["olivia.owner@acme.test"]
    assert "declined" in failed[0].body and "OFF" in failed[0].body
    assert AuditLog.objects.filter(action="billing.auto_recharge_failed", team=team).exists()


def test_a_stripe_outage_keeps_auto_recharge_on_and_records_the_error(team, fake_stripe, monkeypatch):
    def down(**kwargs):
        raise stripe_client.StripeUnavailable("The payment provider is unavailable; try again shortly.")

    monkeypatch.setattr(stripe_client, "charge_off_session", down)
    wallet = enable(team, balance_usd=1, threshold_usd=5)

    assert topups.run_auto_recharge(wallet.pk) == "unavailable"
    wallet.refresh_from_db()
    assert wallet.auto_recharge_enabled and "unavailable" in wallet.auto_recharge_last_error
    assert wallet.balance_nusd == 1 * USD


def test_without_stripe_configured_nothing_is_attempted(team, owner, live_key, fake_stripe, settings):
    enable(team, balance_usd=10, threshold_usd=20)
    settings.STRIPE_SECRET_KEY = ""
    spend(team, live_key)
    assert fake_stripe.charges == []


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_attempts_for_one_team_charge_once_on_postgres(fake_stripe):
    from django.db import connection

    from accounts.models import User
    from accounts.services import create_team

    team = create_team(name="Acme", slug="acme", owner=User.objects.create_user(email="o@acme.test", password="x"))
    wallet = enable(team, balance_usd=1, threshold_usd=5, amount_usd=20)
    barrier = threading.Barrier(10)
    results: list[str] = []

    def attempt() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(topups.run_auto_recharge(wallet.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(results) == ["charged"] + ["skipped"] * 9
    assert len(fake_stripe.charges) == 1
    assert Wallet.objects.get(pk=wallet.pk).balance_nusd == 21 * USD
    assert Client  # the webhook path is covered in test_webhook_concurrency


# --- a failing check never disturbs the request that was paid for -------------------------------------


@pytest.mark.parametrize("broken", ["check", "queue"])
def test_a_broken_auto_recharge_check_or_queue_leaves_the_settlement_alone(
    team, live_key, fake_stripe, monkeypatch, caplog, broken
):
    enable(team, balance_usd=6, threshold_usd=6)  # the spend takes it below the threshold
    if broken == "check":
        monkeypatch.setattr(topups, "needs_auto_recharge", lambda wallet: 1 / 0)
    else:
        monkeypatch.setattr("billing.receivers.enqueue", lambda *a, **k: 1 / 0)
    spend(team, live_key, 1000)
    wallet = Wallet.objects.get(team=team)
    assert wallet.balance_nusd == 6 * USD - 1000 * PRICES.output_nusd  # charged, receipt written
    assert fake_stripe.charges == []
    expected = "auto-recharge check failed" if broken == "check" else "could not queue an auto-recharge"
    assert expected in caplog.text


@pytest.mark.parametrize("broken", ["check", "queue"])
def test_a_broken_low_balance_check_or_queue_leaves_the_settlement_alone(team, live_key, monkeypatch, caplog, broken):
    from billing import events

    fund(team, 6)
    Wallet.objects.filter(team=team).update(low_balance_threshold_nusd=6 * USD)  # the spend crosses it
    if broken == "check":
        monkeypatch.setattr(events, "needs_low_balance_check", lambda wallet: 1 / 0)
    else:
        monkeypatch.setattr(events, "queue_low_balance_check", lambda wallet_id: 1 / 0)
    spend(team, live_key, 2000)
    wallet = Wallet.objects.get(team=team)
    assert wallet.balance_nusd == 6 * USD - 2000 * PRICES.output_nusd
    assert not wallet.low_balance  # the event was not sent; the flag says so, so the next settlement tries again
    expected = "low-balance check failed" if broken == "check" else "could not queue a low-balance check"
    assert expected in caplog.text
