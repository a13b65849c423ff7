"""The gateway's money statements on the event loop's own connection pool (billing.fastpath, PostgreSQL):
the same outcomes as the thread path, no overspending under concurrency, a clear 503 when the database is
away, and settlements recorded after the reply that survive a transient failure."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from billing import fastpath
from billing.models import Hold, HoldStatus, LedgerEntry, Receipt, Wallet
from billing.reconcile import find_discrepancies
from billing.services import (
    BillingError,
    aplace_hold,
    arecord_after_reply,
    asettle,
    place_hold,
    price,
    release_expired_holds,
    unsettled,
)
from billing.signals import receipt_settled
from config.errors import ApiError
from tests.billing.conftest import META, PRICES, USD, fund, usage
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def pool(settings):
    """The pool on, as in production; closed with the test's event loop."""
    settings.DB_ASYNC_POOL_SIZE = 4
    settings.DB_ASYNC_POOL_TIMEOUT_SECONDS = 2.0
    yield
    await fastpath.close_pool()


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
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(placed) == 7 and len(refused) == 43
    assert {(e.status, e.code) for e in refused} == {(402, "insufficient_balance")}
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (7 * USD, 7 * USD)
    assert await Hold.objects.filter(status=HoldStatus.OPEN).acount() == 7


async def test_a_hold_the_sweeper_expired_is_charged_without_releasing_it_twice(team):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    await Hold.objects.filter(pk=ref.hold_id).aupdate(expires_at="2000-01-01T00:00:00Z")
    assert await sync_to_async(release_expired_holds)() == 1
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


async def test_an_unreachable_database_refuses_the_hold_with_a_503(team, monkeypatch):
    await sync_to_async(fund)(team, 1)
    await sync_to_async(connection.ensure_connection)()
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # the pool opens its connections from these
    with pytest.raises(ApiError) as refused:
        await hold(team, USD)
    assert (refused.value.status, refused.value.code) == (503, "billing_unavailable")
    monkeypatch.undo()
    await fastpath.close_pool()
    assert await Hold.objects.acount() == 0


async def test_a_settlement_after_the_reply_is_retried_until_it_lands(team, monkeypatch):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    settlement = price(ref, usage=usage(), prices=PRICES, meta=META)
    real, calls = fastpath.asettle, []

    async def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise fastpath.psycopg.OperationalError("connection lost")
        return await real(**kwargs)

    monkeypatch.setattr(fastpath, "asettle", flaky)
    unsettled.add(team.id)
    receipt = await arecord_after_reply(settlement)
    assert len(calls) == 2 and receipt.public_id == settlement.receipt.public_id
    assert await sync_to_async(unsettled.wait)(team.id, 0) is True
    w = await wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (USD - receipt.total_cost_nusd, 0)


async def test_a_settlement_that_never_lands_is_logged_and_its_hold_left_to_the_sweeper(team, monkeypatch, caplog):
    await sync_to_async(fund)(team, 1)
    ref = await hold(team, USD)
    settlement = price(ref, usage=usage(), prices=PRICES, meta=META)

    async def down(**kwargs):
        raise fastpath.psycopg.OperationalError("database is down")

    async def no_wait(delay):
        return None

    monkeypatch.setattr(fastpath, "asettle", down)
    monkeypatch.setattr(asyncio, "sleep", no_wait)
    unsettled.add(team.id)
    with caplog.at_level(logging.ERROR, logger="billing.services"):
        assert await arecord_after_reply(settlement) is None
    assert settlement.receipt.public_id in caplog.text
    assert await sync_to_async(unsettled.wait)(team.id, 0) is True
    assert await Receipt.objects.acount() == 0
    # Nothing was charged; the hold stays open until the sweeper gives the credit back.
    assert (await Hold.objects.aget(pk=ref.hold_id)).status == HoldStatus.OPEN
    assert await sync_to_async(find_discrepancies)() == []


@pytest.mark.parametrize("durable", [False, True])
async def test_the_pool_commits_asynchronously_unless_told_to_wait(team, settings, durable):
    settings.HOT_PATH_SYNCHRONOUS_COMMIT = durable
    pool = await fastpath._pool()
    async with pool.connection() as conn:
        shown = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        zone = await (await conn.execute("SHOW TimeZone")).fetchone()
    assert shown == ("on" if durable else "off",) and zone == ("UTC",)


def test_the_thread_path_still_serves_when_the_pool_is_off(team, settings):
    settings.DB_ASYNC_POOL_SIZE = 0
    fund(team, 1)
    assert not fastpath.async_enabled()
    ref = place_hold(team_id=team.id, key_id=None, request_id="r", amount_nusd=USD, is_test=False)
    assert Wallet.objects.get(team=team).held_nusd == USD and ref.hold_id
