"""Billing's own signal listeners: a new team gets its wallet (and, from sign-up, SIGNUP_CREDIT_USD); after a
settlement, maybe top the wallet up from the saved card; after a settlement or a credit, maybe send (or re-arm)
the balance.low event. The settlement checks are query-free on the wallet the signal carries and hand any real
work to the background, so a settlement never waits for them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from django.conf import settings
from django.dispatch import receiver

from accounts.services import TeamOrigin, audit
from accounts.signals import team_created
from billing.signals import receipt_settled, wallet_credited
from config import metrics
from config.background import enqueue

log = logging.getLogger(__name__)

SIGNUP_CREDIT_REFERENCE = "signup_credit"


@receiver(team_created, dispatch_uid="billing.wallet_for_new_team")
def create_wallet(sender, team=None, owner=None, origin=None, **kwargs) -> None:
    """Runs inside create_team's transaction: the wallet and any grant commit (or roll back) with the team.

    Only a team created at sign-up gets the sign-up credit: teams made later from the dashboard do not, so
    creating teams is not a way to collect free credit."""
    from billing.models import LedgerEntry
    from billing.money import exact
    from billing.pricing import usd_to_nusd
    from billing.services import ensure_wallet, grant_credit

    wallet = ensure_wallet(team)
    amount_nusd = usd_to_nusd(settings.SIGNUP_CREDIT_USD)
    if origin != TeamOrigin.SIGNUP or amount_nusd <= 0:
        return
    if LedgerEntry.objects.filter(wallet=wallet, reference=SIGNUP_CREDIT_REFERENCE).exists():
        return  # once per team, whatever sends the signal again
    entry = grant_credit(
        team,
        amount_nusd=amount_nusd,
        reason="SIGNUP_CREDIT_USD",
        memo="Sign-up credit",
        reference=SIGNUP_CREDIT_REFERENCE,
    )
    audit(
        "billing.signup_credit_granted",
        team=team,
        actor_label="system",
        target=entry.public_id,
        amount_usd=exact(amount_nusd),
        owner=owner.email if owner else "",
    )


def _off_the_loop(fn: Callable[[int], None], wallet_id: int) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        fn(wallet_id)
    else:  # sent on the gateway's event loop: publishing to the broker blocks, so a thread does it
        loop.run_in_executor(None, fn, wallet_id)


@receiver(receipt_settled, dispatch_uid="billing.spend_metric")
def count_spend(sender, receipt=None, wallet=None, **kwargs) -> None:
    """tollgate_spend_nusd_total: what live receipts took from wallets, by model (once per settled receipt)."""
    if receipt is not None and not receipt.is_test:
        charged = receipt.total_cost_nusd - receipt.uncollected_nusd
        if charged:
            metrics.child(metrics.spend_nusd, receipt.model_routed or "unknown").inc(charged)


@receiver(receipt_settled, dispatch_uid="billing.auto_recharge_check")
def check_auto_recharge(sender, receipt=None, wallet=None, **kwargs) -> None:
    """Query-free check on the wallet the settlement just wrote; the task re-checks and claims atomically.

    Never raises: a problem here must not disturb the request that was just paid for."""
    if wallet is None:
        return
    from billing import topups

    try:
        if topups.needs_auto_recharge(wallet):
            _off_the_loop(_enqueue, wallet.pk)
    except Exception:
        log.exception("auto-recharge check failed for wallet %s", wallet.pk)


def _enqueue(wallet_id: int) -> None:
    try:
        enqueue("billing.tasks.auto_recharge", wallet_id)
    except Exception:
        log.exception("could not queue an auto-recharge for wallet %s", wallet_id)


@receiver(receipt_settled, dispatch_uid="billing.low_balance_check")
@receiver(wallet_credited, dispatch_uid="billing.low_balance_rearm")
def check_low_balance(sender, wallet=None, **kwargs) -> None:
    """balance.low once per crossing: only a wallet on the other side of its flag queues the real check.
    Never raises, like the auto-recharge check."""
    if wallet is None:
        return
    from billing import events

    try:
        if events.needs_low_balance_check(wallet):
            _off_the_loop(_queue_low_balance_check, wallet.pk)
    except Exception:
        log.exception("low-balance check failed for wallet %s", wallet.pk)


def _queue_low_balance_check(wallet_id: int) -> None:
    from billing import events

    try:
        events.queue_low_balance_check(wallet_id)
    except Exception:
        log.exception("could not queue a low-balance check for wallet %s", wallet_id)
