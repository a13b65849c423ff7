"""The one way async code reaches the ORM: small, self-contained sync units run in a thread pool.

Django's default (thread-sensitive) mode would run every request's database work on one shared thread;
these units are independent transactions, so they run on the loop's pool instead. Tests whose rows live in
the test transaction set DB_THREAD_SENSITIVE so the units run on the test's own connection.

Each pool thread keeps its own persistent connection, and Django's request_started/finished hooks never run
there, so each unit looks after it: a connection that broke or outlived CONN_MAX_AGE is dropped, and one idle
for more than IDLE_CHECK_SECONDS is pinged first (Django's health check), so a connection whose backend was
terminated or whose server restarted meanwhile is replaced before it can fail a request.

Django's own views (dashboard, admin, the ninja /v1 reads, the DRF API) are another matter under ASGI: Django's
ASGIHandler runs each request's sync code on a thread of its own, started for that request and ended with it
(asgiref's ThreadSensitiveContext). A persistent connection opened there can never be reused, and Django's
request_finished hook keeps it open for CONN_MAX_AGE anyway; it is only closed when the garbage collector gets to
the dead thread's connection object. Measured: one process, 300 requests 30 at a time, 96 PostgreSQL connections
and then "too many clients". `close_request_thread_connections` closes them when the request ends instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connection, connections

T = TypeVar("T")

IDLE_CHECK_SECONDS = 1.0
_last_use = threading.local()


def _hygienic(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    if connection.connection is not None and not connection.in_atomic_block:
        now = time.monotonic()
        if connection.errors_occurred or (connection.close_at is not None and now >= connection.close_at):
            connection.close_if_unusable_or_obsolete()
        elif now - getattr(_last_use, "at", 0.0) > IDLE_CHECK_SECONDS and not connection.is_usable():
            connection.close()  # the next query reconnects
    try:
        return fn(*args, **kwargs)
    finally:
        _last_use.at = time.monotonic()
        if connection.errors_occurred and not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    thread_sensitive = getattr(settings, "DB_THREAD_SENSITIVE", False)
    return await sync_to_async(_hygienic, thread_sensitive=thread_sensitive)(fn, args, kwargs)


def close_request_thread_connections(sender, **kwargs) -> None:
    """request_finished receiver: a request served by Django's ASGI handler closes the connections its own thread
    opened, since that thread ends with the request (see above). Connected by config/asgi.py.

    Only there: the thread must be one of ASGIHandler's per-request threads (not the main thread, where the
    in-process test drivers run views on the test's connection), and never inside a transaction."""
    if not (isinstance(sender, type) and issubclass(sender, ASGIHandler)):
        return
    if threading.current_thread() is threading.main_thread():
        return
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()
