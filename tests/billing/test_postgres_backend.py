"""The PostgreSQL settlement backend's statements on the event loop's own connection pool
(billing/backends/postgres.py): the same outcomes as the thread path, no overspending under concurrency,
BillingUnavailable when the database is away, stale pooled connections replaced, and settlements recorded
after the reply that survive a database outage."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from billing import leases, settlement
from billing.backends import postgres
from billing.errors import BillingError, BillingUnavailable, InsufficientBalance
from billing.models import Hold, HoldLease, HoldStatus, LedgerEntry, Receipt, Wallet
from billing.reconcile import find_discrepancies
from billing.services import release_abandoned_holds
from billing.settlement import price, record_after_reply, unsettled
from billing.signals import receipt_settled
from tests.billing.calls import aplace_hold, asettle, place_hold
from tests.billing.conftest import META, PRICES, USD, fund, usage
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def pool(settings):
    """The pool on, as in production; closed with the test's event loop."""
    settings.DB_ASYNC_POOL_SIZE = 4
    settings.DB_ASYNC_POOL_TIMEOUT_SECONDS = 2.0
    yield
    await postgres.close_pool()


async def hold(team, amount_nusd, request_id="req_async"):
    return await aplace_hold(
        team_id=team.id, key_id=None, request_id=request_id, amount_nusd=amount_nusd, is_test=False
    )


async def wallet(team) -> Wallet:
    return await Wallet.objects.aget(team=team)


async def test_a_hold_and_its_settlement_write_what_the_thread_path_writes(team):
    await sync_to_async(fund)(team, 1)
    heard = []
    receipt_settled.connect(
        lambda sender, receipt, wallet, **kw: heard.append((receipt.pk, wallet.balance_nusd)),
        weak=False,
        dispatch_uid="test-heard",
    )
    try:
        ref = await hold(team, USD)
        w = await wallet(team)
        assert (w.balance_nusd, w.held_nusd) == (USD, USD)
        receipt = await asettle(ref, usage=usage(), prices=PRICES, meta=META)
    finally:
        receipt_settled.disconnect(dispatch_uid="test-heard")
    assert receipt.total_cost_nusd == 100 * 1_000 + 50 * 3_000
    stored = await Receipt.objects.aget(public_id=receipt.public_id)
    assert (stored.pk, stored.total_cost_nusd, stored.status) == (receipt.pk, 250_000, "succeeded")
    assert (await Hold.objects.aget(pk=ref.hold_id)).status == HoldStatus.SETTLED
    entry = await LedgerEntry.objects.aget(reference=receipt.public_id)
    assert (entry.amount_nusd, entry.balance_after_nusd) == (-250_000, USD - 250_000)
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (USD - 250_000, 0)
    assert heard == [(receipt.pk, USD - 250_000)]
    assert await sync_to_async(find_discrepancies)() == []


async def test_concurrent_holds_on_the_loop_never_reserve_more_than_the_wallet_has(team):
    await sync_to_async(fund)(team, 7)
    results = await asyncio.gather(*(hold(team, USD, f"req_{i}") for i in range(50)), return_exceptions=True)
    placed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BillingError)]
    assert len(placed) == 7 and len(refused) == 43
    assert all(isinstance(e, InsufficientBalance) for e in refused)
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (7 * USD, 7 * USD)
    assert await Hold.objects.filter(status=HoldStatus.OPEN).acount() == 7


async def test_a_hold_the_sweeper_released_is_charged_without_releasing_it_twice(team):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    await HoldLease.objects.aupdate(expires_at="2000-01-01T00:00:00Z")
    assert await sync_to_async(release_abandoned_holds)() == 1
    receipt = await asettle(ref, usage=usage(), prices=PRICES, meta=META)
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (USD - receipt.total_cost_nusd, 0)
    assert await sync_to_async(find_discrepancies)() == []


async def test_a_hold_cannot_be_settled_twice(team):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    await asettle(ref, usage=usage(), prices=PRICES, meta=META)
    with pytest.raises(BillingError):
        await asettle(ref, usage=usage(), prices=PRICES, meta=META)
    assert await Receipt.objects.acount() == 1


# --- holds waiting together are placed by one statement ---------------------------------------------------


@pytest.fixture
def hold_statements(monkeypatch) -> list[str]:
    """The hold statements run on the pool: "holds" (several at once) or "hold" (one)."""
    from billing.backends import libpq

    names: list[str] = []
    real = libpq._execute  # what fetchone and fetchall both run

    async def counting(conn, statement, params):
        names.append(statement.name)
        return await real(conn, statement, params)

    monkeypatch.setattr(libpq, "_execute", counting)
    return names


