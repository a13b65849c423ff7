"""Periodic gateway work (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from gateway import idempotency


@shared_task(name="gateway.tasks.purge_idempotency_records", ignore_result=True)
def purge_idempotency_records() -> int:
    """Delete Idempotency-Key records older than their 24 h (an expired key is also reusable on its own)."""
    return idempotency.purge_expired()
