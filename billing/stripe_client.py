"""The one module that talks to Stripe (and the only one importing `stripe`).

Everything returned crosses the boundary as plain dicts or small dataclasses: stripe 16 objects are
not dicts (`.get` does not exist on them), so callers never see one. Error messages are Stripe's
user-facing text or our own; the secret key never appears in a log line or an exception we raise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings
from stripe.params import CustomerCreateParams, PaymentIntentCreateParams
from stripe.params.checkout import SessionCreateParams

log = logging.getLogger(__name__)

CURRENCY = "usd"


class StripeNotConfigured(Exception):
    """For operators and logs (it names the setting); customers read CARD_PAYMENTS_OFF instead."""

    def __init__(self) -> None:
        super().__init__("Card payments are not configured on this server (STRIPE_SECRET_KEY is unset).")


# What customers read when card payments are off: no setting names, a way forward.
CARD_PAYMENTS_OFF = (
    "Card top-ups are not enabled on this installation. Redeem a credit code, or ask your administrator."
)
UNAVAILABLE_MESSAGE = (
    "Our payment provider could not be reached, so nothing was charged. Please try again in a few minutes."
)


class StripeUnavailable(Exception):
    """Stripe could not be reached or refused the request for a reason that is not the card's fault.

    `str()` is safe to show a customer; `detail` (exception type, Stripe's code and message, which can name
    internal hosts and ports) is for the log only."""

    def __init__(self, message: str = UNAVAILABLE_MESSAGE, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class PaymentDeclined(Exception):
    """The card was declined or needs the customer present (3-D Secure): off-session charging cannot work."""

    def __init__(self, message: str, *, code: str = "", payment_intent_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.payment_intent_id = payment_intent_id


class SignatureError(Exception):
    """A webhook whose Stripe-Signature does not verify (missing, wrong, altered or stale)."""


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True, slots=True)
class OffSessionCharge:
    payment_intent_id: str
    status: str  # "succeeded" or "processing" (anything else raises PaymentDeclined)


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str) -> stripe.StripeClient:
    base: dict[str, str] = {"api": api_base} if api_base else {}
    return stripe.StripeClient(api_key, base_addresses=base, max_network_retries=1)  # type: ignore[arg-type]


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise StripeNotConfigured()
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE or "")


def _unavailable(exc: stripe.StripeError) -> StripeUnavailable:
    """Never Stripe's own text for the customer: on a network failure it names the host and port we tried and
    sends them to Stripe's support. The detail goes to the log (an auth error's text can echo part of the
    secret key, so only its type and code are kept for those)."""
    secret_safe = not isinstance(exc, stripe.AuthenticationError | stripe.PermissionError)
    detail = f"{type(exc).__name__} (code={exc.code}, status={exc.http_status})"
    if secret_safe:
        detail += f": {exc.user_message or exc}"
    log.warning("stripe call failed: %s", detail)
    return StripeUnavailable(detail=detail)


def to_plain(obj: Any) -> Any:
    """A stripe object (or anything else) as plain dicts/lists."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return obj


def id_of(value: Any) -> str:
    """An expandable field: either an id string or an (expanded) object carrying `id`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("id") or "")
    if isinstance(value, stripe.StripeObject):
        return str(value["id"]) if "id" in value else ""
    return ""


def create_customer(*, name: str, email: str, team_public_id: str, idempotency_key: str) -> str:
    params: CustomerCreateParams = {"name": name, "metadata": {"tollgate_team": team_public_id}}
    if email:
        params["email"] = email
    try:
        customer = _client().v1.customers.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise _unavailable(exc)
    return str(customer["id"])


def create_checkout_session(
    *,
    customer_id: str,
    amount_cents: int,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
) -> CheckoutSession:
    params: SessionCreateParams = {
        "mode": "payment",
        "customer": customer_id,
        "client_reference_id": metadata.get("tollgate_team", ""),
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": CURRENCY,
                    "unit_amount": amount_cents,
                    "product_data": {"name": "Tollgate credit"},
                },
            }
        ],
        # Save the card on the customer so auto-recharge can charge it later without the buyer present.
        "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
        "metadata": metadata,
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    try:
        session = _client().v1.checkout.sessions.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise _unavailable(exc)
    return CheckoutSession(id=str(session["id"]), url=str(session["url"]))


def retrieve_payment_intent(payment_intent_id: str) -> dict[str, Any]:
    try:
        return to_plain(_client().v1.payment_intents.retrieve(payment_intent_id))
    except stripe.StripeError as exc:
        raise _unavailable(exc)


def charge_off_session(
    *, customer_id: str, payment_method_id: str, amount_cents: int, metadata: dict[str, str], idempotency_key: str
) -> OffSessionCharge:
    """Charge a saved card with nobody present. Declines and 3-D Secure requests raise PaymentDeclined."""
    params: PaymentIntentCreateParams = {
        "amount": amount_cents,
        "currency": CURRENCY,
        "customer": customer_id,
        "payment_method": payment_method_id,
        "off_session": True,
        "confirm": True,
        "metadata": metadata,
    }
    try:
        intent = to_plain(
            _client().v1.payment_intents.create(params=params, options={"idempotency_key": idempotency_key})
        )
    except stripe.CardError as exc:
        # Real Stripe returns the intent inside the error; keep its id so the later webhook matches.
        err = to_plain(exc.error) or {}
        pi_id = id_of(err.get("payment_intent")) if isinstance(err, dict) else ""
        raise PaymentDeclined(
            exc.user_message or "The card was declined.", code=str(exc.code or "card_declined"), payment_intent_id=pi_id
        )
    except stripe.StripeError as exc:
        raise _unavailable(exc)
    status = str(intent.get("status") or "")
    pi_id = str(intent.get("id") or "")
    if status in ("succeeded", "processing"):
        return OffSessionCharge(payment_intent_id=pi_id, status=status)
    if status == "requires_action":
        raise PaymentDeclined(
            "The bank asked for the cardholder to authenticate this payment, which cannot happen off-session.",
            code="authentication_required",
            payment_intent_id=pi_id,
        )
    error = intent.get("last_payment_error") or {}
    raise PaymentDeclined(
        str(error.get("message") or f"The payment did not go through ({status})."),
        code=str(error.get("code") or status),
        payment_intent_id=pi_id,
    )


def construct_event(payload: bytes, sig_header: str | None) -> dict[str, Any]:
    """Verify a webhook's signature over the raw body and return the event as plain dicts."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise SignatureError("STRIPE_WEBHOOK_SECRET is not set; webhooks cannot be verified.")
    try:
        event = stripe.Webhook.construct_event(
            payload, sig_header, secret, api_key=settings.STRIPE_SECRET_KEY or "sk_unset"
        )
    except stripe.SignatureVerificationError:
        raise SignatureError("Invalid Stripe signature.")
    except ValueError:  # signed, but not JSON
        raise SignatureError("Unreadable payload.")
    data = to_plain(event)
    if not isinstance(data, dict) or not data.get("id") or not data.get("type"):
        raise SignatureError("Not a Stripe event.")
    return data
