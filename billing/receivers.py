"""Billing's own signal listeners: after a settlement, maybe top the wallet up from the saved card."""

from __future__ import annotations

import asyncio
import logging

from django.dispatch import receiver

from billing.signals import receipt_settled

log = logging.getLogger(__name__)


@receiver(receipt_settled, dispatch_uid="billing.auto_recharge_check")
def check_auto_recharge(sender, receipt=None, wallet=None, **kwargs) -> None:
    """Query-free check on the wallet the settlement just wrote; the task re-checks and claims atomically.

    Never raises: a problem here must not disturb the request that was just paid for."""
    if wallet is None:
        return
    from billing import topups

    try:
        if not topups.needs_auto_recharge(wallet):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _enqueue(wallet.pk)
        else:  # sent on the gateway's event loop: publishing to the broker blocks, so a thread does it
            loop.run_in_executor(None, _enqueue, wallet.pk)
    except Exception:
        log.exception("auto-recharge check failed for wallet %s", wallet.pk)


def _enqueue(wallet_id: int) -> None:
    from billing.tasks import auto_recharge

    try:
        auto_recharge.delay(wallet_id)
    except Exception:
        log.exception("could not queue an auto-recharge for wallet %s", wallet_id)