async def cancel_while_waiting(batches, coro) -> None:
    """Start `coro`, cancel it while its item waits for the shared statement, and wait for that statement."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)  # it waits for the statement
    writer = batches.writer
    assert writer is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait([writer])


async def test_holds_that_wait_together_are_placed_by_one_statement(team, hold_statements):
    await sync_to_async(fund)(team, 1)
    refs = await asyncio.gather(*(hold(team, 1_000 * (i + 1), f"req_{i}") for i in range(20)))
    assert hold_statements == ["holds"]
    rows = {h.pk: h async for h in Hold.objects.filter(status=HoldStatus.OPEN)}
    assert sorted(rows) == sorted(r.hold_id for r in refs)
    assert all(
        (rows[r.hold_id].request_id, rows[r.hold_id].amount_nusd, rows[r.hold_id].public_id)
        == (r.request_id, r.amount_nusd, r.public_id)
        for r in refs
    )
    assert (await wallet(team)).held_nusd == sum(1_000 * (i + 1) for i in range(20))
    assert await sync_to_async(find_discrepancies)() == []


async def test_a_team_whose_waiting_holds_do_not_fit_together_gets_each_as_alone_and_others_are_not_held_back(
    team, other_team, hold_statements
):
    """Together the short team's holds ask for more than it has: they are placed again one at a time, in order,
    so the first ones that fit are placed and the rest refused; the other team's are placed by the shared one."""
    await sync_to_async(fund)(team, 3)
    await sync_to_async(fund)(other_team, 10)
    short = [hold(team, USD, f"req_short_{i}") for i in range(5)]
    rich = [hold(other_team, USD, f"req_rich_{i}") for i in range(5)]
    results = await asyncio.gather(*short, *rich, return_exceptions=True)
    assert [type(r).__name__ for r in results[:5]] == ["Hold"] * 3 + ["InsufficientBalance"] * 2
    assert all(not isinstance(r, BaseException) for r in results[5:])
    assert hold_statements == ["holds"] + ["hold"] * 5
    assert ((await wallet(team)).held_nusd, (await wallet(other_team)).held_nusd) == (3 * USD, 5 * USD)
    assert await sync_to_async(find_discrepancies)() == []


async def test_a_hold_placed_after_its_caller_was_cancelled_is_withdrawn(team):
    """The request went away while its hold waited for the shared statement: the statement places it all the
    same, and it is withdrawn at once (no receipt, nothing held), so no hold is left that nobody would end."""
    await sync_to_async(fund)(team, 1)
    await hold(team, 1_000, "req_warm")  # opens the pool
    lp = await postgres._loop_pool()
    await cancel_while_waiting(lp.holds, hold(team, USD - 1_000, "req_gone"))
    gone = await Hold.objects.aget(request_id="req_gone")
    assert gone.status == HoldStatus.RELEASED
    assert (await wallet(team)).held_nusd == 1_000
    assert await Receipt.objects.acount() == 0
    assert await sync_to_async(find_discrepancies)() == []


# --- settlements waiting together are written by one statement ---------------------------------------------


@pytest.fixture
def statements(monkeypatch) -> list[int]:
    """How many settlements each settlement statement on the pool wrote."""
    from billing.backends import libpq

    sizes: list[int] = []
    real = libpq.fetchall

    async def counting(conn, statement, params):
        sizes.append(params["settlements"].count('"hold"'))
        return await real(conn, statement, params)

    monkeypatch.setattr(libpq, "fetchall", counting)
    return sizes


def _ledger_walks(entries) -> bool:
    """Each entry's balance_after is the one before it plus its amount (entries in id order)."""
    return all(b.balance_after_nusd == a.balance_after_nusd + b.amount_nusd for a, b in zip(entries, entries[1:]))


