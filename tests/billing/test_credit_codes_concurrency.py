"""On PostgreSQL: concurrent redemptions never credit a code more often than it allows, nor one team twice."""

from __future__ import annotations

from collections import Counter

import pytest

from accounts.models import User
from accounts.services import create_team
from billing import credit_codes
from billing.models import CreditCode, CreditCodeRedemption, LedgerEntry, LedgerKind, Wallet
from billing.reconcile import find_discrepancies
from tests.billing.conftest import USD
from tests.billing.test_concurrency import run_threads
from tests.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


def outcome(result) -> str:
    if isinstance(result, credit_codes.CreditCodeError):
        return result.code
    return "ok" if isinstance(result, CreditCodeRedemption) else repr(result)


def test_twenty_teams_racing_for_a_five_use_code_credit_exactly_five():
    ((row, code),) = credit_codes.mint_codes(amount_nusd=3 * USD, count=1, max_redemptions=5, actor=None).codes
    people = [User.objects.create_user(email=f"p{i}@race.test", password="x-very-secret-1") for i in range(20)]
    teams = [create_team(name=f"Race {i}", slug=f"race-{i}", owner=p) for i, p in enumerate(people)]

    results = run_threads(20, lambda i: credit_codes.redeem(teams[i], code, actor=people[i]))

    assert Counter(map(outcome, results)) == {"ok": 5, "invalid_code": 15}
    assert CreditCode.objects.get(pk=row.pk).redemptions == 5
    assert CreditCodeRedemption.objects.count() == 5
    assert LedgerEntry.objects.filter(kind=LedgerKind.CREDIT_CODE).count() == 5
    assert sorted(Wallet.objects.values_list("balance_nusd", flat=True)) == [0] * 15 + [3 * USD] * 5
    assert find_discrepancies() == []


def test_one_team_redeeming_the_same_code_ten_times_at_once_is_credited_once(team, owner, settings):
    settings.CREDIT_CODE_ATTEMPTS_PER_USER_PER_HOUR = 100
    ((row, code),) = credit_codes.mint_codes(amount_nusd=2 * USD, count=1, max_redemptions=50, actor=None).codes

    results = run_threads(10, lambda i: credit_codes.redeem(team, code, actor=owner))

    assert Counter(map(outcome, results)) == {"ok": 1, "already_redeemed": 9}
    assert CreditCode.objects.get(pk=row.pk).redemptions == 1  # the losers' claims were rolled back
    assert Wallet.objects.get(team=team).balance_nusd == 2 * USD
    assert find_discrepancies() == []
