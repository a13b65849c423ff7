"""place_hold / settle / release: the money hot path the gateway calls around every upstream request."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import leases
from billing.errors import BillingError, InsufficientBalance, SpendCapExceeded
from billing.models import Hold, HoldLease, HoldStatus, LedgerEntry, LedgerKind, Receipt, ReceiptStatus, Wallet
from billing.pricing import Prices
from billing.reconcile import find_discrepancies
from billing.services import release_abandoned_holds
from billing.signals import receipt_settled
from tests.billing.calls import aplace_hold, arelease, asettle, place_hold, release, settle
from tests.billing.conftest import META, PRICES, USD, fund, usage


def hold_for(team, amount_nusd, *, key=None, is_test=False, cap=None, request_id="req_test"):
    return place_hold(
        team_id=team.id,
        key_id=key.key.id if key else None,
        request_id=request_id,
        amount_nusd=amount_nusd,
        is_test=is_test,
        monthly_spend_cap_nusd=cap,
    )


def wallet(team) -> Wallet:
    return Wallet.objects.get(team=team)


def data_statements(queries) -> list[str]:
    """Statements that touch tables: transaction control (BEGIN, SAVEPOINT, RELEASE) is not a round trip we count."""
    skip = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "BEGIN")
    return [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith(skip)]


def test_a_hold_reserves_credit_without_spending_it(funded_team, live_key):
    ref = hold_for(funded_team, 3 * USD, key=live_key)
    w = wallet(funded_team)
    assert (w.balance_nusd, w.held_nusd, w.available_nusd) == (10 * USD, 3 * USD, 7 * USD)
    hold = Hold.objects.get(pk=ref.hold_id)
    assert hold.status == HoldStatus.OPEN and hold.amount_nusd == 3 * USD and hold.request_id == "req_test"
    assert ref.public_id == hold.public_id and ref.public_id.startswith("hold_")


def test_it_refuses_a_hold_the_available_credit_cannot_cover(funded_team):
    hold_for(funded_team, 8 * USD)
    with pytest.raises(InsufficientBalance) as exc:
        hold_for(funded_team, 2 * USD + 1)
    assert (exc.value.code, exc.value.amount_nusd) == ("insufficient_balance", 2 * USD + 1)
    assert Hold.objects.count() == 1 and wallet(funded_team).held_nusd == 8 * USD


def test_a_hold_can_use_exactly_the_last_nano_dollar(funded_team):
    hold_for(funded_team, 10 * USD)
    assert wallet(funded_team).available_nusd == 0


def test_a_team_without_credit_is_refused(team):
    with pytest.raises(InsufficientBalance) as exc:
        hold_for(team, 1)
    assert exc.value.code == "insufficient_balance"


def test_placing_a_hold_is_one_statement_on_postgresql_and_two_elsewhere(funded_team, live_key):
    leases.current()  # the process's lease exists from its first hold on
    with CaptureQueriesContext(connection) as ctx:
        hold_for(funded_team, USD, key=live_key)
    statements = data_statements(ctx.captured_queries)
    if connection.vendor == "postgresql":  # billing/backends/postgres.py: UPDATE wallet + INSERT hold as one CTE
        assert len(statements) == 1, statements
        assert statements[0].upper().startswith("WITH W AS (UPDATE")
    else:
        assert len(statements) == 2, statements
        assert statements[0].upper().startswith("UPDATE") and statements[1].upper().startswith("INSERT")


def test_a_capped_key_holds_in_one_transaction_of_wallet_then_counter_then_hold(funded_team, live_key):
    leases.current()
    hold_for(funded_team, USD, key=live_key, cap=5 * USD)  # the month's counter is created by the first
    with CaptureQueriesContext(connection) as ctx:
        hold_for(funded_team, USD, key=live_key, cap=5 * USD, request_id="req_second")
    statements = [s.upper() for s in data_statements(ctx.captured_queries)]
    # billing.spend: the wallet's conditional UPDATE first (every money transaction of a team starts there), the
    # counter's conditional UPDATE, then the hold; no read of the spend before acting on it
    assert len(statements) == 4, statements
    assert statements[0].startswith('UPDATE "BILLING_WALLET"')
    assert statements[1].startswith('SELECT "BILLING_SPENDCOUNTER"."ID"')
    assert statements[2].startswith('UPDATE "BILLING_SPENDCOUNTER"') and '"USED_NUSD" <=' in statements[2]
    assert statements[3].startswith('INSERT INTO "BILLING_HOLD"')
    assert wallet(funded_team).held_nusd == 2 * USD


def test_settling_is_one_statement_on_postgresql_and_five_elsewhere(funded_team, live_key):
    ref = hold_for(funded_team, USD, key=live_key)
    with CaptureQueriesContext(connection) as ctx:
        settle(ref, usage=usage(), prices=PRICES, meta=META)
    statements = data_statements(ctx.captured_queries)
    assert len(statements) == (1 if connection.vendor == "postgresql" else 5), statements


def test_the_settled_signal_carries_the_receipt_and_wallet_as_written(
    funded_team, live_key, django_capture_on_commit_callbacks
):
    ref = hold_for(funded_team, USD, key=live_key)
    seen = []

    def listener(sender, receipt=None, wallet=None, **kwargs):
        seen.append((receipt, wallet))

    receipt_settled.connect(listener, dispatch_uid="test.settled.payload")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            receipt = settle(ref, usage=usage(), prices=PRICES, meta=META)
    finally:
        receipt_settled.disconnect(dispatch_uid="test.settled.payload")
    [(sent, sent_wallet)] = seen
    stored = Receipt.objects.get(public_id=receipt.public_id)
    assert sent is receipt and sent.pk == stored.pk and not sent._state.adding
    assert (sent.total_cost_nusd, sent.created_at) == (stored.total_cost_nusd, stored.created_at)
    w = wallet(funded_team)
    assert (sent_wallet.pk, sent_wallet.team_id, sent_wallet.balance_nusd, sent_wallet.held_nusd) == (
        w.pk,
        funded_team.id,
        w.balance_nusd,
        0,
    )
    assert sent_wallet.auto_recharge_enabled == w.auto_recharge_enabled
    assert sent_wallet.auto_recharge_threshold_nusd == w.auto_recharge_threshold_nusd


def test_settle_debits_the_exact_cost_and_writes_receipt_and_ledger(funded_team, live_key):
    ref = hold_for(funded_team, USD, key=live_key, request_id="req_abc")
    receipt = settle(ref, usage=usage(prompt=1_000, completion=200, cached=400), prices=PRICES, meta=META)

    # 1000 × 1000 + 400 × 250 = 1_100_000 input; 200 × 3000 = 600_000 output
    assert (receipt.input_cost_nusd, receipt.output_cost_nusd, receipt.total_cost_nusd) == (
        1_100_000,
        600_000,
        1_700_000,
    )
    assert receipt.public_id.startswith("rcpt_") and receipt.request_id == "req_abc"
    assert receipt.status == ReceiptStatus.SUCCEEDED and not receipt.is_test and receipt.mode == "live"
    assert (receipt.input_price_nusd, receipt.cached_price_nusd, receipt.output_price_nusd) == (1_000, 250, 3_000)
    assert (receipt.prompt_tokens, receipt.cached_tokens, receipt.completion_tokens) == (1_000, 400, 200)
    assert receipt.total_tokens == 1_600
    assert receipt.hold_amount_nusd == USD and receipt.api_key_id == live_key.key.id
    assert (receipt.model_requested, receipt.provider, receipt.latency_ms, receipt.ttft_ms) == (
        "demo-chat",
        "simulator",
        42,
        7,
    )
    w = wallet(funded_team)
    assert (w.balance_nusd, w.held_nusd) == (10 * USD - 1_700_000, 0)
    entry = LedgerEntry.objects.get(kind=LedgerKind.CHARGE)
    assert (entry.amount_nusd, entry.balance_after_nusd, entry.reference) == (
        -1_700_000,
        w.balance_nusd,
        receipt.public_id,
    )
    assert Hold.objects.get().status == HoldStatus.SETTLED
    assert find_discrepancies() == []


def test_a_partial_request_pays_for_what_was_produced(funded_team):
    ref = hold_for(funded_team, USD)
    receipt = settle(ref, usage=usage(prompt=10, completion=3), prices=PRICES, meta=META, status="partial")
    assert receipt.status == ReceiptStatus.PARTIAL and receipt.total_cost_nusd == 10 * 1_000 + 3 * 3_000
    assert wallet(funded_team).balance_nusd == 10 * USD - 19_000


def test_a_wrong_estimate_never_charges_more_than_the_hold(funded_team, caplog):
    ref = hold_for(funded_team, 5_000)
    with caplog.at_level(logging.WARNING, logger="billing.services"):
        receipt = settle(ref, usage=usage(prompt=2, completion=10), prices=PRICES, meta=META)  # would be 32_000
    assert receipt.total_cost_nusd == 5_000 == receipt.input_cost_nusd + receipt.output_cost_nusd
    assert wallet(funded_team).balance_nusd == 10 * USD - 5_000
    assert "held only 5000" in caplog.text


def test_a_zero_cost_settlement_writes_a_receipt_but_no_ledger_entry(funded_team):
    ref = hold_for(funded_team, USD)
    receipt = settle(ref, usage=usage(prompt=0, completion=0), prices=PRICES, meta=META)
    assert receipt.total_cost_nusd == 0
    assert not LedgerEntry.objects.filter(kind=LedgerKind.CHARGE).exists()
    assert (wallet(funded_team).balance_nusd, wallet(funded_team).held_nusd) == (10 * USD, 0)


def test_release_frees_the_hold_and_keeps_a_failed_receipt(funded_team, live_key):
    ref = hold_for(funded_team, 2 * USD, key=live_key)
    receipt = release(ref, meta=META, error_code="upstream_timeout")
    assert receipt.status == ReceiptStatus.FAILED and receipt.error_code == "upstream_timeout"
    assert receipt.total_cost_nusd == 0 and receipt.hold_amount_nusd == 2 * USD
    assert (wallet(funded_team).balance_nusd, wallet(funded_team).held_nusd) == (10 * USD, 0)
    assert not LedgerEntry.objects.filter(kind=LedgerKind.CHARGE).exists()
    assert Hold.objects.get().status == HoldStatus.RELEASED
    assert find_discrepancies() == []


def test_a_hold_cannot_be_settled_twice(funded_team):
    ref = hold_for(funded_team, USD)
    settle(ref, usage=usage(), prices=PRICES, meta=META)
    with pytest.raises(BillingError) as exc:
        settle(ref, usage=usage(), prices=PRICES, meta=META)
    assert exc.value.code == "hold_closed"
    with pytest.raises(BillingError):
        release(ref, meta=META, error_code="x")
    assert Receipt.objects.count() == 1 and find_discrepancies() == []


def test_a_hold_carries_its_process_lease_and_no_expiry_of_its_own(funded_team):
    ref = hold_for(funded_team, USD)
    row = Hold.objects.get(pk=ref.hold_id)
    assert row.lease_id == leases.current() and row.expires_at is None


def test_settling_a_hold_the_sweeper_released_charges_what_the_balance_covers_and_never_goes_below_zero(team):
    """The overdraft of defect 2: the sweeper frees a live request's hold (its process looked dead), the
    wallet's credit is spent meanwhile, then the late settlement arrives."""
    fund(team, 1)
    ref = hold_for(team, USD)  # a wallet worth exactly one hold
    HoldLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert release_abandoned_holds() == 1
    assert wallet(team).held_nusd == 0
    other = hold_for(team, USD - 100_000, request_id="req_other")  # the freed credit is reserved again …
    settle(other, usage=usage(prompt=900_000, completion=0), prices=PRICES, meta=META)  # … and spent: $0.90

    receipt = settle(ref, usage=usage(prompt=250_000, completion=0), prices=PRICES, meta=META)  # costs $0.25
    assert receipt.total_cost_nusd == 250_000_000 and receipt.uncollected_nusd == 150_000_000  # only $0.10 was left
    w = wallet(team)
    assert (w.balance_nusd, w.held_nusd) == (0, 0)
    assert (
        LedgerEntry.objects.filter(kind=LedgerKind.CHARGE, reference=receipt.public_id).get().amount_nusd
        == -100_000_000
    )
    assert Hold.objects.get(pk=ref.hold_id).status == HoldStatus.EXPIRED
    assert find_discrepancies() == []


