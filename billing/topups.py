"""Buying credit with Stripe: Checkout top-ups, webhook events, refunds and auto-recharge.

Idempotency lives in the database, never in memory: a webhook event id is stored uniquely
(`StripeEvent`), a top-up is keyed by its unique Checkout session / PaymentIntent id, and every money
movement is guarded by a conditional status transition (`UPDATE … WHERE status IN (pending, failed)`),
so the same payment credits once however many times, in whatever order and however concurrently
Stripe (or our own task) reports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role, Team, User
from accounts.permissions import Action
from accounts.services import audit, require
from billing import events, signals, stripe_client
from billing.errors import BillingError
from billing.models import LedgerEntry, LedgerKind, StripeEvent, TopUp, TopUpStatus, Wallet
from billing.money import NUSD_PER_CENT, usd
from billing.services import _post, ensure_wallet
from config import emails
from config.background import enqueue
from config.ids import new_id

log = logging.getLogger(__name__)

MIN_TOPUP_CENTS = 500  # $5
MAX_TOPUP_CENTS = 1_000_000  # $10,000
MAX_THRESHOLD_CENTS = 1_000_000
AUTO_RECHARGE_STALE_AFTER = timedelta(minutes=10)

BILLING_CONTACT_ROLES = (Role.OWNER, Role.ADMIN, Role.BILLING)
CREDITABLE = (TopUpStatus.PENDING, TopUpStatus.FAILED)  # money received is the truth, even after an expiry


class TopUpError(BillingError):
    """A refused top-up or setting; `message` is safe to show to the user, `detail` is for the log only."""

    def __init__(self, code: str, message: str, *, detail: str = "") -> None:
        super().__init__(code, message)
        self.detail = detail


class Deferred(Exception):
    """The event refers to a payment we have not credited yet; answer non-2xx so Stripe redelivers it later."""


class EventRejected(Exception):
    """The event is ours but cannot be honoured as sent (wrong currency, no amount): recorded as failed, 200."""


# --- amounts -----------------------------------------------------------------------------------


def validate_amount_cents(value: Any, *, field: str = "amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TopUpError("invalid_amount", f"The {field} must be a whole number of cents.")
    if not MIN_TOPUP_CENTS <= value <= MAX_TOPUP_CENTS:
        raise TopUpError("invalid_amount", f"The {field} must be between $5 and $10,000.")
    return value


def parse_usd_to_cents(text: Any, *, field: str = "amount") -> int:
    """Form/API input such as "25", "25.5" or "25.50" to cents; anything finer than a cent is refused."""
    if isinstance(text, bool) or not isinstance(text, (str, int, Decimal)):
        raise TopUpError("invalid_amount", f"The {field} must be a number of dollars, e.g. 25 or 25.50.")
    try:
        value = Decimal(str(text).strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        raise TopUpError("invalid_amount", f"The {field} must be a number of dollars, e.g. 25 or 25.50.")
    if not value.is_finite():
        raise TopUpError("invalid_amount", f"The {field} must be a number of dollars, e.g. 25 or 25.50.")
    cents = value * 100
    if cents != cents.to_integral_value():
        raise TopUpError("invalid_amount", f"The {field} cannot have fractions of a cent.")
    if abs(cents) > 10**12:
        raise TopUpError("invalid_amount", f"The {field} is too large.")
    return int(cents)


# --- checkout ------------------------------------------------------------------------------------


def _customer_for(team: Team, wallet: Wallet, actor: User) -> str:
    if wallet.stripe_customer_id:
        return wallet.stripe_customer_id
    customer_id = stripe_client.create_customer(
        name=team.name,
        email=actor.email,
        team_public_id=team.public_id,
        idempotency_key=f"tollgate-customer-{team.public_id}-{actor.pk}",
    )
    # Two concurrent first top-ups: the first stored customer wins (Stripe's idempotency key makes them one anyway).
    Wallet.objects.filter(pk=wallet.pk, stripe_customer_id="").update(stripe_customer_id=customer_id)
    return Wallet.objects.values_list("stripe_customer_id", flat=True).get(pk=wallet.pk)


def start_checkout(team: Team, amount_cents: int, actor: User, *, ip: str | None = None) -> str:
    """Create a pending top-up and its Stripe Checkout session; return the URL to send the buyer to."""
    amount_cents = validate_amount_cents(amount_cents)
    require(actor, team, Action.BILLING_MANAGE)
    if not stripe_client.is_configured():
        raise TopUpError("stripe_not_configured", stripe_client.CARD_PAYMENTS_OFF)
    wallet = ensure_wallet(team)
    topup_id = new_id("topup")
    metadata = {"tollgate_team": team.public_id, "tollgate_topup": topup_id, "tollgate_kind": "checkout"}
    base = settings.PUBLIC_BASE_URL
    try:
        customer_id = _customer_for(team, wallet, actor)
        session = stripe_client.create_checkout_session(
            customer_id=customer_id,
            amount_cents=amount_cents,
            metadata=metadata,
            success_url=f"{base}{reverse('billing:topup_success')}?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base}{reverse('billing:topup_cancel')}?topup={topup_id}",
            idempotency_key=f"tollgate-checkout-{topup_id}",
        )
    except stripe_client.StripeUnavailable as exc:
        raise TopUpError("stripe_unavailable", str(exc), detail=exc.detail)
    with transaction.atomic():
        TopUp.objects.create(
            public_id=topup_id,
            team=team,
            kind="checkout",
            amount_nusd=amount_cents * NUSD_PER_CENT,
            stripe_session_id=session.id,
            created_by=actor,
        )
        audit(
            "billing.topup_started",
            team=team,
            actor=actor,
            target=topup_id,
            ip=ip,
            amount_usd=usd(amount_cents * NUSD_PER_CENT),
        )
    return session.url


# --- crediting -------------------------------------------------------------------------------------


def _credit(topup: TopUp, *, amount_nusd: int, payment_intent_id: str, kind: str, reason: str) -> LedgerEntry | None:
    """Pending/failed → paid, then the ledger credit. Returns None when someone already credited it.

    The conditional UPDATE is the guard: a concurrent transaction doing the same waits on the row lock
    and then matches zero rows (PostgreSQL re-checks the WHERE after the first commits)."""
    changes: dict[str, Any] = {"status": TopUpStatus.PAID, "credited_at": timezone.now(), "amount_nusd": amount_nusd}
    if payment_intent_id:
        changes["stripe_payment_intent_id"] = payment_intent_id
    if not TopUp.objects.filter(pk=topup.pk, status__in=CREDITABLE).update(**changes):
        return None
    wallet = ensure_wallet(topup.team)
    entry = _post(wallet.pk, kind=kind, amount_nusd=amount_nusd, reference=topup.public_id, reason=reason)
    events.topup_succeeded(topup, entry)
    audit(
        "billing.topup_credited",
        team=topup.team,
        actor=None,
        actor_label="stripe",
        target=topup.public_id,
        amount_usd=usd(amount_nusd),
        kind=topup.kind,
        payment_intent=payment_intent_id,
    )
    _after_commit_credit(topup.team_id, entry.pk, topup.public_id)
    return entry


def _after_commit_credit(team_id: int, entry_id: int, topup_public_id: str) -> None:
    def notify() -> None:
        entry = LedgerEntry.objects.select_related("wallet__team").get(pk=entry_id)
        signals.wallet_credited.send(sender=Wallet, wallet=entry.wallet, entry=entry)
        _email(
            billing_contacts(entry.wallet.team),
            "topup_credited",
            team=entry.wallet.team,
            amount=usd(entry.amount_nusd),
            balance=usd(entry.balance_after_nusd),
            topup_id=topup_public_id,
            auto=entry.kind == LedgerKind.AUTO_RECHARGE,
        )

    transaction.on_commit(notify)


def _team_from_metadata(metadata: dict) -> Team | None:
    public_id = str(metadata.get("tollgate_team") or "")
    return Team.objects.filter(public_id=public_id).first() if public_id else None


def _topup_for_session(session: dict) -> TopUp | None:
    session_id = str(session.get("id") or "")
    metadata = session.get("metadata") or {}
    topup = TopUp.objects.select_for_update().filter(stripe_session_id=session_id).first()
    if topup is None and metadata.get("tollgate_topup"):
        topup = TopUp.objects.select_for_update().filter(public_id=metadata["tollgate_topup"]).first()
    if topup is None:
        # The row write after creating the session failed, yet the buyer paid: rebuild it from the metadata.
        team = _team_from_metadata(metadata)
        amount = int(session.get("amount_total") or 0) * NUSD_PER_CENT
        if team is None or amount <= 0:
            return None
        topup, _ = TopUp.objects.get_or_create(
            stripe_session_id=session_id,
            defaults={
                "team": team,
                "amount_nusd": amount,
                "public_id": metadata.get("tollgate_topup") or new_id("topup"),
            },
        )
        topup = TopUp.objects.select_for_update().get(pk=topup.pk)
    return topup


def credit_checkout_session(session: dict) -> str:
    """A completed (or async-succeeded) Checkout session; credits once when it is paid."""
    topup = _topup_for_session(session)
    if topup is None:
        return "ignored: not a Tollgate session"
    wallet = ensure_wallet(topup.team)
    customer_id = stripe_client.id_of(session.get("customer"))
    if customer_id and not wallet.stripe_customer_id:
        Wallet.objects.filter(pk=wallet.pk, stripe_customer_id="").update(stripe_customer_id=customer_id)
    pi = session.get("payment_intent")
    pi_id = stripe_client.id_of(pi)
    if session.get("payment_status") != "paid":
        return f"not paid yet (payment_status={session.get('payment_status')})"
    if str(session.get("currency") or "usd").lower() != stripe_client.CURRENCY:
        raise EventRejected(f"unexpected currency {session.get('currency')!r}")
    amount_nusd = int(session.get("amount_total") or 0) * NUSD_PER_CENT
    if amount_nusd <= 0:
        raise EventRejected("paid session without an amount")
    entry = _credit(
        topup,
        amount_nusd=amount_nusd,
        payment_intent_id=pi_id,
        kind=LedgerKind.TOPUP,
        reason=f"Stripe Checkout {session.get('id')}",
    )
    if isinstance(pi, dict) and pi.get("payment_method"):
        _save_payment_method(wallet.pk, customer_id, stripe_client.id_of(pi["payment_method"]))
    elif pi_id and stripe_client.is_configured():
        transaction.on_commit(lambda: _enqueue_payment_method_sync(wallet.pk, pi_id))
    return "credited" if entry else "already credited"


def _enqueue_payment_method_sync(wallet_id: int, payment_intent_id: str) -> None:
    enqueue("billing.tasks.save_payment_method", wallet_id, payment_intent_id)


def _save_payment_method(wallet_id: int, customer_id: str, payment_method_id: str) -> None:
    if not payment_method_id:
        return
    changes: dict[str, Any] = {"stripe_payment_method_id": payment_method_id}
    if customer_id:
        changes["stripe_customer_id"] = customer_id
    Wallet.objects.filter(pk=wallet_id).update(**changes)


def sync_payment_method(wallet_id: int, payment_intent_id: str) -> str:
    """Remember the card a Checkout payment used, for auto-recharge (the session event does not carry it)."""
    intent = stripe_client.retrieve_payment_intent(payment_intent_id)
    if intent.get("setup_future_usage") not in (None, "off_session") or intent.get("status") != "succeeded":
        return "skipped"
    _save_payment_method(
        wallet_id, stripe_client.id_of(intent.get("customer")), stripe_client.id_of(intent.get("payment_method"))
    )
    return "saved"


def fail_checkout_session(session: dict) -> str:
    topup = (
        TopUp.objects.select_for_update()
        .filter(stripe_session_id=str(session.get("id") or ""), status=TopUpStatus.PENDING)
        .first()
    )
    if topup is None:
        return "ignored: nothing pending"
    TopUp.objects.filter(pk=topup.pk).update(status=TopUpStatus.FAILED)
    events.topup_failed(topup, "checkout_expired" if session.get("status") == "expired" else "payment_failed")
    return "marked failed"


def payment_intent_succeeded(intent: dict) -> str:
    """Auto-recharge intents credit here if our task did not (it crashed, or the payment was processing);
    Checkout intents tell us which card to keep for auto-recharge."""
    metadata = intent.get("metadata") or {}
    team = _team_from_metadata(metadata)
    if team is None:
        return "ignored: not a Tollgate payment"
    wallet = ensure_wallet(team)
    customer_id = stripe_client.id_of(intent.get("customer"))
    if intent.get("setup_future_usage") == "off_session" or metadata.get("tollgate_kind") == "checkout":
        _save_payment_method(wallet.pk, customer_id, stripe_client.id_of(intent.get("payment_method")))
    if metadata.get("tollgate_kind") != "auto_recharge":
        return "payment method saved"
    pi_id = str(intent.get("id") or "")
    topup = (
        TopUp.objects.select_for_update().filter(stripe_payment_intent_id=pi_id).first()
        or TopUp.objects.select_for_update().filter(public_id=metadata.get("tollgate_topup") or "", team=team).first()
    )
    if topup is None:
        return "ignored: unknown auto-recharge"
    amount_nusd = int(intent.get("amount_received") or intent.get("amount") or 0) * NUSD_PER_CENT
    entry = _credit(
        topup,
        amount_nusd=amount_nusd,
        payment_intent_id=pi_id,
        kind=LedgerKind.AUTO_RECHARGE,
        reason=f"Auto-recharge {pi_id}",
    )
    Wallet.objects.filter(pk=wallet.pk).update(auto_recharge_in_flight_since=None, auto_recharge_last_error="")
    return "credited" if entry else "already credited"


# --- refunds ---------------------------------------------------------------------------------------


def apply_refund(charge: dict) -> str:
    """charge.refunded: debit what was refunded beyond what we already debited (`amount_refunded` is cumulative,
    so repeated and partial refund events net out)."""
    pi_id = stripe_client.id_of(charge.get("payment_intent"))
    topup = (
        TopUp.objects.select_for_update().select_related("team").filter(stripe_payment_intent_id=pi_id).first()
        if pi_id
        else None
    )
    if topup is None or topup.status not in (TopUpStatus.PAID, TopUpStatus.PARTIALLY_REFUNDED, TopUpStatus.REFUNDED):
        customer_id = stripe_client.id_of(charge.get("customer"))
        ours = bool((charge.get("metadata") or {}).get("tollgate_team")) or (
            customer_id and Wallet.objects.filter(stripe_customer_id=customer_id).exists()
        )
        if ours:
            raise Deferred("refund for a payment that is not credited yet")
        return "ignored: not a Tollgate payment"
    refunded_nusd = min(int(charge.get("amount_refunded") or 0) * NUSD_PER_CENT, topup.amount_nusd)
    delta = refunded_nusd - topup.refunded_nusd
    if delta <= 0:
        return "already refunded"
    status = TopUpStatus.REFUNDED if refunded_nusd >= topup.amount_nusd else TopUpStatus.PARTIALLY_REFUNDED
    TopUp.objects.filter(pk=topup.pk).update(refunded_nusd=refunded_nusd, status=status)
    wallet = ensure_wallet(topup.team)
    entry = _post(
        wallet.pk,
        kind=LedgerKind.REFUND,
        amount_nusd=-delta,
        reference=topup.public_id,
        reason=f"Stripe refund on {pi_id}",
    )
    audit(
        "billing.topup_refunded",
        team=topup.team,
        actor_label="stripe",
        target=topup.public_id,
        amount_usd=usd(delta),
        refunded_total_usd=usd(refunded_nusd),
    )
    transaction.on_commit(
        lambda: signals.wallet_credited.send(sender=Wallet, wallet=Wallet.objects.get(pk=wallet.pk), entry=entry)
    )
    return f"debited {usd(delta)}"


# --- webhook events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventOutcome:
    status: str  # processed, ignored, duplicate, deferred, failed
    detail: str
    http_status: int = 200


REPROCESSABLE = ("deferred", "failed")


def _dispatch(event_type: str, obj: dict) -> tuple[str, str]:
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        return "processed", credit_checkout_session(obj)
    if event_type in ("checkout.session.async_payment_failed", "checkout.session.expired"):
        return "processed", fail_checkout_session(obj)
    if event_type == "charge.refunded":
        return "processed", apply_refund(obj)
    if event_type == "payment_intent.succeeded":
        return "processed", payment_intent_succeeded(obj)
    return "ignored", ""


def process_event(event: dict) -> EventOutcome:
    """Store the event id, then act, in one transaction. A repeat of a finished event changes nothing."""
    event_id, event_type = str(event["id"]), str(event["type"])
    data = event.get("data") or {}
    obj = data.get("object") if isinstance(data, dict) else None
    try:
        with transaction.atomic():
            row, created = StripeEvent.objects.get_or_create(event_id=event_id, defaults={"type": event_type[:100]})
            if not created:
                row = StripeEvent.objects.select_for_update().get(pk=row.pk)
                if row.status not in REPROCESSABLE:
                    return EventOutcome("duplicate", f"already {row.status}")
            status, detail = _dispatch(event_type, obj if isinstance(obj, dict) else {})
            row.status, row.error, row.processed_at = status, detail[:1000], timezone.now()
            row.save(update_fields=["status", "error", "processed_at"])
            return EventOutcome(status, detail)
    except Deferred as exc:
        _record_unfinished(event_id, event_type, "deferred", str(exc))
        return EventOutcome("deferred", str(exc), http_status=409)
    except EventRejected as exc:
        log.warning("stripe event %s (%s) rejected: %s", event_id, event_type, exc)
        _record_unfinished(event_id, event_type, "rejected", str(exc))
        return EventOutcome("rejected", str(exc))
    except Exception as exc:
        log.exception("stripe event %s (%s) failed", event_id, event_type)
        _record_unfinished(event_id, event_type, "failed", f"{type(exc).__name__}: {exc}")
        return EventOutcome("failed", "could not process the event", http_status=500)


def _record_unfinished(event_id: str, event_type: str, status: str, error: str) -> None:
    """Keep a trace of an event we will see again; its redelivery is processed, not skipped."""
    try:
        with transaction.atomic():
            StripeEvent.objects.update_or_create(
                event_id=event_id, defaults={"type": event_type[:100], "status": status, "error": error[:1000]}
            )
    except IntegrityError:  # a concurrent delivery of the same event got there first
        pass


# --- auto-recharge -----------------------------------------------------------------------------------


def update_auto_recharge(
    team: Team, *, actor: User, enabled: bool, threshold_cents: int, amount_cents: int, ip: str | None = None
) -> Wallet:
    require(actor, team, Action.BILLING_MANAGE)
    if not isinstance(enabled, bool):
        raise TopUpError("invalid_request", "enabled must be true or false.")
    amount_cents = validate_amount_cents(amount_cents, field="recharge amount")
    if isinstance(threshold_cents, bool) or not isinstance(threshold_cents, int):
        raise TopUpError("invalid_threshold", "The threshold must be a whole number of cents.")
    if not 0 <= threshold_cents <= MAX_THRESHOLD_CENTS:
        raise TopUpError("invalid_threshold", "The threshold must be between $0 and $10,000.")
    wallet = ensure_wallet(team)
    if enabled and not stripe_client.is_configured():
        raise TopUpError("stripe_not_configured", stripe_client.CARD_PAYMENTS_OFF)
    if enabled and not (wallet.stripe_customer_id and wallet.stripe_payment_method_id):
        raise TopUpError("no_saved_card", "Top up once by card first; auto-recharge charges the card saved then.")
    with transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(
            auto_recharge_enabled=enabled,
            auto_recharge_threshold_nusd=threshold_cents * NUSD_PER_CENT,
            auto_recharge_amount_nusd=amount_cents * NUSD_PER_CENT,
            **({"auto_recharge_last_error": ""} if enabled else {}),
        )
        audit(
            "billing.auto_recharge_updated",
            team=team,
            actor=actor,
            ip=ip,
            enabled=enabled,
            threshold_usd=usd(threshold_cents * NUSD_PER_CENT),
            amount_usd=usd(amount_cents * NUSD_PER_CENT),
        )
    wallet.refresh_from_db()
    return wallet


def needs_auto_recharge(wallet: Wallet, *, now: datetime | None = None) -> bool:
    """The cheap, query-free check run after every settlement."""
    if not (wallet.auto_recharge_enabled and wallet.stripe_payment_method_id and stripe_client.is_configured()):
        return False
    if wallet.available_nusd >= wallet.auto_recharge_threshold_nusd:
        return False
    since = wallet.auto_recharge_in_flight_since
    return since is None or since < (now or timezone.now()) - AUTO_RECHARGE_STALE_AFTER


def _claim(wallet_id: int, now: datetime) -> bool:
    """At most one attempt in flight per team: whoever flips in_flight_since first runs the charge."""
    return bool(
        Wallet.objects.filter(
            pk=wallet_id,
            auto_recharge_enabled=True,
            balance_nusd__lt=F("held_nusd") + F("auto_recharge_threshold_nusd"),
        )
        .exclude(stripe_payment_method_id="")
        .exclude(stripe_customer_id="")
        .filter(
            Q(auto_recharge_in_flight_since__isnull=True)
            | Q(auto_recharge_in_flight_since__lt=now - AUTO_RECHARGE_STALE_AFTER)
        )
        .update(auto_recharge_in_flight_since=now)
    )


def run_auto_recharge(wallet_id: int, *, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if not stripe_client.is_configured() or not _claim(wallet_id, now):
        return "skipped"
    wallet = Wallet.objects.select_related("team").get(pk=wallet_id)
    amount_cents = wallet.auto_recharge_amount_nusd // NUSD_PER_CENT
    topup = TopUp.objects.create(team=wallet.team, kind="auto_recharge", amount_nusd=amount_cents * NUSD_PER_CENT)
    metadata = {
        "tollgate_team": wallet.team.public_id,
        "tollgate_topup": topup.public_id,
        "tollgate_kind": "auto_recharge",
    }
    try:
        charge = stripe_client.charge_off_session(
            customer_id=wallet.stripe_customer_id,
            payment_method_id=wallet.stripe_payment_method_id,
            amount_cents=amount_cents,
            metadata=metadata,
            idempotency_key=f"tollgate-auto-recharge-{topup.public_id}",
        )
    except stripe_client.PaymentDeclined as exc:
        _auto_recharge_failed(wallet, topup, str(exc), exc.payment_intent_id)
        return "declined"
    except stripe_client.StripeUnavailable as exc:
        # Outcome unknown: keep the claim (it goes stale in 10 minutes) so we do not hammer Stripe;
        # if the charge did happen, its payment_intent.succeeded webhook credits this top-up.
        with transaction.atomic():
            if TopUp.objects.filter(pk=topup.pk, status=TopUpStatus.PENDING).update(status=TopUpStatus.FAILED):
                events.topup_failed(topup, "stripe_unavailable")
        Wallet.objects.filter(pk=wallet.pk).update(auto_recharge_last_error=str(exc)[:300])
        return "unavailable"
    with transaction.atomic():
        if charge.status != "succeeded":  # processing: the webhook credits it when it settles
            TopUp.objects.filter(pk=topup.pk).update(stripe_payment_intent_id=charge.payment_intent_id)
            return "processing"
        topup = TopUp.objects.select_for_update().select_related("team").get(pk=topup.pk)
        _credit(
            topup,
            amount_nusd=amount_cents * NUSD_PER_CENT,
            payment_intent_id=charge.payment_intent_id,
            kind=LedgerKind.AUTO_RECHARGE,
            reason=f"Auto-recharge {charge.payment_intent_id}",
        )
        Wallet.objects.filter(pk=wallet.pk).update(auto_recharge_in_flight_since=None, auto_recharge_last_error="")
    return "charged"


def _auto_recharge_failed(wallet: Wallet, topup: TopUp, message: str, payment_intent_id: str) -> None:
    with transaction.atomic():
        changes: dict[str, Any] = {"status": TopUpStatus.FAILED}
        if payment_intent_id and not TopUp.objects.filter(stripe_payment_intent_id=payment_intent_id).exists():
            changes["stripe_payment_intent_id"] = payment_intent_id
        if TopUp.objects.filter(pk=topup.pk, status=TopUpStatus.PENDING).update(**changes):
            events.topup_failed(topup, message)
        Wallet.objects.filter(pk=wallet.pk).update(
            auto_recharge_enabled=False, auto_recharge_in_flight_since=None, auto_recharge_last_error=message[:300]
        )
        audit(
            "billing.auto_recharge_failed",
            team=wallet.team,
            actor_label="auto-recharge",
            target=topup.public_id,
            error=message[:300],
        )
        team = wallet.team
        transaction.on_commit(
            lambda: _email(
                owners(team), "auto_recharge_failed", team=team, error=message, amount=usd(topup.amount_nusd)
            )
        )


# --- email ---------------------------------------------------------------------------------------------


def billing_contacts(team: Team) -> list[str]:
    return _emails(team, BILLING_CONTACT_ROLES)


def owners(team: Team) -> list[str]:
    return _emails(team, (Role.OWNER,))


def _emails(team: Team, roles) -> list[str]:
    return list(
        Membership.objects.filter(team=team, role__in=roles, user__is_active=True)
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )


def _email(recipients: list[str], template: str, **context) -> None:
    team = context.get("team")
    path = reverse("dashboard:billing", kwargs={"team_id": team.public_id}) if team else "/"
    emails.send(template, recipients, billing_url=settings.PUBLIC_BASE_URL + path, **context)
