"""Money rules outside the request path: credit, adjustments and the sweeper. Every change to a wallet's
balance happens in the same transaction as its ledger entry, so the wallet always equals the sum of its
ledger, and `held` always equals the sum of its open holds. The request path itself (hold, settle, release)
is billing.settlement.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing import spend
from billing.errors import BillingError
from billing.models import Hold, HoldLease, HoldStatus, LedgerEntry, LedgerKind, Wallet
from billing.signals import wallet_credited

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


def ensure_wallet(team) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(team=team)
    return wallet


def _post(
    wallet_id: int, *, kind: str, amount_nusd: int, reference: str = "", actor=None, reason: str = "", memo: str = ""
) -> LedgerEntry:
    """Move `amount_nusd` (signed) into the wallet and append the ledger entry. Caller holds a transaction."""
    assert transaction.get_connection().in_atomic_block, "_post must run inside a transaction"
    Wallet.objects.filter(pk=wallet_id).update(balance_nusd=F("balance_nusd") + amount_nusd, updated_at=timezone.now())
    balance_after = Wallet.objects.filter(pk=wallet_id).values_list("balance_nusd", flat=True).get()
    return LedgerEntry.objects.create(
        wallet_id=wallet_id,
        kind=kind,
        amount_nusd=amount_nusd,
        balance_after_nusd=balance_after,
        reference=reference,
        actor=actor,
        reason=reason,
        memo=memo,
    )


@transaction.atomic
def grant_credit(
    team,
    *,
    amount_nusd: int,
    actor=None,
    reason: str = "",
    memo: str = "",
    reference: str = "",
    kind: str = LedgerKind.GRANT,
) -> LedgerEntry:
    """Operator or seed credit: a ledger entry like any other. `reason` is internal, `memo` the customer's."""
    if amount_nusd <= 0:
        raise BillingError("invalid_amount", "A grant must be a positive amount.")
    wallet = ensure_wallet(team)
    return _post(
        wallet.pk, kind=kind, amount_nusd=amount_nusd, actor=actor, reason=reason, memo=memo, reference=reference
    )


def _send_wallet_credited(wallet_id: int, entry: LedgerEntry) -> None:
    if wallet_credited.has_listeners(Wallet):
        wallet_credited.send(sender=Wallet, wallet=Wallet.objects.get(pk=wallet_id), entry=entry)


# --- the sweeper --------------------------------------------------------------------------------------


def abandoned_holds(now: datetime):
    """Open holds nobody will end: their process's lease ran out (it died), or, for a hold without a lease
    (an asynchronous job's), its own expiry passed."""
    dead = HoldLease.objects.filter(expires_at__lte=now).values("pk")
    return Hold.objects.filter(status=HoldStatus.OPEN).filter(
        Q(lease__in=dead) | Q(lease__isnull=True, expires_at__lte=now)
    )


def release_abandoned_holds(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Give back credit reserved by requests whose process died. Returns how many holds were released.

    Each hold is released in its own short transaction that locks the wallet row first (the order the
    settlement statement uses too) and closes the hold with a conditional UPDATE (`status = 'open'`), so a
    settlement racing the sweeper wins or loses cleanly: exactly one of them releases the hold."""
    now = now or timezone.now()
    released = 0
    while released < limit:
        batch = list(
            abandoned_holds(now)
            .order_by("pk")
            .values_list("pk", "wallet_id", "amount_nusd")[: min(SWEEP_BATCH, limit - released)]
        )
        if not batch:
            break
        for pk, wallet_id, amount in batch:
            with transaction.atomic():
                Wallet.objects.select_for_update().filter(pk=wallet_id).values_list("pk", flat=True).get()
                if Hold.objects.filter(pk=pk, status=HoldStatus.OPEN).update(status=HoldStatus.EXPIRED, closed_at=now):
                    Wallet.objects.filter(pk=wallet_id).update(held_nusd=F("held_nusd") - amount, updated_at=now)
                    spend.move(pk, -amount)  # a key's or project's monthly counter, if the hold moved one
                    released += 1
        if len(batch) < SWEEP_BATCH:
            break
    if released:
        log.info("released %s abandoned hold(s)", released)
    return released
