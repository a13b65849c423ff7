"""Periodic billing work (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from billing import services


@shared_task(name="billing.tasks.release_abandoned_holds", ignore_result=True)
def release_abandoned_holds() -> int:
    """Free credit reserved by requests whose process died (billing.leases), every HOLD_SWEEP_SECONDS."""
    return services.release_abandoned_holds()


# --- Stripe (billing/topups.py) ----------------------------------------------------------------------


@shared_task(name="billing.tasks.auto_recharge", ignore_result=True)
def auto_recharge(wallet_id: int) -> str:
    """Charge the team's saved card off-session; claims the wallet first so only one attempt runs."""
    from billing import topups

    return topups.run_auto_recharge(wallet_id)


@shared_task(name="billing.tasks.save_payment_method", ignore_result=True)
def save_payment_method(wallet_id: int, payment_intent_id: str) -> str:
    """Remember the card a Checkout top-up used, so auto-recharge can charge it later."""
    from billing import stripe_client, topups

    try:
        return topups.sync_payment_method(wallet_id, payment_intent_id)
    except stripe_client.StripeUnavailable:
        return "unavailable"


@shared_task(name="billing.tasks.check_low_balance", ignore_result=True)
def check_low_balance(wallet_id: int) -> str:
    """Send balance.low once per crossing below the team's threshold (billing/events.py)."""
    from billing import events

    return events.check_low_balance(wallet_id)