def test_settling_a_hold_the_sweeper_released_charges_in_full_while_credit_lasts(funded_team):
    ref = hold_for(funded_team, USD)
    HoldLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert release_abandoned_holds() == 1
    receipt = settle(ref, usage=usage(), prices=PRICES, meta=META)
    assert (receipt.total_cost_nusd, receipt.uncollected_nusd) == (250_000, 0)
    w = wallet(funded_team)
    assert (w.balance_nusd, w.held_nusd) == (10 * USD - 250_000, 0)
    assert find_discrepancies() == []


def test_test_keys_write_test_receipts_and_never_touch_the_wallet(funded_team, test_key):
    ref = hold_for(funded_team, 100 * USD, key=test_key, is_test=True)  # more than the wallet holds: no check
    assert ref.hold_id is None and ref.is_test
    receipt = settle(ref, usage=usage(), prices=PRICES, meta=META)
    failed = release(hold_for(funded_team, 1, key=test_key, is_test=True), meta=META, error_code="upstream_error")
    assert receipt.is_test and receipt.mode == "test" and receipt.total_cost_nusd == 250_000
    assert failed.is_test and failed.status == ReceiptStatus.FAILED
    assert not Hold.objects.exists() and LedgerEntry.objects.filter(kind=LedgerKind.CHARGE).count() == 0
    assert (wallet(funded_team).balance_nusd, wallet(funded_team).held_nusd) == (10 * USD, 0)


