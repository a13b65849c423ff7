"""Stripe test helpers: events signed exactly as Stripe signs them, Checkout sessions and charges shaped like
Stripe's (2024+ API), and a pending top-up as start_checkout leaves it. No network."""

from __future__ import annotations

import json
import time

import stripe
from django.test import TestCase

from billing.models import TopUp
from billing.money import NUSD_PER_CENT

WHSEC = "whsec_tollgate_test_0123456789"
_counter = iter(range(1, 10**9))


def sign(payload: bytes, *, secret: str = WHSEC, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload.decode(), secret, timestamp or int(time.time()))


def event(event_type: str, obj: dict, *, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_test_{next(_counter):06d}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {"object": obj},
        },
        indent=2,
    ).encode()


def checkout_session(
    topup: TopUp,
    *,
    payment_status: str = "paid",
    amount_cents: int | None = None,
    payment_intent: str | None = "pi_test_checkout_1",
    customer: str = "cus_test_acme",
) -> dict:
    amount = amount_cents if amount_cents is not None else topup.amount_nusd // NUSD_PER_CENT
    return {
        "id": topup.stripe_session_id,
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": payment_status,
        "amount_total": amount,
        "amount_subtotal": amount,
        "currency": "usd",
        "customer": customer,
        "payment_intent": payment_intent,
        "client_reference_id": topup.team.public_id,
        "metadata": {
            "tollgate_team": topup.team.public_id,
            "tollgate_topup": topup.public_id,
            "tollgate_kind": "checkout",
        },
    }


def charge(*, payment_intent: str, amount_cents: int, refunded_cents: int, customer: str = "cus_test_acme") -> dict:
    return {
        "id": "ch_test_1",
        "object": "charge",
        "amount": amount_cents,
        "amount_captured": amount_cents,
        "amount_refunded": refunded_cents,
        "refunded": refunded_cents >= amount_cents,
        "currency": "usd",
        "customer": customer,
        "payment_intent": payment_intent,
        "metadata": {},
        "status": "succeeded",
    }


def post(client, payload: bytes, *, signature: str | None = None):
    """POST the exact bytes as Stripe would; after-commit work (emails, signals) runs as in production."""
    headers = {} if signature == "" else {"HTTP_STRIPE_SIGNATURE": signature or sign(payload)}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post("/billing/stripe/webhook/", data=payload, content_type="application/json", **headers)
