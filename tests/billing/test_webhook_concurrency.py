"""Concurrent redelivery on PostgreSQL: threads with their own connections race the same Stripe event."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from accounts.models import User
from accounts.services import create_team
from billing.models import LedgerEntry, StripeEvent, TopUp, TopUpStatus, Wallet
from billing.money import NUSD_PER_CENT
from tests.billing.stripe_fixtures import WHSEC, charge, checkout_session, event, post
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def race(payloads: list[bytes]) -> list[int]:
    """Deliver every payload at once, each from its own thread and database connection."""
    barrier = threading.Barrier(len(payloads))
    statuses: list[int] = []

    def deliver(payload: bytes) -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(post(Client(), payload).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return statuses


@pytest.fixture
def topup(settings):
    settings.STRIPE_WEBHOOK_SECRET = WHSEC
    settings.STRIPE_SECRET_KEY = ""
    owner = User.objects.create_user(email="olivia.owner@acme.test", password="x" * 12)
    team = create_team(name="Acme", slug="acme", owner=owner)
    return TopUp.objects.create(team=team, amount_nusd=2500 * NUSD_PER_CENT, stripe_session_id="cs_test_race")


def test_the_same_event_delivered_ten_times_concurrently_credits_once(topup):
    payload = event("checkout.session.completed", checkout_session(topup))

    statuses = race([payload] * 10)

    assert sorted(statuses) == [200] * 10
    assert Wallet.objects.get(team=topup.team).balance_nusd == 2500 * NUSD_PER_CENT
    assert LedgerEntry.objects.count() == 1
    assert StripeEvent.objects.count() == 1
    call_command("check_ledger")  # exits non-zero (SystemExit) if the wallet and its ledger disagree


def test_different_events_for_one_session_racing_credit_once(topup):
    session = checkout_session(topup)
    payloads = [event("checkout.session.completed", session) for _ in range(5)]
    payloads += [event("checkout.session.async_payment_succeeded", session) for _ in range(5)]

    statuses = race(payloads)

    assert sorted(statuses) == [200] * 10
    assert Wallet.objects.get(team=topup.team).balance_nusd == 2500 * NUSD_PER_CENT
    assert TopUp.objects.get().status == TopUpStatus.PAID
    assert StripeEvent.objects.count() == 10
    call_command("check_ledger")


def test_racing_refund_events_debit_the_refund_once(topup):
    post(Client(), event("checkout.session.completed", checkout_session(topup)))
    refunds = [
        event("charge.refunded", charge(payment_intent="pi_test_checkout_1", amount_cents=2500, refunded_cents=1000))
        for _ in range(8)
    ]

    race(refunds)

    assert Wallet.objects.get(team=topup.team).balance_nusd == 1500 * NUSD_PER_CENT
    call_command("check_ledger")