async def test_settlements_that_wait_together_share_one_statement_and_each_is_written_as_alone(
    team, other_team, statements
):
    await sync_to_async(fund)(team, 1)
    await sync_to_async(fund)(other_team, 1)
    refs = [await hold(t, USD // 20, f"req_{t.slug}_{i}") for i in range(10) for t in (team, other_team)]
    heard = []
    receipt_settled.connect(
        lambda sender, receipt, wallet, **kw: heard.append((receipt.public_id, wallet.team_id)),
        weak=False,
        dispatch_uid="test-heard",
    )
    try:
        settling = (asettle(r, usage=usage(10 * i, i), prices=PRICES, meta=META) for i, r in enumerate(refs))
        receipts = await asyncio.gather(*settling)
    finally:
        receipt_settled.disconnect(dispatch_uid="test-heard")
    assert statements == [20]  # all waiting together: one statement
    assert sorted(heard) == sorted((r.public_id, r.team_id) for r in receipts)
    for t in (team, other_team):
        mine = [r for r in receipts if r.team_id == t.id]
        stored = [r async for r in Receipt.objects.filter(team=t).order_by("pk")]
        assert [(r.pk, r.public_id, r.total_cost_nusd) for r in stored] == [
            (r.pk, r.public_id, r.total_cost_nusd) for r in mine
        ]
        entries = [e async for e in LedgerEntry.objects.filter(wallet__team=t).order_by("pk")]
        charges = [e for e in entries if e.kind == "charge"]
        assert [(e.reference, -e.amount_nusd) for e in charges] == [
            (r.public_id, r.total_cost_nusd) for r in mine if r.total_cost_nusd
        ]
        assert _ledger_walks(entries)
        w = await wallet(t)
        assert (w.balance_nusd, w.held_nusd) == (USD - sum(r.total_cost_nusd for r in mine), 0)
        assert entries[-1].balance_after_nusd == w.balance_nusd
    assert await Hold.objects.filter(status=HoldStatus.SETTLED).acount() == 20
    assert await sync_to_async(find_discrepancies)() == []


async def test_in_a_shared_statement_a_closed_hold_a_released_hold_and_a_bad_settlement_each_end_alone(
    team, statements
):
    """One settlement of a hold already settled (HoldClosed), one of a hold the sweeper released (the ORM form
    charges what it can), one the database refuses (its error; written again alone, the others are not held
    back by it) and two ordinary ones, all waiting together."""
    await sync_to_async(fund)(team, 1)
    settled, swept, bad, *fine = [await hold(team, USD // 10, f"req_{i}") for i in range(5)]
    await asettle(settled, usage=usage(), prices=PRICES, meta=META)
    await Hold.objects.filter(pk=swept.hold_id).aupdate(expires_at="2000-01-01T00:00:00Z", lease=None)
    assert await sync_to_async(release_abandoned_holds)() == 1
    statements.clear()
    refused = price(bad, usage=usage(), prices=PRICES, meta=META)
    refused.receipt.model_requested = "m" * 500  # longer than the column: the database refuses the row
    results = await asyncio.gather(
        asettle(settled, usage=usage(), prices=PRICES, meta=META),
        asettle(swept, usage=usage(), prices=PRICES, meta=META),
        settlement.record(refused),
        *(asettle(r, usage=usage(), prices=PRICES, meta=META) for r in fine),
        return_exceptions=True,
    )
    closed, charged, error, *ok = results
    assert isinstance(closed, BillingError) and closed.code == "hold_closed"
    assert isinstance(charged, Receipt) and charged.status == "succeeded"
    assert "value too long" in str(error)
    assert all(isinstance(r, Receipt) and r.pk for r in ok)
    assert statements == [5, 1, 1, 1, 1, 1]  # all together; refused as a batch, so each again alone
    assert (await Hold.objects.aget(pk=bad.hold_id)).status == HoldStatus.OPEN  # left to its caller to release
    entries = [e async for e in LedgerEntry.objects.filter(wallet__team=team).order_by("pk")]
    assert _ledger_walks(entries)
    w = await wallet(team)
    assert w.held_nusd == USD // 10  # the refused one's hold, still open
    assert await sync_to_async(find_discrepancies)() == []


async def test_two_settlements_of_one_hold_in_one_statement_write_one_and_refuse_the_other(team, statements):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    first, second = (price(ref, usage=usage(), prices=PRICES, meta=META) for _ in range(2))
    results = await asyncio.gather(settlement.record(first), settlement.record(second), return_exceptions=True)
    assert statements == [2]
    assert isinstance(results[0], Receipt) and isinstance(results[1], BillingError)
    assert results[1].code == "hold_closed"
    assert [r.public_id async for r in Receipt.objects.all()] == [first.receipt.public_id]
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (USD - first.receipt.total_cost_nusd, 0)
    assert await sync_to_async(find_discrepancies)() == []


async def test_a_settlement_whose_caller_was_cancelled_is_written_all_the_same(team):
    """Even one the shared statement leaves to the ORM form (its hold was swept meanwhile): that form runs for it."""
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    await Hold.objects.filter(pk=ref.hold_id).aupdate(expires_at="2000-01-01T00:00:00Z", lease=None)
    assert await sync_to_async(release_abandoned_holds)() == 1
    priced = price(ref, usage=usage(), prices=PRICES, meta=META)
    lp = await postgres._loop_pool()
    await cancel_while_waiting(lp.settlements, settlement.record(priced))
    assert (await Receipt.objects.aget()).public_id == priced.receipt.public_id
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (USD - priced.receipt.total_cost_nusd, 0)
    assert await sync_to_async(find_discrepancies)() == []


async def test_an_unreachable_database_refuses_the_hold_with_a_503(team, monkeypatch):
    await sync_to_async(fund)(team, 1)
    await sync_to_async(connection.ensure_connection)()
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # the pool opens its connections from these
    await sync_to_async(leases.current)()  # the lease row exists; only the pool's new connections fail
    with pytest.raises(BillingUnavailable):
        await hold(team, USD)
    monkeypatch.undo()
    await postgres.close_pool()
    assert await Hold.objects.acount() == 0


async def test_a_settlement_after_the_reply_is_retried_until_it_lands(team, monkeypatch):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    priced = price(ref, usage=usage(), prices=PRICES, meta=META)
    real, calls = postgres.asettle, []

    async def flaky(s):
        calls.append(1)
        if len(calls) == 1:
            raise BillingUnavailable()
        return await real(s)

    monkeypatch.setattr(postgres, "asettle", flaky)
    unsettled.add(team.id)
    receipt = await record_after_reply(priced)
    assert len(calls) == 2 and receipt.public_id == priced.receipt.public_id
    assert await sync_to_async(unsettled.wait)(team.id, 0) is True
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (USD - receipt.total_cost_nusd, 0)


async def test_a_settlement_waits_out_a_long_outage_and_reads_stop_waiting_for_it(team, monkeypatch, caplog):
    """While the database is away the hold stays open (its process lives and renews its lease); the settlement
    lands when it is back. Balance reads give up waiting after the first attempts."""
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    priced = price(ref, usage=usage(), prices=PRICES, meta=META)
    real, outage = postgres.asettle, {"left": 8}

    async def down(s):
        if outage["left"]:
            outage["left"] -= 1
            raise BillingUnavailable()
        return await real(s)

    async def no_wait(delay):
        return None

    monkeypatch.setattr(postgres, "asettle", down)
    monkeypatch.setattr(settlement.asyncio, "sleep", no_wait)
    unsettled.add(team.id)
    waited = []
    real_done = unsettled.done
    monkeypatch.setattr(unsettled, "done", lambda team_id: (waited.append(outage["left"]), real_done(team_id)))
    with caplog.at_level(logging.ERROR, logger="billing.settlement"):
        receipt = await record_after_reply(priced)
    assert receipt is not None and receipt.public_id == priced.receipt.public_id
    assert waited == [8 - settlement.UNSETTLED_WAIT_ATTEMPTS]  # reads stopped waiting mid-outage, once
    assert "database is unavailable" in caplog.text
    assert (await Hold.objects.aget(pk=ref.hold_id)).status == HoldStatus.SETTLED
    assert await sync_to_async(find_discrepancies)() == []


async def test_a_settlement_that_can_never_be_written_releases_its_hold(team, monkeypatch, caplog):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    priced = price(ref, usage=usage(), prices=PRICES, meta=META)

    async def broken(s):
        raise ValueError("a bug")

    monkeypatch.setattr(postgres, "asettle", broken)
    unsettled.add(team.id)
    with caplog.at_level(logging.ERROR, logger="billing.settlement"):
        assert await record_after_reply(priced) is None
    assert "cannot be retried" in caplog.text
    assert (await Hold.objects.aget(pk=ref.hold_id)).status == HoldStatus.RELEASED
    failed = await Receipt.objects.aget()
    assert (failed.status, failed.error_code, failed.total_cost_nusd) == ("failed", "settlement_failed", 0)
    assert (await wallet(team)).held_nusd == 0
    assert await sync_to_async(find_discrepancies)() == []


async def test_a_pooled_connection_whose_backend_was_terminated_is_replaced_before_it_fails_a_request(team):
    """Defect 1: after pg_terminate_backend (or a server restart) an idle pooled connection is dead; the pool's
    check replaces it, so the next request succeeds."""
    await sync_to_async(fund)(team, 1)
    settle_me = await hold(team, 1_000, "req_warm")  # opens the pool and proves one connection
    lp = await postgres._loop_pool()
    (conn, since), *others = lp.at_hand
    assert others == []
    await sync_to_async(_terminate)(conn.info.backend_pid)
    lp.at_hand[0] = (conn, since - postgres.IDLE_CHECK_SECONDS)  # as if idle for longer than IDLE_CHECK_SECONDS
    ref = await hold(team, USD - 1_000, "req_after")
    assert ref.hold_id is not None
    assert conn not in [c for c, _ in lp.at_hand]  # the pool's check found it dead and replaced it
    await asettle(settle_me, usage=usage(prompt=0, completion=0), prices=PRICES, meta=META)


async def test_the_next_statement_takes_the_connection_the_last_one_gave_back_without_a_check(team, monkeypatch):
    """The hold and the settlement each take one connection and give it straight back; the next statement within
    IDLE_CHECK_SECONDS takes that same connection without asking the pool or checking it."""
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD, "req_first")  # opens the pool
    lp = await postgres._loop_pool()
    [(conn, _)] = lp.at_hand
    checked, asked = [], []
    real_check, real_getconn = postgres.psycopg_pool.AsyncConnectionPool.check_connection, lp.pool.getconn

    async def counting(c):
        checked.append(c)
        await real_check(c)

    async def getconn(*args, **kwargs):
        asked.append(1)
        return await real_getconn(*args, **kwargs)

    monkeypatch.setattr(postgres.psycopg_pool.AsyncConnectionPool, "check_connection", counting)
    monkeypatch.setattr(lp.pool, "getconn", getconn)
    await asettle(ref, usage=usage(), prices=PRICES, meta=META)
    assert [c for c, _ in lp.at_hand] == [conn]
    assert checked == [] and asked == []  # used a moment ago: no extra round trip, no pool


async def test_a_connection_given_back_goes_to_a_statement_waiting_for_the_pool(team, settings):
    """With every connection busy, a statement waits for the pool; the next one given back is handed to it
    (not kept at hand), so no statement waits out its timeout while others finish."""
    settings.DB_ASYNC_POOL_SIZE = 1
    await sync_to_async(fund)(team, 30)
    started = asyncio.get_running_loop().time()
    refs = await asyncio.gather(*(hold(team, USD, f"req_{i}") for i in range(30)))
    assert len({r.hold_id for r in refs}) == 30
    assert asyncio.get_running_loop().time() - started < settings.DB_ASYNC_POOL_TIMEOUT_SECONDS


def _terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.parametrize("durable", [False, True])
async def test_the_pool_commits_asynchronously_unless_told_to_wait(team, settings, durable):
    settings.HOT_PATH_SYNCHRONOUS_COMMIT = durable
    pool = (await postgres._loop_pool()).pool
    async with pool.connection() as conn:
        shown = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        zone = await (await conn.execute("SHOW TimeZone")).fetchone()
    assert shown == ("on" if durable else "off",) and zone == ("UTC",)


def test_the_thread_path_still_serves_when_the_pool_is_off(team, settings):
    settings.DB_ASYNC_POOL_SIZE = 0
    fund(team, 1)
    assert not postgres._pooled()
    ref = place_hold(team_id=team.id, key_id=None, request_id="r", amount_nusd=USD, is_test=False)
    assert Wallet.objects.get(team=team).held_nusd == USD and ref.hold_id


# --- the database away and back (issue 11, found by tests/faults/test_database.py) --------------------------


@pytest.fixture
def gated_pool(settings, monkeypatch):
    """The pool's connections go through a TcpGate to the test database, so the database can vanish and come
    back without touching the shared server; the pool waits as long as production's does."""
    from tests.tcp_gate import TcpGate

    settings.DB_ASYNC_POOL_TIMEOUT_SECONDS = 10.0
    with TcpGate(connection.settings_dict["HOST"] or "127.0.0.1", connection.settings_dict["PORT"] or 5432) as gate:
        connection.ensure_connection()  # Django's own connection stays direct
        monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(connection.settings_dict, "PORT", str(gate.port))
        yield gate


async def _timed_hold(team, request_id: str) -> tuple[float, object]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        outcome: object = await hold(team, 1_000, request_id)
    except BillingUnavailable as exc:
        outcome = exc
    return loop.time() - started, outcome


async def test_while_the_database_is_unreachable_a_hold_is_refused_at_once_not_after_the_pool_timeout(team, gated_pool):
    await sync_to_async(fund)(team, 1)
    await sync_to_async(leases.current)()
    warm = await hold(team, 1_000, "req_warm")  # the pool is open and has a connection
    gated_pool.shut()
    for n in range(3):  # the pooled connection is dead, then there is none: each refusal comes at once
        took, outcome = await _timed_hold(team, f"req_down_{n}")
        assert isinstance(outcome, BillingUnavailable) and took < 1.5, (n, took, outcome)
    gated_pool.open()
    await asettle(warm, usage=usage(prompt=0, completion=0), prices=PRICES, meta=META)


async def test_after_a_long_outage_the_pool_reconnects_as_soon_as_the_database_is_back(team, gated_pool):
    """psycopg_pool's own reconnection backs off (1, 2, 4, 8 … s): after an outage of some seconds its next attempt
    can be many seconds after the database came back. Requests must not wait for it."""
    await sync_to_async(fund)(team, 1)
    await sync_to_async(leases.current)()
    await hold(team, 1_000, "req_warm")
    gated_pool.shut()
    loop = asyncio.get_running_loop()
    down_until = loop.time() + 6
    n = 0
    while loop.time() < down_until:  # bounded: six seconds of refused holds, the backoff grows meanwhile
        took, outcome = await _timed_hold(team, f"req_down_{n}")
        assert isinstance(outcome, BillingUnavailable), outcome
        n += 1
        await asyncio.sleep(0.2)
    gated_pool.open()
    took, outcome = await _timed_hold(team, "req_back")
    assert not isinstance(outcome, BillingUnavailable) and took < 1.0, (took, outcome)


# --- the statements on libpq (billing/backends/libpq.py) ----------------------------------------------------


async def test_an_error_reply_raises_its_sqlstates_class_and_the_connection_serves_the_next_statement(team):
    import psycopg

    from billing.backends import libpq

    await sync_to_async(fund)(team, 1)
    negative = libpq.Statement(
        "test_negative", "UPDATE billing_wallet SET held_nusd = %(held)s WHERE team_id = %(team)s RETURNING id"
    )
    async with (await postgres._loop_pool()).connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await libpq.fetchone(conn, negative, {"held": -1, "team": team.id})  # the wallet's own guard
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = await libpq.fetchone(conn, negative, {"held": 0, "team": team.id})
    assert row == ((await wallet(team)).id,)


async def test_a_statement_is_prepared_once_per_connection_and_parameter_types(team):
    from billing.backends import libpq

    lookup = libpq.Statement("test_lookup", "SELECT %(value)s::bigint, %(other)s::text")
    async with (await postgres._loop_pool()).connection() as conn:
        assert await libpq.fetchone(conn, lookup, {"value": 1, "other": None}) == (1, None)
        assert await libpq.fetchone(conn, lookup, {"value": 2, "other": "x"}) == (2, "x")  # same types: reused
        big = 10**12  # psycopg types an int by its size: int8 now, so a second preparation
        assert await libpq.fetchone(conn, lookup, {"value": big, "other": "y"}) == (big, "y")
        assert await libpq.fetchone(conn, lookup, {"value": big + 1, "other": None}) == (big + 1, None)
        prepared = [row async for row in await conn.execute("SELECT name FROM pg_prepared_statements")]
    assert sorted(name for (name,) in prepared if name.startswith("tg_test_lookup")) == [
        "tg_test_lookup_0",
        "tg_test_lookup_1",
    ]


async def test_a_statement_cancelled_mid_flight_never_hands_a_busy_connection_to_the_next_request(team):
    from billing.backends import libpq

    slow = libpq.Statement("test_slow", "SELECT pg_sleep(%(seconds)s), %(n)s::int")
    task = asyncio.ensure_future(_run(libpq, slow, {"seconds": 2, "n": 1}))
    await asyncio.sleep(0.2)
    task.cancel()  # the client left, the server is stopping: the connection is mid-statement
    with pytest.raises(asyncio.CancelledError):
        await task
    started = asyncio.get_running_loop().time()
    assert await _run(libpq, slow, {"seconds": 0, "n": 2}) == ("", 2)  # pg_sleep returns void: an empty text
    assert asyncio.get_running_loop().time() - started < 1.5  # not queued behind the cancelled sleep


async def _run(libpq, statement, params):
    async with (await postgres._loop_pool()).connection() as conn:
        return await libpq.fetchone(conn, statement, params)
