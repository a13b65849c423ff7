"""Per-process hold leases: a request's hold stays open exactly as long as the process serving it lives.

Each process that places holds owns one `HoldLease` row. A daemon thread renews it every
HOLD_LEASE_SECONDS / 3 with ONE statement, for all of the process's holds at once (never per request).
Holds carry the lease. The sweeper (billing.services.release_abandoned_holds, every
HOLD_SWEEP_SECONDS) releases the open holds whose lease stopped being renewed: those of a process that
died, within HOLD_LEASE_SECONDS + HOLD_SWEEP_SECONDS of its death. A slow request on a live process is
never swept, however long it runs.

If the database is away for longer than a lease, the sweeper may release a live process's holds when it
comes back; the settlement that follows then charges only what the balance still covers and records the
rest as uncollected (never a negative wallet), see billing.backends.orm.settle.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from billing.models import HoldLease
from config.db import run_db

log = logging.getLogger(__name__)

_lock = threading.Lock()
_lease: tuple[int, int] | None = None  # (pid, lease id)
_renewer: threading.Thread | None = None
_stop = threading.Event()


def _expiry():
    return timezone.now() + timedelta(seconds=settings.HOLD_LEASE_SECONDS)


def current() -> int:
    """This process's lease id, created (and its renewal started) on first use. Sync; see `acurrent`."""
    global _lease
    pid = os.getpid()
    lease = _lease
    if lease is not None and lease[0] == pid:
        return lease[1]
    with _lock:
        if _lease is None or _lease[0] != pid:  # first use, or a forked child
            row = HoldLease.objects.create(owner=f"{socket.gethostname()}:{pid}"[:120], expires_at=_expiry())
            _lease = (pid, row.pk)
            _start_renewer()
        return _lease[1]


async def acurrent() -> int:
    """`current()` from the event loop: no I/O once the lease exists."""
    lease = _lease
    if lease is not None and lease[0] == os.getpid():
        return lease[1]
    return await run_db(current)


def renew() -> bool:
    """Extend this process's lease (one UPDATE). False when there is none or the database is away."""
    lease = _lease
    if lease is None or lease[0] != os.getpid():
        return False
    try:
        return bool(HoldLease.objects.filter(pk=lease[1]).update(expires_at=_expiry()))
    except DatabaseError as exc:
        log.warning("could not renew hold lease %s: %s", lease[1], exc)
        return False


def _renew_forever() -> None:
    interval = max(settings.HOLD_LEASE_SECONDS / 3, 0.05)
    while not _stop.wait(interval):
        renew()
        close_old_connections()  # this thread's own connection: drop it if it broke


def _start_renewer() -> None:
    global _renewer
    if not settings.HOLD_LEASE_RENEWAL or (_renewer is not None and _renewer.is_alive()):
        return
    _stop.clear()
    _renewer = threading.Thread(target=_renew_forever, name="tollgate-hold-lease", daemon=True)
    _renewer.start()


def end() -> None:
    """Graceful shutdown, after this process settled what it could: stop renewing and expire the lease at once,
    so the sweeper frees whatever is left without waiting for the lease to run out."""
    global _lease
    _stop.set()
    lease, _lease = _lease, None
    if lease is not None and lease[0] == os.getpid():
        try:
            HoldLease.objects.filter(pk=lease[1]).update(expires_at=timezone.now())
        except DatabaseError as exc:
            log.warning("could not end hold lease %s: %s", lease[1], exc)


def forget() -> None:
    """Tests: drop the cached lease (its row may have been rolled back with the test's transaction)."""
    global _lease
    _stop.set()
    _lease = None


async def close_process() -> None:
    """Graceful shutdown, last: close this event loop's pool and end the lease (config.lifespan)."""
    from asgiref.sync import sync_to_async

    from billing.backends import postgres

    await postgres.close_pool()
    await sync_to_async(end, thread_sensitive=False)()