def test_placing_a_test_hold_touches_no_table(funded_team, test_key):
    with CaptureQueriesContext(connection) as ctx:
        hold_for(funded_team, USD, key=test_key, is_test=True)
    assert ctx.captured_queries == []


def test_the_monthly_spend_cap_counts_settled_spend_and_open_holds(funded_team, live_key):
    cap = 1 * USD
    first = hold_for(funded_team, 400_000_000, key=live_key, cap=cap)
    settle(first, usage=usage(prompt=300_000, completion=0), prices=PRICES, meta=META)  # spent $0.30
    hold_for(funded_team, 500_000_000, key=live_key, cap=cap)  # $0.30 + $0.50 reserved
    with pytest.raises(SpendCapExceeded) as exc:
        hold_for(funded_team, 200_000_001, key=live_key, cap=cap)
    assert (exc.value.code, exc.value.limit, exc.value.used_nusd) == ("spend_cap_exceeded", "key", 800_000_000)
    assert wallet(funded_team).held_nusd == 500_000_000  # the refused reservation was rolled back
    hold_for(funded_team, 200_000_000, key=live_key, cap=cap)  # exactly up to the cap is fine
    assert find_discrepancies() == []


def test_the_spend_cap_starts_afresh_each_month(funded_team, live_key, time_machine):
    time_machine.move_to("2026-03-31T23:00:00Z")
    ref = hold_for(funded_team, USD, key=live_key, cap=USD)
    settle(ref, usage=usage(prompt=1_000_000, completion=0), prices=PRICES, meta=META)  # exactly $1
    with pytest.raises(SpendCapExceeded):
        hold_for(funded_team, 1, key=live_key, cap=USD)
    time_machine.move_to("2026-04-01T00:00:01Z")
    hold_for(funded_team, USD, key=live_key, cap=USD)


