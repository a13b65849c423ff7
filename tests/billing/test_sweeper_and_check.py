"""A dead request's hold is given back by the periodic task; check_ledger proves every wallet reconciles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing import leases, settlement
from billing.models import Hold, HoldLease, HoldStatus, LedgerEntry, Wallet
from billing.reconcile import find_discrepancies
from billing.settlement import HoldRequest
from billing.tasks import release_abandoned_holds
from tests.billing.calls import place_hold, settle
from tests.billing.conftest import META, PRICES, USD, usage


def hold(team, amount, request_id="req_x"):
    return place_hold(team_id=team.id, key_id=None, request_id=request_id, amount_nusd=amount, is_test=False)


def test_a_live_processs_hold_is_never_swept_however_long_its_request_runs(funded_team, time_machine):
    time_machine.move_to("2026-06-01T10:00:00Z", tick=False)
    ref = hold(funded_team, USD)
    for _ in range(10):  # an hour of streaming: the process renews its lease on schedule
        time_machine.shift(settings.HOLD_LEASE_SECONDS / 3 * 20)
        assert leases.renew()
        assert release_abandoned_holds.apply().get() == 0
    assert Hold.objects.get(pk=ref.hold_id).status == HoldStatus.OPEN
    settle(ref, usage=usage(), prices=PRICES, meta=META)
    assert Wallet.objects.get(team=funded_team).balance_nusd == 10 * USD - 250_000
    assert find_discrepancies() == []


def test_the_periodic_task_releases_the_holds_of_a_process_that_stopped_renewing(funded_team, time_machine):
    time_machine.move_to("2026-06-01T10:00:00Z", tick=False)
    dead = hold(funded_team, 3 * USD, "req_dead")
    time_machine.shift(settings.HOLD_LEASE_SECONDS - 1)
    assert release_abandoned_holds.apply().get() == 0  # the lease has not run out yet

    time_machine.shift(2)  # the process died: no renewal came
    leases.forget()  # a new process (same test) gets a lease of its own
    alive = hold(funded_team, 2 * USD, "req_alive")
    assert release_abandoned_holds.apply().get() == 1  # the Celery task, run here rather than through a broker
    w = Wallet.objects.get(team=funded_team)
    assert Hold.objects.get(pk=dead.hold_id).status == HoldStatus.EXPIRED
    assert Hold.objects.get(pk=alive.hold_id).status == HoldStatus.OPEN
    assert (w.balance_nusd, w.held_nusd, w.available_nusd) == (10 * USD, 2 * USD, 8 * USD)
    assert find_discrepancies() == []
    assert not LedgerEntry.objects.filter(kind="charge").exists()  # releasing moves no money


def test_a_dead_processs_holds_are_released_within_two_minutes_whatever_the_hold_ttl(funded_team, settings):
    settings.HOLD_TTL_SECONDS = 10 * 24 * 3600  # irrelevant to leased holds
    assert settings.HOLD_LEASE_SECONDS + settings.HOLD_SWEEP_SECONDS <= 120
    assert settings.CELERY_BEAT_SCHEDULE["release-abandoned-holds"]["schedule"] == settings.HOLD_SWEEP_SECONDS
    ref = hold(funded_team, USD)
    row = Hold.objects.get(pk=ref.hold_id)
    assert row.expires_at is None and row.lease.expires_at <= row.created_at + timedelta(
        seconds=settings.HOLD_LEASE_SECONDS + 1
    )


def test_a_hold_without_a_lease_expires_after_the_hold_ttl(funded_team, time_machine):
    """Holds that outlive their request on purpose (an asynchronous job) are not tied to a process."""
    time_machine.move_to("2026-06-01T10:00:00Z", tick=False)
    ref = settlement.place_hold_sync(
        HoldRequest(
            team_id=funded_team.id, key_id=None, request_id="req_job", amount_nusd=USD, is_test=False, leased=False
        )
    )
    row = Hold.objects.get(pk=ref.hold_id)
    assert row.lease_id is None and (row.expires_at - row.created_at).total_seconds() == settings.HOLD_TTL_SECONDS
    time_machine.shift(settings.HOLD_TTL_SECONDS - 1)
    assert release_abandoned_holds() == 0
    time_machine.shift(2)
    assert release_abandoned_holds() == 1


def test_the_sweeper_leaves_settled_holds_alone(funded_team):
    settle(hold(funded_team, USD), usage=usage(), prices=PRICES, meta=META)
    HoldLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert release_abandoned_holds() == 0
    assert Wallet.objects.get(team=funded_team).held_nusd == 0
    assert find_discrepancies() == []


def test_ending_a_lease_frees_what_its_process_left_at_the_next_sweep(funded_team):
    hold(funded_team, USD)
    leases.end()  # graceful shutdown of this process
    assert release_abandoned_holds() == 1
    assert Wallet.objects.get(team=funded_team).held_nusd == 0


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


def test_check_ledger_fails_on_a_negative_balance_even_when_the_ledger_agrees(funded_team, capsys):
    from billing.adjustments import adjust_balance

    adjust_balance(funded_team, -11 * USD, actor=None, reason="a correction that overshoots", allow_negative=True)
    with pytest.raises(CommandError):
        call_command("check_ledger")
    assert "balance -1000000000 is below zero" in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_the_renewal_thread_keeps_the_lease_alive_and_stops_when_the_lease_ends(funded_team, settings):
    """The thread a process starts with its first hold: it pushes the lease's expiry forward on its own."""
    import time

    settings.HOLD_LEASE_RENEWAL = True
    settings.HOLD_LEASE_SECONDS = 0.3  # renewed every 0.1 s
    hold(funded_team, USD)
    lease = HoldLease.objects.get()
    first = lease.expires_at
    deadline = time.monotonic() + 5
    while HoldLease.objects.get().expires_at == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert HoldLease.objects.get().expires_at > first
    renewer = leases._renewer
    assert renewer is not None and renewer.is_alive()

    leases.end()
    renewer.join(timeout=5)
    assert not renewer.is_alive()
    assert HoldLease.objects.get().expires_at <= timezone.now()
    assert not leases.renew()  # no lease any more


def test_a_database_error_while_renewing_or_ending_is_logged_not_raised(funded_team, monkeypatch, caplog):
    from django.db import OperationalError

    hold(funded_team, USD)

    def refuse(*args, **kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr("django.db.models.query.QuerySet.update", refuse)
    assert leases.renew() is False
    leases.end()
    assert "could not renew hold lease" in caplog.text and "could not end hold lease" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_closing_the_process_ends_its_lease(funded_team):
    from asgiref.sync import sync_to_async

    await sync_to_async(hold)(funded_team, USD)
    assert await leases.acurrent() == await sync_to_async(leases.current)()
    await leases.close_process()
    assert await sync_to_async(release_abandoned_holds)() == 1
