"""Operator corrections to a wallet ("Adjust balance…" in the admin): a ledger entry and an audit row in one
transaction. The internal reason stays with operators; the memo is what the customer reads on Billing."""

from __future__ import annotations

from django.db import transaction

from accounts.services import audit
from billing import money
from billing.errors import BillingError
from billing.models import LedgerEntry, LedgerKind, Wallet
from billing.services import _post, _send_wallet_credited, ensure_wallet

# A typo in the admin must not mint a fortune; larger corrections take several adjustments.
MAX_ADJUSTMENT_NUSD = 1_000_000 * money.NUSD_PER_USD
MAX_TEXT = 300


def adjust_balance(
    team, amount_nusd: int, *, actor, reason: str, memo: str = "", allow_negative: bool = False
) -> LedgerEntry:
    """Credit (positive) or debit (negative) a team's wallet.

    A debit that would leave less than nothing available (balance minus what running requests hold) is
    refused unless `allow_negative`: the wallet row is locked while that is checked and written, so a
    request settling at the same moment cannot slip between the check and the debit."""
    reason, memo = (reason or "").strip(), (memo or "").strip()
    if not reason:
        raise BillingError("reason_required", "An adjustment needs an internal reason.")
    if len(reason) > MAX_TEXT:
        raise BillingError("reason_too_long", f"Keep the internal reason to {MAX_TEXT} characters.")
    if len(memo) > MAX_TEXT:
        raise BillingError("memo_too_long", f"Keep the customer memo to {MAX_TEXT} characters.")
    if isinstance(amount_nusd, bool) or not isinstance(amount_nusd, int) or amount_nusd == 0:
        raise BillingError("invalid_amount", "An adjustment must be a non-zero whole number of nano-dollars.")
    if abs(amount_nusd) > MAX_ADJUSTMENT_NUSD:
        raise BillingError(
            "invalid_amount", f"One adjustment is limited to {money.usd(MAX_ADJUSTMENT_NUSD)} either way."
        )
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=ensure_wallet(team).pk)
        available_after = wallet.available_nusd + amount_nusd
        if amount_nusd < 0 and available_after < 0 and not allow_negative:
            raise BillingError(
                "would_go_negative",
                f"This would leave {team} with {money.usd(available_after)} available, below zero "
                f"(balance {money.usd(wallet.balance_nusd)}, held {money.usd(wallet.held_nusd)}). "
                "Tick “Allow a negative balance” to do it anyway.",
            )
        entry = _post(
            wallet.pk, kind=LedgerKind.ADJUSTMENT, amount_nusd=amount_nusd, actor=actor, reason=reason, memo=memo
        )
        audit(
            "billing.adjusted",
            team=team,
            actor=actor,
            target=entry.public_id,
            amount_nusd=amount_nusd,
            amount_usd=money.exact(amount_nusd),
            reason=reason,
            memo=memo,
            allow_negative=allow_negative,
            balance_after_nusd=entry.balance_after_nusd,
        )
        transaction.on_commit(lambda: _send_wallet_credited(wallet.pk, entry))
    return entry
