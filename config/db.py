"""The one way async code (the gateway, billing's async entry points) reaches the ORM: small, self-contained
sync units run in a thread pool.

Django's default (thread-sensitive) mode would run every request's database work on one shared
thread; these units are independent transactions, so they run on the loop's pool instead. Tests whose
rows live in the test transaction set DB_THREAD_SENSITIVE so the units run on the test's own connection.
Each pool thread keeps its own persistent connection; Django's request_started/finished hooks never
run there, so the unit itself drops a connection that broke or outlived CONN_MAX_AGE.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

T = TypeVar("T")


def _hygienic(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    # Cheap checks only: close_if_unusable_or_obsolete() would force a health-check ping next query.
    if connection.connection is not None and (
        connection.errors_occurred or (connection.close_at is not None and time.monotonic() >= connection.close_at)
    ):
        connection.close_if_unusable_or_obsolete()
    try:
        return fn(*args, **kwargs)
    finally:
        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    thread_sensitive = getattr(settings, "DB_THREAD_SENSITIVE", False)
    return await sync_to_async(_hygienic, thread_sensitive=thread_sensitive)(fn, args, kwargs)
