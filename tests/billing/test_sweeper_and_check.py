"""A dead request's hold is given back by the periodic task; check_ledger proves every wallet reconciles."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from billing.models import Hold, HoldStatus, LedgerEntry, Wallet
from billing.reconcile import find_discrepancies
from billing.services import place_hold, settle
from billing.tasks import release_expired_holds
from tests.billing.conftest import META, PRICES, USD, usage


def hold(team, amount, request_id="req_x"):
    return place_hold(team_id=team.id, key_id=None, request_id=request_id, amount_nusd=amount, is_test=False)


def test_a_hold_lives_longer_than_the_longest_upstream_call(funded_team):
    ref = hold(funded_team, USD)
    row = Hold.objects.get(pk=ref.hold_id)
    assert (row.expires_at - row.created_at).total_seconds() == settings.HOLD_TTL_SECONDS
    assert settings.HOLD_TTL_SECONDS > settings.UPSTREAM_TIMEOUT_SECONDS


def test_the_periodic_task_releases_a_dead_requests_hold(funded_team, time_machine):
    time_machine.move_to("2026-06-01T10:00:00Z", tick=False)
    dead = hold(funded_team, 3 * USD, "req_dead")
    time_machine.shift(settings.HOLD_TTL_SECONDS - 1)
    alive = hold(funded_team, 2 * USD, "req_alive")
    release_expired_holds.apply()  # the Celery task, run here rather than through a broker
    assert Hold.objects.get(pk=dead.hold_id).status == HoldStatus.OPEN  # not yet expired

    time_machine.shift(2)
    assert release_expired_holds.apply().get() == 1
    w = Wallet.objects.get(team=funded_team)
    assert Hold.objects.get(pk=dead.hold_id).status == HoldStatus.EXPIRED
    assert Hold.objects.get(pk=alive.hold_id).status == HoldStatus.OPEN
    assert (w.balance_nusd, w.held_nusd, w.available_nusd) == (10 * USD, 2 * USD, 8 * USD)
    assert find_discrepancies() == []
    assert not LedgerEntry.objects.filter(kind="charge").exists()  # releasing moves no money


def test_the_sweeper_leaves_settled_holds_alone(funded_team, time_machine):
    time_machine.move_to("2026-06-01T10:00:00Z", tick=False)
    settle(hold(funded_team, USD), usage=usage(), prices=PRICES, meta=META)
    time_machine.shift(settings.HOLD_TTL_SECONDS * 2)
    assert release_expired_holds() == 0
    assert Wallet.objects.get(team=funded_team).held_nusd == 0
    assert find_discrepancies() == []


def test_check_ledger_says_ok_when_everything_reconciles(funded_team, capsys):
    hold(funded_team, USD)
    call_command("check_ledger")
    assert capsys.readouterr().out.startswith("ok:")


def test_check_ledger_names_every_wallet_that_does_not_reconcile(funded_team, other_team, capsys):
    Wallet.objects.filter(team=funded_team).update(balance_nusd=11 * USD)  # money from nowhere
    Wallet.objects.filter(team=other_team).update(held_nusd=5)  # held with no open hold
    with pytest.raises(CommandError) as exc:
        call_command("check_ledger")
    err = capsys.readouterr().err
    assert "2 wallet(s) do not reconcile" in str(exc.value)
    assert "team acme" in err and "balance 11000000000 != ledger sum 10000000000" in err
    assert "team evil" in err and "held 5 != open holds 0" in err


def test_check_ledger_exits_non_zero_from_the_shell(funded_team):
    Wallet.objects.filter(team=funded_team).update(held_nusd=1)
    with pytest.raises(SystemExit) as exc:
        from django.core.management import ManagementUtility

        ManagementUtility(["manage.py", "check_ledger"]).execute()
    assert exc.value.code != 0
