"""Gateway background work: image jobs, and the periodic sweeps scheduled in settings.CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

from celery import shared_task

from gateway import idempotency


@shared_task(name="gateway.tasks.purge_idempotency_records", ignore_result=True)
def purge_idempotency_records() -> int:
    """Delete Idempotency-Key records older than their 24 h (an expired key is also reusable on its own)."""
    return idempotency.purge_expired()


@shared_task(name="gateway.tasks.run_image_job", ignore_result=True, acks_late=True)
def run_image_job(public_id: str) -> str:
    """Generate one image job (enqueued when it was submitted; gateway.image_jobs.run)."""
    from gateway import image_jobs

    return image_jobs.run(public_id)


@shared_task(name="gateway.tasks.sweep_image_jobs", ignore_result=True)
def sweep_image_jobs() -> dict:
    """Expire jobs not started in time and recover jobs a crashed worker left processing."""
    from gateway import image_jobs

    return image_jobs.sweep()


@shared_task(name="gateway.tasks.purge_image_outputs", ignore_result=True)
def purge_image_outputs() -> int:
    """Delete the files of image outputs whose links expired."""
    from gateway import image_files

    return image_files.purge_expired()
