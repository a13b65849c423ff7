"""Webhook background work, queued through config.background.enqueue (Celery in production, the in-process
worker in the embedded default); the sweeper runs from settings.CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

from celery import shared_task

from webhooks import delivery


@shared_task(name="webhooks.tasks.deliver", ignore_result=True)
def deliver(delivery_id: int) -> str:
    """One attempt of one event to one endpoint (retries schedule themselves with a countdown)."""
    return delivery.attempt(delivery_id)


@shared_task(name="webhooks.tasks.requeue_stalled_deliveries", ignore_result=True)
def requeue_stalled_deliveries() -> int:
    """Resend deliveries whose worker died mid-attempt or whose queued task was lost."""
    return delivery.requeue_stalled()
