"""Start-up checks of the gateway's settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def image_job_hold_outlives_its_deadlines(app_configs, **kwargs):
    """An image job's hold has no lease and expires after HOLD_TTL_SECONDS: it must outlive the job's first
    pick-up deadline and run, or the sweeper could free credit a running job is about to be charged."""
    needed = (
        settings.IMAGE_JOB_TIMEOUT_SECONDS
        + settings.IMAGE_JOB_RUN_SECONDS
        + settings.IMAGE_JOB_GRACE_SECONDS
        + settings.IMAGE_JOB_SWEEP_SECONDS
    )
    if needed >= settings.HOLD_TTL_SECONDS:
        return [
            Error(
                f"HOLD_TTL_SECONDS ({settings.HOLD_TTL_SECONDS}) must be longer than IMAGE_JOB_TIMEOUT_SECONDS + "
                f"IMAGE_JOB_RUN_SECONDS + IMAGE_JOB_GRACE_SECONDS + IMAGE_JOB_SWEEP_SECONDS ({needed}).",
                hint="Unset HOLD_TTL_SECONDS to get a default that fits, or shorten the image job timeouts.",
                id="tollgate.E002",
            )
        ]
    return []
