"""Billing's own signal listeners: after a settlement, maybe top the wallet up from the saved card."""

from __future__ import annotations

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
    from billing.tasks import auto_recharge

    try:
        if topups.needs_auto_recharge(wallet):
            auto_recharge.delay(wallet.pk)
    except Exception:
        log.exception("auto-recharge check failed for wallet %s", wallet.pk)
