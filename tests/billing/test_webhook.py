"""Stripe webhooks through the real `stripe` signature check: only signed, fresh events move money, and each
payment credits (or refunds) exactly once whatever the redelivery or ordering."""

from __future__ import annotations

import time

import pytest
from django.core import mail

from accounts.models import AuditLog
from billing.models import LedgerEntry, LedgerKind, StripeEvent, TopUp, TopUpStatus, Wallet
from billing.money import NUSD_PER_CENT
from tests.billing.stripe_fixtures import WHSEC, charge, checkout_session, event, post, sign

pytestmark = pytest.mark.usefixtures("stripe_webhooks")
CENT = NUSD_PER_CENT


@pytest.fixture
def stripe_webhooks(settings):
    """The webhook secret set, no API key: these tests never reach Stripe."""
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    settings.STRIPE_SECRET_KEY = ""
    return settings


@pytest.fixture
def pending_topup(team, owner) -> TopUp:
    return TopUp.objects.create(
        team=team, amount_nusd=2500 * CENT, stripe_session_id="cs_test_a1b2c3", created_by=owner
    )


def balance(team) -> int:
    return Wallet.objects.get(team=team).balance_nusd


def nothing_written(team) -> bool:
    return (
        not LedgerEntry.objects.filter(wallet__team=team).exists()
        and not StripeEvent.objects.exists()
        and not AuditLog.objects.filter(action__startswith="billing.topup").exists()
    )


def test_a_paid_checkout_session_credits_the_wallet_and_tells_the_billing_contacts(
    client, team, pending_topup, admin_user, billing_user, developer
):
    response = post(client, event("checkout.session.completed", checkout_session(pending_topup)))

    assert response.status_code == 200
    assert balance(team) == 2500 * CENT
    entry = LedgerEntry.objects.get(wallet__team=team)
    assert (entry.kind, entry.amount_nusd, entry.reference) == (LedgerKind.TOPUP, 2500 * CENT, pending_topup.public_id)
    pending_topup.refresh_from_db()
    assert pending_topup.status == TopUpStatus.PAID
    assert pending_topup.stripe_payment_intent_id == "pi_test_checkout_1"
    assert AuditLog.objects.filter(action="billing.topup_credited", team=team, target=pending_topup.public_id).exists()
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted(
        ["olivia.owner@acme.test", "adam.admin@acme.test", "bill.billing@acme.test"]
    )
    assert "$25.00" in mail.outbox[0].subject and "New balance: $25.00" in mail.outbox[0].body
    assert Wallet.objects.get(team=team).stripe_customer_id == "cus_test_acme"


def test_it_refuses_a_bad_signature_and_credits_nothing(client, team, pending_topup):
    payload = event("checkout.session.completed", checkout_session(pending_topup))

    response = post(client, payload, signature=sign(payload, secret="whsec_somebody_else"))

    assert response.status_code == 400
    assert balance(team) == 0 and nothing_written(team)
    assert TopUp.objects.get().status == TopUpStatus.PENDING


@pytest.mark.parametrize("signature", ["", "garbage", "t=notanumber,v1=abc", "t=1700000000"])
def test_it_refuses_a_missing_or_malformed_signature(client, team, pending_topup, signature):
    payload = event("checkout.session.completed", checkout_session(pending_topup))

    assert post(client, payload, signature=signature).status_code == 400
    assert balance(team) == 0 and nothing_written(team)


def test_it_refuses_a_body_altered_after_signing(client, team, pending_topup):
    payload = event("checkout.session.completed", checkout_session(pending_topup))
    tampered = payload.replace(b'"amount_total": 2500', b'"amount_total": 999999')

    assert post(client, tampered, signature=sign(payload)).status_code == 400
    assert balance(team) == 0 and nothing_written(team)


