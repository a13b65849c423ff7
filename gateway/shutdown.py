"""The gateway's part of a graceful stop (config.lifespan): the money work of the requests that were cut must land
before the process closes its pools."""

from __future__ import annotations

import logging

from django.conf import settings

from config import redis_client
from gateway import pipeline
from gateway.providers.http import close_session

log = logging.getLogger(__name__)


async def finish_requests_work() -> None:
    left = await pipeline.drain(settings.SHUTDOWN_DRAIN_SECONDS)
    if left:
        log.error(
            "%s settlement(s) still waiting for the database at shutdown; the sweeper will release their holds", left
        )
    await close_session()
    await redis_client.close()