def test_spend_of_test_receipts_does_not_count_against_the_cap(funded_team, live_key, test_key):
    settle(
        hold_for(funded_team, USD, key=test_key, is_test=True),
        usage=usage(prompt=10**6, completion=0),
        prices=PRICES,
        meta=META,
    )
    hold_for(funded_team, USD, key=live_key, cap=USD)


def test_it_refuses_a_negative_hold(funded_team):
    with pytest.raises(ValueError):
        hold_for(funded_team, -1)
    assert wallet(funded_team).held_nusd == 0


def test_negative_token_counts_are_refused_and_nothing_moves(funded_team):
    ref = hold_for(funded_team, USD)
    with pytest.raises(ValueError):
        settle(ref, usage=usage(prompt=-5), prices=PRICES, meta=META)
    assert Hold.objects.get().status == HoldStatus.OPEN and not Receipt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_listeners_hear_about_a_settlement_only_after_it_commits(team):
    fund(team, 1)
    heard = []

    def listener(sender, receipt, wallet, **kwargs):
        heard.append((receipt.public_id, wallet.balance_nusd, wallet.held_nusd))

    receipt_settled.connect(listener)
    try:
        ref = place_hold(team_id=team.id, key_id=None, request_id="req_sig", amount_nusd=USD, is_test=False)
        receipt = settle(ref, usage=usage(), prices=PRICES, meta=META)
        failed = release(
            place_hold(team_id=team.id, key_id=None, request_id="r2", amount_nusd=1, is_test=False),
            meta=META,
            error_code="upstream_error",
        )
    finally:
        receipt_settled.disconnect(listener)
    assert heard == [(receipt.public_id, USD - 250_000, 0), (failed.public_id, USD - 250_000, 0)]


@pytest.mark.django_db(transaction=True)
async def test_the_async_wrappers_run_the_same_services(team, monkeypatch):
    from asgiref.sync import sync_to_async

    # Worker threads keep their connection for CONN_MAX_AGE; age them out at once so none outlives the test.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    await sync_to_async(fund)(team, 1)
    ref = await aplace_hold(team_id=team.id, key_id=None, request_id="req_async", amount_nusd=USD, is_test=False)
    receipt = await asettle(ref, usage=usage(), prices=Prices(input_nusd=1, output_nusd=1), meta=META)
    failed = await arelease(
        await aplace_hold(team_id=team.id, key_id=None, request_id="r", amount_nusd=5, is_test=False),
        meta=META,
        error_code="upstream_error",
    )
    assert receipt.total_cost_nusd == 150 and failed.status == "failed"
    w = await Wallet.objects.aget(team=team)
    await sync_to_async(lambda: connection.close())()  # the thread-sensitive helper thread's own connection
    assert (w.balance_nusd, w.held_nusd) == (USD - 150, 0)