def test_it_refuses_a_stale_timestamp(client, team, pending_topup):
    payload = event("checkout.session.completed", checkout_session(pending_topup))

    response = post(client, payload, signature=sign(payload, timestamp=int(time.time()) - 301))

    assert response.status_code == 400
    assert balance(team) == 0 and nothing_written(team)


def test_it_refuses_every_webhook_while_no_endpoint_secret_is_configured(client, team, pending_topup, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = event("checkout.session.completed", checkout_session(pending_topup))

    assert post(client, payload).status_code == 400
    assert balance(team) == 0 and nothing_written(team)


def test_the_same_event_delivered_ten_times_credits_once(client, team, pending_topup):
    payload = event("checkout.session.completed", checkout_session(pending_topup))

    statuses = [post(client, payload).status_code for _ in range(10)]

    assert statuses == [200] * 10
    assert balance(team) == 2500 * CENT
    assert LedgerEntry.objects.filter(wallet__team=team).count() == 1
    assert StripeEvent.objects.get().status == "processed"
    assert len(mail.outbox) == 1


def test_completed_and_async_succeeded_events_for_one_session_credit_once(client, team, pending_topup):
    session = checkout_session(pending_topup)
    post(client, event("checkout.session.completed", session))
    response = post(client, event("checkout.session.async_payment_succeeded", session))

    assert response.status_code == 200 and response.json()["detail"] == "already credited"
    assert balance(team) == 2500 * CENT
    assert StripeEvent.objects.count() == 2


def test_an_unpaid_session_is_recorded_without_credit_until_its_payment_succeeds(client, team, pending_topup):
    response = post(
        client, event("checkout.session.completed", checkout_session(pending_topup, payment_status="unpaid"))
    )
    assert response.status_code == 200
    assert balance(team) == 0
    assert TopUp.objects.get().status == TopUpStatus.PENDING
    assert StripeEvent.objects.get().error.startswith("not paid yet")

    post(client, event("checkout.session.async_payment_succeeded", checkout_session(pending_topup)))
    assert balance(team) == 2500 * CENT


def test_async_success_arriving_before_completion_still_credits_once(client, team, pending_topup):
    post(client, event("checkout.session.async_payment_succeeded", checkout_session(pending_topup)))
    post(client, event("checkout.session.completed", checkout_session(pending_topup, payment_status="unpaid")))
    post(client, event("checkout.session.completed", checkout_session(pending_topup)))

    assert balance(team) == 2500 * CENT
    assert TopUp.objects.get().status == TopUpStatus.PAID


def test_a_refund_after_a_top_up_nets_out_even_when_refund_events_repeat(client, team, pending_topup):
    post(client, event("checkout.session.completed", checkout_session(pending_topup)))
    partial = event(
        "charge.refunded", charge(payment_intent="pi_test_checkout_1", amount_cents=2500, refunded_cents=1000)
    )
    post(client, partial)
    post(client, partial)  # redelivered
    assert balance(team) == 1500 * CENT
    assert TopUp.objects.get().status == TopUpStatus.PARTIALLY_REFUNDED

    # A later, different event repeats the cumulative total and adds the rest.
    post(
        client,
        event("charge.refunded", charge(payment_intent="pi_test_checkout_1", amount_cents=2500, refunded_cents=1000)),
    )
    post(
        client,
        event("charge.refunded", charge(payment_intent="pi_test_checkout_1", amount_cents=2500, refunded_cents=2500)),
    )

    assert balance(team) == 0
    refunds = LedgerEntry.objects.filter(wallet__team=team, kind=LedgerKind.REFUND)
    assert sorted(e.amount_nusd for e in refunds) == [-1500 * CENT, -1000 * CENT]
    topup = TopUp.objects.get()
    assert (topup.status, topup.refunded_nusd) == (TopUpStatus.REFUNDED, 2500 * CENT)
    assert AuditLog.objects.filter(action="billing.topup_refunded").count() == 2


def test_a_refund_that_arrives_before_its_top_up_is_deferred_then_applied_on_redelivery(client, team, pending_topup):
    Wallet.objects.filter(team=team).update(stripe_customer_id="cus_test_acme")
    refund = event(
        "charge.refunded", charge(payment_intent="pi_test_checkout_1", amount_cents=2500, refunded_cents=2500)
    )

    early = post(client, refund)
    assert early.status_code == 409  # not 2xx: Stripe delivers it again later
    assert balance(team) == 0
    assert StripeEvent.objects.get().status == "deferred"

    post(client, event("checkout.session.completed", checkout_session(pending_topup)))
    assert balance(team) == 2500 * CENT
    assert post(client, refund).status_code == 200
    assert post(client, refund).status_code == 200

    assert balance(team) == 0
    assert LedgerEntry.objects.filter(wallet__team=team, kind=LedgerKind.REFUND).count() == 1


def test_a_refund_for_a_payment_that_is_not_ours_is_acknowledged_and_ignored(client, team, pending_topup):
    response = post(
        client,
        event(
            "charge.refunded",
            charge(
                payment_intent="pi_someone_else", amount_cents=900, refunded_cents=900, customer="cus_other_product"
            ),
        ),
    )

    assert response.status_code == 200
    assert StripeEvent.objects.get().error == "ignored: not a Tollgate payment"
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("event_type", ["customer.created", "invoice.paid", "payment_intent.created", "x.y"])
def test_other_events_are_recorded_as_ignored_and_acknowledged(client, team, event_type):
    response = post(client, event(event_type, {"id": "obj_1", "object": "thing"}, event_id="evt_other_1"))

    assert response.status_code == 200
    stored = StripeEvent.objects.get()
    assert (stored.event_id, stored.type, stored.status) == ("evt_other_1", event_type, "ignored")
    assert not LedgerEntry.objects.exists()


def test_an_expired_session_marks_the_top_up_failed_without_money(client, team, pending_topup):
    post(client, event("checkout.session.expired", checkout_session(pending_topup, payment_status="unpaid")))

    assert TopUp.objects.get().status == TopUpStatus.FAILED
    assert balance(team) == 0


def test_a_session_in_another_currency_is_recorded_as_rejected_and_credits_nothing(client, team, pending_topup):
    session = checkout_session(pending_topup) | {"currency": "eur"}

    response = post(client, event("checkout.session.completed", session))

    assert response.status_code == 200
    assert StripeEvent.objects.get().status == "rejected"
    assert balance(team) == 0


def test_a_paid_session_whose_top_up_row_is_missing_is_rebuilt_from_its_metadata(client, team, pending_topup):
    session = checkout_session(pending_topup)
    TopUp.objects.all().delete()

    post(client, event("checkout.session.completed", session))

    assert balance(team) == 2500 * CENT
    assert TopUp.objects.get().stripe_session_id == session["id"]


def test_a_checkout_payment_intent_event_remembers_the_card_for_auto_recharge(client, team, pending_topup):
    intent = {
        "id": "pi_test_checkout_1",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 2500,
        "amount_received": 2500,
        "customer": "cus_test_acme",
        "payment_method": "pm_test_visa",
        "setup_future_usage": "off_session",
        "metadata": {
            "tollgate_team": team.public_id,
            "tollgate_topup": pending_topup.public_id,
            "tollgate_kind": "checkout",
        },
    }

    post(client, event("payment_intent.succeeded", intent))

    wallet = Wallet.objects.get(team=team)
    assert (wallet.stripe_customer_id, wallet.stripe_payment_method_id) == ("cus_test_acme", "pm_test_visa")
    assert wallet.balance_nusd == 0  # the Checkout session event is what credits


def test_a_webhook_response_never_contains_the_secret(client, team, pending_topup, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_must_not_leak_123"
    payload = event("checkout.session.completed", checkout_session(pending_topup, payment_intent=None))
    for response in (post(client, payload), post(client, payload, signature="bad")):
        assert b"sk_test_must_not_leak" not in response.content
        assert WHSEC.encode() not in response.content
