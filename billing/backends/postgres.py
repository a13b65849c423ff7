"""The PostgreSQL settlement backend: the two money statements of every request, a hold and its settlement,
as ONE statement each.

Why raw SQL here: every request of a team touches that team's one wallet row. With the ORM, placing a hold
is BEGIN, UPDATE, INSERT, COMMIT and settling is seven round trips; the wallet row stays locked from the
UPDATE to the COMMIT, and in an async server each round trip also waits for the GIL, so the lock was held
~20 ms and a team's requests queued behind it (measured: 49 req/s at c=16, 20 ms p50). Here each unit is
one statement in autocommit, made of data-modifying CTEs: PostgreSQL takes the wallet row lock and releases
it inside a single round trip (~0.2 ms), with no Python in between.

The outcomes are exactly those of billing/backends/orm.py, which this module hands the rare cases to:

- hold: the conditional UPDATE (`balance >= held + amount`) both checks and reserves; the hold row (with this
  process's lease) is inserted only if that UPDATE matched. No row back → InsufficientBalance. A hold under a
  key's monthly cap or a project's budget (`HoldRequest.counted`) goes through the ORM form: its spend counters
  move in the wallet's transaction (billing.spend), and with them the hold's settlement and release; this
  statement, and the request without such limits, are unchanged by them.
- settle: the wallet row is locked first (only if its balance covers the cost), then the hold is closed only
  if still open, then the wallet releases the held amount and pays the cost, the receipt is written and, for
  a non-zero cost, the charge entry (balance_after from the UPDATE's RETURNING). When the hold was not closed
  by this statement nothing is written and the ORM form decides: a hold the sweeper released meanwhile pays
  what the balance still covers (the rest recorded as uncollected), a settled or released one is HoldClosed.

From the event loop the statements run on an async psycopg connection from a small per-event-loop pool
(`aplace_hold`, `asettle`), straight on its libpq (billing/backends/libpq.py): no worker-thread hop, no GIL
hand-over, no cursor, and they are prepared on each connection (Django turns prepared statements off; parsing and
planning the settlement statement was most of PostgreSQL's CPU per request). `DB_ASYNC_POOL_SIZE` connections per
worker process at most; 0 runs them on Django's connection in a worker thread instead (and tests whose rows live in
the test transaction do so). Inside an outer transaction (an idempotent reply, a stored completion) the synchronous
form simply joins it. Table and column names come from the models' _meta.

Commit durability: the pool's connections commit with synchronous_commit=off unless
HOT_PATH_SYNCHRONOUS_COMMIT is set (Django's own connections, so top-ups, refunds, adjustments and webhooks,
always wait for the disk). Each statement stays atomic and ordered, so a PostgreSQL crash can only drop the
last moments (at most ~3 × wal_writer_delay) of holds and settlements as whole units: wallet = ledger still
holds, a lost hold reserved nothing, a lost settlement leaves its hold to the sweeper, and those requests go
unpaid. Nothing is ever charged twice or lost from a customer's credit. Measured on the benchmark: ~12–20 %
more requests/s at concurrency 64 than waiting for each commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg_pool
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.utils import timezone

from billing.backends import libpq, orm
from billing.errors import BillingUnavailable, HoldClosed, InsufficientBalance
from billing.models import Hold, HoldStatus, LedgerEntry, LedgerKind, Receipt, Wallet
from billing.models import _txn_id as new_txn_public_id
from billing.settlement import Hold as HoldRef
from billing.settlement import HoldRequest, Settlement, announce
from billing.signals import receipt_settled
from config.db import run_db

log = logging.getLogger(__name__)

# The database cannot be reached, or no pooled connection freed up in time.
UNAVAILABLE = (psycopg.OperationalError, psycopg_pool.PoolTimeout, OperationalError, InterfaceError)

release = orm.release
withdraw = orm.withdraw
awithdraw = orm.awithdraw  # rare (a refusal after a speculative hold): the ORM form in a thread


def _qn(name: str) -> str:
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(name)


def _table(model) -> str:
    return _qn(model._meta.db_table)


def _col(model, field: str) -> str:
    return _qn(model._meta.get_field(field).column)


def _value(v: Any) -> Any:
    return v.value if isinstance(v, enum.Enum) else v  # psycopg would dump an Enum by its name


# Wallet columns returned by settle: all of them, so the signal receivers get a complete Wallet.
def _wallet_fields() -> list:
    return list(Wallet._meta.concrete_fields)


# Receipt columns written by settle: every concrete field but the primary key, taken from the instance.
def _receipt_fields() -> list:
    return [f for f in Receipt._meta.concrete_fields if not f.primary_key]


# Per settlement, only the values change: the parameter names and attributes are worked out once, as the SQL is.
@functools.cache
def _receipt_params() -> tuple[tuple[str, str], ...]:
    return tuple((f"r_{f.attname}", f.attname) for f in _receipt_fields())


@functools.cache
def _wallet_attnames() -> tuple[str, ...]:
    return tuple(f.attname for f in _wallet_fields())


# --- the hold ------------------------------------------------------------------------------------------


@functools.cache
def _hold_sql() -> str:
    w, h = Wallet, Hold
    cols = ", ".join(
        _col(h, f)
        for f in (
            "public_id",
            "wallet",
            "api_key",
            "request_id",
            "amount_nusd",
            "status",
            "lease",
            "created_at",
            "expires_at",
            "closed_at",
        )
    )
    held = _col(w, "held_nusd")
    # Identifiers come from _meta and are quoted; every value is a bound parameter.
    return (
        f"WITH w AS (UPDATE {_table(w)} SET {held} = {held} + %(amount)s, {_col(w, 'updated_at')} = %(now)s "  # noqa: S608
        f"WHERE {_col(w, 'team')} = %(team)s AND {_col(w, 'balance_nusd')} >= {held} + %(amount)s "
        f"RETURNING {_col(w, 'id')} AS id) "
        f"INSERT INTO {_table(h)} ({cols}) "
        f"SELECT %(public_id)s, w.id, %(key)s, %(request_id)s, %(amount)s, %(open)s, %(lease)s, %(now)s, "
        f"%(expires)s, NULL FROM w RETURNING {_col(h, 'id')}"
    )


@functools.cache
def _hold_statement() -> libpq.Statement:
    return libpq.Statement("hold", _hold_sql())


def _hold_params(request: HoldRequest, lease_id: int | None, public_id: str) -> dict[str, Any]:
    now = timezone.now()
    from billing.settlement import hold_expiry

    return {
        "amount": request.amount_nusd,
        "now": now,
        "team": request.team_id,
        "public_id": public_id,
        "key": request.key_id,
        "request_id": request.request_id,
        "open": HoldStatus.OPEN.value,
        "lease": lease_id,
        "expires": None if lease_id is not None else hold_expiry(now),
    }


def _held(request: HoldRequest, public_id: str, row: tuple | None) -> HoldRef:
    if row is None:
        raise InsufficientBalance(request.amount_nusd)
    return HoldRef.live(request, hold_id=row[0], public_id=public_id)


def place_hold(request: HoldRequest, *, lease_id: int | None, public_id: str) -> HoldRef:
    if request.counted:
        return orm.place_hold(request, lease_id=lease_id, public_id=public_id)
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_hold_sql(), _hold_params(request, lease_id, public_id))
        return _held(request, public_id, cursor.fetchone())


async def aplace_hold(request: HoldRequest, *, lease_id: int | None, public_id: str) -> HoldRef:
    try:
        if request.counted or not _pooled():
            return await run_db(place_hold, request, lease_id=lease_id, public_id=public_id)
        async with _connection() as conn:
            row = await libpq.fetchone(conn, _hold_statement(), _hold_params(request, lease_id, public_id))
            _used(conn)
    except UNAVAILABLE as exc:
        log.warning("could not place a hold for %s: %s", request.request_id, type(exc).__name__)
        raise BillingUnavailable() from None
    return _held(request, public_id, row)


# --- the settlement ------------------------------------------------------------------------------------


@functools.cache
def _settle_sql() -> str:
    w, h, r, le = Wallet, Hold, Receipt, LedgerEntry
    wallet_cols = ", ".join(f"w.{_qn(f.column)}" for f in _wallet_fields())
    receipt_fields = _receipt_fields()
    receipt_cols = ", ".join(_qn(f.column) for f in receipt_fields)
    receipt_vals = ", ".join(f"%(r_{f.attname})s" for f in receipt_fields)
    ledger_cols = ", ".join(
        _col(le, f)
        for f in (
            "public_id",
            "wallet",
            "kind",
            "amount_nusd",
            "balance_after_nusd",
            "reference",
            "actor",
            "reason",
            "created_at",
        )
    )
    held, balance, status, wid = _col(w, "held_nusd"), _col(w, "balance_nusd"), _col(h, "status"), _col(w, "id")
    # Identifiers come from _meta and are quoted; every value is a bound parameter.
    return (
        # 1. lock the wallet row first (as the sweeper does), only if its balance covers the cost
        f"WITH lk AS (SELECT {wid} AS id FROM {_table(w)} "  # noqa: S608
        f"WHERE {_col(w, 'team')} = %(team)s AND {balance} >= %(cost)s FOR UPDATE), "
        # 2. close the hold if it is still open
        f"h AS (UPDATE {_table(h)} SET {status} = %(settled)s, {_col(h, 'closed_at')} = %(now)s "
        f"WHERE {_col(h, 'id')} = %(hold)s AND {status} = %(open)s AND EXISTS (SELECT 1 FROM lk) RETURNING 1), "
        # 3. its state in this statement's snapshot (before step 2), for the caller
        f"prior AS (SELECT {status} AS status FROM {_table(h)} WHERE {_col(h, 'id')} = %(hold)s), "
        # 4. release the held amount and pay the cost (never more than the hold), only for a hold we closed
        f"w AS (UPDATE {_table(w)} SET {held} = {held} - %(amount)s, {balance} = {balance} - %(cost)s, "
        f"{_col(w, 'updated_at')} = %(now)s WHERE {wid} = (SELECT id FROM lk) AND EXISTS (SELECT 1 FROM h) "
        f"RETURNING *), "
        f"r AS (INSERT INTO {_table(r)} ({receipt_cols}) SELECT {receipt_vals} FROM w "
        f"RETURNING {_col(r, 'id')} AS id), "
        # 5. the charge entry, only when money moved
        f"l AS (INSERT INTO {_table(le)} ({ledger_cols}) SELECT %(txn)s, w.{wid}, %(charge)s, -%(cost)s, "
        f"w.{balance}, %(r_public_id)s, NULL, '', %(now)s FROM w WHERE %(cost)s <> 0 RETURNING 1) "
        f"SELECT (SELECT status FROM prior), (SELECT id FROM r), {wallet_cols} "
        f"FROM (SELECT 1) AS one LEFT JOIN w ON true"
    )


@functools.cache
def _settle_statement() -> libpq.Statement:
    return libpq.Statement("settle", _settle_sql())


def _settle_params(settlement: Settlement) -> dict[str, Any]:
    hold, receipt = settlement.hold, settlement.receipt
    # _value inlined: this runs for every column of every settlement.
    params = {
        name: v.value if isinstance(v := getattr(receipt, attname), enum.Enum) else v
        for name, attname in _receipt_params()
    }
    params.update(
        settled=HoldStatus.SETTLED.value,
        open=HoldStatus.OPEN.value,
        now=timezone.now(),
        hold=hold.hold_id,
        amount=hold.amount_nusd,
        cost=settlement.cost.total_nusd,
        team=hold.team_id,
        txn=new_txn_public_id(),
        charge=LedgerKind.CHARGE.value,
    )
    return params


def _settled(row: tuple | None, settlement: Settlement) -> Wallet | None:
    """The wallet as written, or None when the statement wrote nothing (the ORM form must decide)."""
    assert row is not None  # the statement always returns its one row (a LEFT JOIN on a constant)
    prior, receipt_id, *wallet_row = row
    if receipt_id is None:
        if prior not in (HoldStatus.OPEN, HoldStatus.EXPIRED):
            raise HoldClosed(
                HoldClosed.code, f"Hold {settlement.hold.public_id} is {prior or 'missing'}; it cannot be closed twice."
            )
        return None
    receipt = settlement.receipt
    receipt.pk = receipt_id
    receipt._state.adding = False
    receipt._state.db = DEFAULT_DB_ALIAS
    return Wallet.from_db(DEFAULT_DB_ALIAS, _wallet_attnames(), wallet_row)


def settle(settlement: Settlement) -> Receipt:
    if settlement.hold.is_test or settlement.hold.counted:
        return orm.settle(settlement)
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_settle_sql(), _settle_params(settlement))
        wallet = _settled(cursor.fetchone(), settlement)
    if wallet is None:
        return orm.settle(settlement)
    announce(settlement.receipt, wallet)
    return settlement.receipt


async def asettle(settlement: Settlement) -> Receipt:
    if settlement.hold.is_test or settlement.hold.counted or not _pooled():
        return await run_db(settle, settlement)
    try:
        async with _connection() as conn:
            row = await libpq.fetchone(conn, _settle_statement(), _settle_params(settlement))
            _used(conn)
    except UNAVAILABLE as exc:
        raise BillingUnavailable() from exc
    wallet = _settled(row, settlement)
    if wallet is None:
        return await run_db(orm.settle, settlement)
    receipt_settled.send(sender=Receipt, receipt=settlement.receipt, wallet=wallet)  # committed already
    return settlement.receipt


async def arelease(hold: HoldRef, receipt: Receipt) -> Receipt:
    return await run_db(orm.release, hold, receipt)


# --- the event loop's pool -----------------------------------------------------------------------------

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future] = weakref.WeakKeyDictionary()

# Django-only keys of DatabaseWrapper.get_connection_params(); the rest is what psycopg.connect takes.
_DJANGO_ONLY = ("cursor_factory", "context", "server_side_binding", "pool", "assume_role", "isolation_level")


def _pooled() -> bool:
    return settings.DB_ASYNC_POOL_SIZE > 0


async def _pool() -> psycopg_pool.AsyncConnectionPool:
    """This event loop's pool, opened on first use (concurrent first users wait for the same opening)."""
    loop = asyncio.get_running_loop()
    opening = _pools.get(loop)
    if opening is None:
        opening = _pools[loop] = loop.create_task(_open_pool())
    try:
        return await asyncio.shield(opening)
    except BaseException:
        if opening.done() and (opening.cancelled() or opening.exception() is not None):
            _pools.pop(loop, None)  # the next request tries again
        raise


