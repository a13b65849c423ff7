"""A key's monthly cap and a project's monthly budget, enforced on spend counters moved in the hold's transaction
(billing.spend): refusals name the limit and reserve nothing, settlement, release and the sweeper move the
counters back, and on PostgreSQL 50 concurrent holds never pass a budget."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.keys import mint_key
from accounts.projects import create_project
from billing import spend
from billing.errors import InsufficientBalance, SpendCapExceeded
from billing.models import Hold, HoldLease, HoldStatus, Receipt, SpendCounter, Wallet
from billing.reconcile import find_discrepancies
from billing.services import release_abandoned_holds
from tests.billing.calls import place_hold, release, settle
from tests.billing.conftest import META, PRICES, USD, fund, usage
from tests.billing.test_concurrency import outcome, run_threads
from tests.conftest import requires_postgres


@pytest.fixture
def project(team):
    return create_project(actor=None, team=team, name="mobile", monthly_budget_nusd=USD)


def hold(team, amount, *, key=None, project=None, cap=None, request_id="req"):
    return place_hold(
        team_id=team.id,
        key_id=key.key.id if key else None,
        request_id=request_id,
        amount_nusd=amount,
        is_test=False,
        monthly_spend_cap_nusd=cap,
        project_id=project.pk if project else None,
        project_budget_nusd=project.monthly_budget_nusd if project else None,
    )


def used(project=None, key=None) -> int:
    if project is not None:
        return SpendCounter.objects.get(project=project).used_nusd
    return SpendCounter.objects.get(api_key=key.key).used_nusd


def test_a_project_budget_refuses_a_hold_and_nothing_is_reserved(funded_team, live_key, project):
    hold(funded_team, 600_000_000, key=live_key, project=project, cap=5 * USD)
    with pytest.raises(SpendCapExceeded) as exc:
        hold(funded_team, 400_000_001, key=live_key, project=project, cap=5 * USD, request_id="req2")
    assert (exc.value.limit, exc.value.cap_nusd, exc.value.used_nusd) == ("project", USD, 600_000_000)
    assert "project" in exc.value.message
    # the refused request reserved neither the wallet's credit nor the key's cap
    assert Wallet.objects.get(team=funded_team).held_nusd == 600_000_000
    assert used(key=live_key) == used(project=project) == 600_000_000
    hold(funded_team, 400_000_000, key=live_key, project=project, cap=5 * USD, request_id="req3")  # up to the budget
    assert used(project=project) == USD and find_discrepancies() == []


def test_the_key_cap_is_checked_with_the_project_budget(funded_team, live_key, project):
    with pytest.raises(SpendCapExceeded) as exc:
        hold(funded_team, 300_000_000, key=live_key, project=project, cap=200_000_000)
    assert exc.value.limit == "key"
    assert not Hold.objects.exists() and not SpendCounter.objects.filter(used_nusd__gt=0).exists()


def test_a_wallet_that_cannot_pay_refuses_first_and_moves_no_counter(team, live_key, project):
    with pytest.raises(InsufficientBalance):
        hold(team, 1, key=live_key, project=project, cap=USD)
    assert not SpendCounter.objects.exists()


def test_settling_turns_the_held_amount_into_the_cost_and_releasing_gives_it_back(funded_team, live_key, project):
    first = hold(funded_team, 500_000_000, key=live_key, project=project, cap=5 * USD)
    second = hold(funded_team, 300_000_000, key=live_key, project=project, cap=5 * USD, request_id="req2")
    assert first.counted and used(project=project) == 800_000_000
    receipt = settle(first, usage=usage(prompt=100_000, completion=0), prices=PRICES, meta=META)  # costs $0.10
    assert receipt.project_id == project.pk
    assert used(project=project) == used(key=live_key) == 100_000_000 + 300_000_000
    release(second, meta=META, error_code="upstream_error")
    assert used(project=project) == used(key=live_key) == receipt.total_cost_nusd == 100_000_000
    assert find_discrepancies() == []


def test_the_sweeper_gives_back_what_an_abandoned_hold_reserved(funded_team, live_key, project):
    ref = hold(funded_team, 500_000_000, key=live_key, project=project, cap=5 * USD)
    HoldLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert release_abandoned_holds() == 1
    assert used(project=project) == used(key=live_key) == 0
    # a settlement arriving after the sweeper still counts what it charges
    settle(ref, usage=usage(prompt=10_000, completion=0), prices=PRICES, meta=META)
    assert used(project=project) == 10_000_000 and find_discrepancies() == []


def test_a_counter_opened_mid_month_starts_from_what_was_already_spent(funded_team, live_key, project):
    settle(hold(funded_team, USD, key=live_key), usage=usage(prompt=250_000, completion=0), prices=PRICES, meta=META)
    assert not SpendCounter.objects.exists()  # no cap yet: no counter, the hold was the one-statement kind
    with pytest.raises(SpendCapExceeded) as exc:
        hold(funded_team, 800_000_000, key=live_key, cap=USD, request_id="req2")
    assert exc.value.used_nusd == 250_000_000  # the month's receipts before the cap existed count
    assert spend.used_this_month("key", live_key.key.id) == 250_000_000


def test_counters_start_afresh_each_month(funded_team, live_key, project, time_machine):
    time_machine.move_to("2026-03-31T23:00:00Z")
    settle(
        hold(funded_team, USD, project=project), usage=usage(prompt=1_000_000, completion=0), prices=PRICES, meta=META
    )
    with pytest.raises(SpendCapExceeded):
        hold(funded_team, 1, project=project, request_id="req2")
    time_machine.move_to("2026-04-01T00:00:01Z")
    hold(funded_team, USD, project=project, request_id="req3")
    assert sorted(SpendCounter.objects.values_list("month", "used_nusd")) == [
        (timezone.datetime(2026, 3, 1).date(), USD),
        (timezone.datetime(2026, 4, 1).date(), USD),
    ]


def test_a_project_without_a_budget_counts_its_receipts_but_limits_nothing(funded_team, live_key, team):
    free = create_project(actor=None, team=team, name="free")
    ref = hold(funded_team, 3 * USD, key=live_key, project=free)
    assert not ref.counted and not SpendCounter.objects.exists()
    receipt = settle(ref, usage=usage(), prices=PRICES, meta=META)
    assert Receipt.objects.get(pk=receipt.pk).project == free


# --- on PostgreSQL, concurrently ----------------------------------------------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_holds_racing_for_a_project_budget_that_affords_seven(team, owner):
    fund(team, 100)  # the wallet could pay for all of them: only the budget can refuse
    project = create_project(actor=None, team=team, name="race", monthly_budget_nusd=7 * USD)
    keys = [mint_key(team=team, name=f"k{i}", created_by=owner, project=project) for i in range(5)]
    results = run_threads(50, lambda i: hold(team, USD, key=keys[i % 5], project=project, request_id=f"req_p{i}"))
    assert Counter(map(outcome, results)) == {"ok": 7, "spend_cap_exceeded": 43}
    assert {r.limit for r in results if isinstance(r, SpendCapExceeded)} == {"project"}
    assert used(project=project) == 7 * USD == Wallet.objects.get(team=team).held_nusd
    assert Hold.objects.filter(status=HoldStatus.OPEN).count() == 7
    assert find_discrepancies() == []


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_fifty_threads_holding_and_settling_under_a_key_cap_and_a_budget_keep_both_exact(team, owner):
    fund(team, 100)
    project = create_project(actor=None, team=team, name="race", monthly_budget_nusd=20 * USD)
    key = mint_key(team=team, name="capped", created_by=owner, project=project, monthly_spend_cap_nusd=9 * USD)
    first = [hold(team, USD, key=key, project=project, cap=9 * USD, request_id=f"req_a{i}") for i in range(5)]

    def work(i: int):
        if i < 5:  # each settles at $0.25, freeing $0.75 of the cap and the budget
            return settle(first[i], usage=usage(prompt=250_000, completion=0), prices=PRICES, meta=META)
        return hold(team, USD, key=key, project=project, cap=9 * USD, request_id=f"req_b{i}")

    results = run_threads(50, work)
    placed = sum(1 for r in results[5:] if not isinstance(r, Exception))
    assert {outcome(r) for r in results[5:] if isinstance(r, Exception)} <= {"spend_cap_exceeded"}
    settled = 5 * 250_000_000
    assert used(key=key) == used(project=project) == settled + placed * USD <= 9 * USD
    assert Wallet.objects.get(team=team).held_nusd == placed * USD
    assert find_discrepancies() == []
