"""Billing's webhook events.

- `topup.succeeded` / `topup.failed`: billing.topups calls these inside the transaction that credits or fails the
  top-up, so the event commits (or rolls back) with the money. A top-up that failed can still be credited later
  (money that arrives is the truth: an expired Checkout paid late, an auto-recharge whose outcome Stripe could
  not tell us at once), which then sends `topup.succeeded` for the same id.
- `balance.low`: once each time the balance falls below the team's threshold. The receivers of the settlement
  and credit signals (billing.receivers) run a query-free check on the wallet they were handed and, only when the
  balance is on the other side of the threshold from the wallet's `low_balance` flag, queue `check_low_balance`,
  so a settlement never waits for it. There one conditional UPDATE flips the flag, so however many checks run
  at once, one of them sends the event; going back to or above the threshold re-arms it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F, Q

from accounts.models import Team, User
from accounts.permissions import Action
from accounts.services import audit, require
from billing.models import LedgerEntry, TopUp, TopUpStatus, Wallet
from billing.money import NUSD_PER_CENT, json_number, usd
from billing.services import ensure_wallet
from webhooks.events import emit

MAX_LOW_BALANCE_THRESHOLD_CENTS = 100_000_000  # $1,000,000


class AlertError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# --- top-ups -------------------------------------------------------------------------------------------------------


def topup_json(topup: TopUp, **fields: Any) -> dict[str, Any]:
    data = {
        "id": topup.public_id,
        "object": "topup",
        "kind": topup.kind,
        "status": topup.status,
        "amount": json_number(topup.amount_nusd),
        "amount_nusd": topup.amount_nusd,
        "currency": "usd",
        "created_at": topup.created_at,
        "credited_at": topup.credited_at,
        "balance_after": None,
        "failure_reason": None,
    }
    data.update(fields)
    return data


def topup_succeeded(topup: TopUp, entry: LedgerEntry) -> None:
    """Call right after the credit's ledger entry, in its transaction (`topup` may predate the status UPDATE)."""
    emit(
        team_id=topup.team_id,
        type="topup.succeeded",
        data=topup_json(
            topup,
            status=TopUpStatus.PAID.value,
            amount=json_number(entry.amount_nusd),
            amount_nusd=entry.amount_nusd,
            credited_at=entry.created_at,
            balance_after=json_number(entry.balance_after_nusd),
        ),
    )


def topup_failed(topup: TopUp, reason: str) -> None:
    """Call in the transaction that moved the top-up to failed."""
    emit(
        team_id=topup.team_id,
        type="topup.failed",
        data=topup_json(topup, status=TopUpStatus.FAILED.value, failure_reason=reason[:300]),
    )


# --- balance.low ---------------------------------------------------------------------------------------------------


def balance_json(wallet: Wallet) -> dict[str, Any]:
    """The /v1/balance shape plus the threshold."""
    return {
        "object": "balance",
        "credits": json_number(wallet.balance_nusd),
        "held_credits": json_number(wallet.held_nusd),
        "available_credits": json_number(wallet.available_nusd),
        "low_balance_threshold": (
            None if wallet.low_balance_threshold_nusd is None else json_number(wallet.low_balance_threshold_nusd)
        ),
        "currency": "usd",
    }


def needs_low_balance_check(wallet: Wallet) -> bool:
    """Query-free, on the wallet a settlement or credit just wrote: is it on the other side of its flag?"""
    threshold = wallet.low_balance_threshold_nusd
    below = threshold is not None and wallet.balance_nusd < threshold
    return below != wallet.low_balance


def check_low_balance(wallet_id: int) -> str:
    """Send balance.low if the balance is below the threshold and it has not been sent for this crossing;
    re-arm once the balance is back at or above it."""
    with transaction.atomic():
        fell = Wallet.objects.filter(
            pk=wallet_id,
            low_balance=False,
            low_balance_threshold_nusd__isnull=False,
            balance_nusd__lt=F("low_balance_threshold_nusd"),
        ).update(low_balance=True)
        if fell:
            wallet = Wallet.objects.get(pk=wallet_id)
            emit(team_id=wallet.team_id, type="balance.low", data=balance_json(wallet))
            return "low"
    rose = (
        Wallet.objects.filter(pk=wallet_id, low_balance=True)
        .filter(Q(low_balance_threshold_nusd__isnull=True) | Q(balance_nusd__gte=F("low_balance_threshold_nusd")))
        .update(low_balance=False)
    )
    return "re-armed" if rose else "unchanged"


def queue_low_balance_check(wallet_id: int) -> None:
    from config.background import enqueue

    enqueue("billing.tasks.check_low_balance", wallet_id)


def set_low_balance_threshold(team: Team, *, actor: User, threshold_cents: Any, ip: str | None = None) -> Wallet:
    """Set (or with None, turn off) the threshold. It re-arms: if the balance is already below the new
    threshold, balance.low is sent right away."""
    require(actor, team, Action.BILLING_MANAGE)
    if threshold_cents is not None:
        if isinstance(threshold_cents, bool) or not isinstance(threshold_cents, int):
            raise AlertError("invalid_threshold", "The threshold must be a whole number of cents.")
        if not 0 <= threshold_cents <= MAX_LOW_BALANCE_THRESHOLD_CENTS:
            raise AlertError("invalid_threshold", "The threshold must be between $0 and $1,000,000.")
    threshold_nusd = None if threshold_cents is None else threshold_cents * NUSD_PER_CENT
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=ensure_wallet(team).pk)
        old = wallet.low_balance_threshold_nusd
        Wallet.objects.filter(pk=wallet.pk).update(low_balance_threshold_nusd=threshold_nusd, low_balance=False)
        audit(
            "billing.low_balance_threshold_updated",
            team=team,
            actor=actor,
            ip=ip,
            old=None if old is None else usd(old),
            new=None if threshold_nusd is None else usd(threshold_nusd),
        )
        if threshold_nusd is not None:
            transaction.on_commit(lambda: queue_low_balance_check(wallet.pk))
    wallet.refresh_from_db()
    return wallet