# An outage (a stopped or unreachable database, every connection terminated). psycopg_pool on its own makes a
# request wait for its whole timeout for a connection that cannot be made, and reconnects with a growing backoff
# (1, 2, 4, 8 … s), so after an outage of some seconds it could be many seconds after the database came back
# before a request got a connection. Here the pool gives up a failed connection attempt at once
# (reconnect_timeout=0), which marks it down; a request waits for a connection in slices of FAIL_FAST_SECONDS and
# stops waiting (503, billing_unavailable) as soon as the pool is down. Every request that waits asks the pool for a
# new connection (psycopg_pool grows on demand), so the first request after the database is back reconnects, and a
# connection made clears the mark. Measured by tests/faults/test_database.py.
FAIL_FAST_SECONDS = 0.5


class _Health:
    __slots__ = ("down",)

    def __init__(self) -> None:
        self.down = False  # the last attempt to connect failed, and none succeeded since

    async def failed(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        self.down = True


_health: weakref.WeakKeyDictionary[psycopg_pool.AsyncConnectionPool, _Health] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _connection() -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection of this event loop's pool, waiting at most DB_ASYNC_POOL_TIMEOUT_SECONDS while the database is
    up and no longer than FAIL_FAST_SECONDS once it is known to be down (psycopg_pool.PoolTimeout either way)."""
    pool = await _pool()
    health = _health[pool]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.DB_ASYNC_POOL_TIMEOUT_SECONDS
    while True:
        try:
            conn = await pool.getconn(timeout=max(min(FAIL_FAST_SECONDS, deadline - loop.time()), 0.001))
            break
        except psycopg_pool.PoolTimeout:
            if health.down or loop.time() >= deadline:
                raise
    try:
        yield conn
    finally:
        await pool.putconn(conn)


async def _configure(health: _Health, conn: psycopg.AsyncConnection) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")  # what Django sets on its own connections
    if not settings.HOT_PATH_SYNCHRONOUS_COMMIT:  # see "Commit durability" above
        await conn.execute("SET synchronous_commit = off")
    _used(conn)  # just proven alive
    health.down = False


# A pooled connection idle longer than this is checked (one empty round trip) before use: one whose
# backend was terminated or whose server restarted is replaced instead of failing a request. Under load no
# connection is idle that long, so the hot path pays nothing. The statements above note each connection's last
# successful use themselves (`_used`) rather than through the pool's `reset` hook: with a hook, psycopg_pool hands
# every returned connection to a worker task (a queue and a task switch per statement) instead of taking it back
# at once; a connection used any other way is simply checked on its next use.
IDLE_CHECK_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection, float] = weakref.WeakKeyDictionary()


async def _check_if_idle(conn: psycopg.AsyncConnection) -> None:
    last = _returned_at.get(conn)
    if last is not None and asyncio.get_running_loop().time() - last < IDLE_CHECK_SECONDS:
        return
    await psycopg_pool.AsyncConnectionPool.check_connection(conn)


def _used(conn: psycopg.AsyncConnection) -> None:
    _returned_at[conn] = asyncio.get_running_loop().time()


async def _open_pool() -> psycopg_pool.AsyncConnectionPool:
    params = connections[DEFAULT_DB_ALIAS].get_connection_params()
    kwargs = {k: v for k, v in params.items() if k not in _DJANGO_ONLY}
    kwargs.update(autocommit=True, prepare_threshold=5)
    health = _Health()
    pool = psycopg_pool.AsyncConnectionPool(
        kwargs=kwargs,
        min_size=1,
        max_size=settings.DB_ASYNC_POOL_SIZE,
        open=False,
        configure=functools.partial(_configure, health),
        timeout=settings.DB_ASYNC_POOL_TIMEOUT_SECONDS,
        name=f"tollgate-{DEFAULT_DB_ALIAS}",
        check=_check_if_idle,
        reconnect_timeout=0,  # see "An outage" above
        reconnect_failed=health.failed,
    )
    _health[pool] = health
    await pool.open(wait=False)  # connections come on demand: a database that is down fails requests, not opening
    return pool


async def close_pool() -> None:
    """Close this event loop's pool (graceful shutdown, tests)."""
    opening = _pools.pop(asyncio.get_running_loop(), None)
    if opening is not None and opening.done() and not opening.cancelled() and opening.exception() is None:
        await opening.result().close()
