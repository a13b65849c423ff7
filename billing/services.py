"""Money rules: every change to a wallet's balance goes through `_post`, in the same transaction as
its ledger entry, so the wallet always equals the sum of its ledger."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from billing.models import LedgerEntry, LedgerKind, Wallet


class BillingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def ensure_wallet(team) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(team=team)
    return wallet


def _post(wallet_id: int, *, kind: str, amount_nusd: int, reference: str = "", actor=None,
          reason: str = "") -> LedgerEntry:
    """Move `amount_nusd` (signed) into the wallet and append the ledger entry. Caller holds a transaction."""
    assert transaction.get_connection().in_atomic_block, "_post must run inside a transaction"
    Wallet.objects.filter(pk=wallet_id).update(balance_nusd=F("balance_nusd") + amount_nusd)
    balance_after = Wallet.objects.filter(pk=wallet_id).values_list("balance_nusd", flat=True).get()
    return LedgerEntry.objects.create(
        wallet_id=wallet_id, kind=kind, amount_nusd=amount_nusd, balance_after_nusd=balance_after,
        reference=reference, actor=actor, reason=reason,
    )


@transaction.atomic
def grant_credit(team, *, amount_nusd: int, actor=None, reason: str = "", kind: str = LedgerKind.GRANT) -> LedgerEntry:
    """Operator or seed credit: a ledger entry like any other."""
    if amount_nusd <= 0:
        raise BillingError("invalid_amount", "A grant must be a positive amount.")
    wallet = ensure_wallet(team)
    return _post(wallet.pk, kind=kind, amount_nusd=amount_nusd, actor=actor, reason=reason)
