"""SIGNUP_CREDIT_USD: every team created at sign-up is credited once (a ledger grant); nothing else is."""

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import AuditLog, Membership, Team, User
from accounts.services import TeamOrigin, create_team
from accounts.signals import team_created
from billing.models import LedgerEntry, LedgerKind, Wallet
from billing.reconcile import find_discrepancies
from tests.dashboard.conftest import client_for
from tests.test_settings import settings_in_subprocess


def sign_up(email: str = "new@person.test") -> Team:
    response = Client().post("/signup/", {"email": email, "password1": "a-long-passphrase-1", "name": "Nia"})
    assert response.status_code == 302, response.content
    return Membership.objects.get(user__email=email).team


def test_a_new_team_from_sign_up_gets_the_sign_up_credit_once(db, settings):
    settings.SIGNUP_CREDIT_USD = Decimal("2.50")
    team = sign_up()
    entry = LedgerEntry.objects.get(wallet__team=team)
    assert (entry.kind, entry.amount_nusd, entry.balance_after_nusd) == (LedgerKind.GRANT, 2_500_000_000, 2_500_000_000)
    assert entry.memo == "Sign-up credit" and entry.reason == "SIGNUP_CREDIT_USD"
    assert Wallet.objects.get(team=team).balance_nusd == 2_500_000_000
    assert AuditLog.objects.get(action="billing.signup_credit_granted").team == team
    # whatever announces the team again, it is credited once
    team_created.send(sender=Team, team=team, owner=team.memberships.get().user, origin=TeamOrigin.SIGNUP)
    assert LedgerEntry.objects.filter(wallet__team=team).count() == 1
    assert find_discrepancies() == []


def test_the_owner_sees_the_credit_on_billing_and_can_spend_it(db, settings):
    settings.SIGNUP_CREDIT_USD = Decimal("1")
    team = sign_up()
    html = client_for(User.objects.get(email="new@person.test")).get(f"/t/{team.public_id}/billing/").content.decode()
    assert "Sign-up credit" in html and "$1.00" in html and "SIGNUP_CREDIT_USD" not in html


def test_by_default_there_is_no_sign_up_credit(db):
    team = sign_up()
    assert Wallet.objects.get(team=team).balance_nusd == 0
    assert not LedgerEntry.objects.exists()


def test_teams_created_later_or_by_operators_get_no_sign_up_credit(db, settings):
    settings.SIGNUP_CREDIT_USD = Decimal("3")
    team = sign_up()
    person = User.objects.get(email="new@person.test")
    response = client_for(person).post("/teams/new/", {"name": "Side project"})
    assert response.status_code == 302
    side = Team.objects.get(name="Side project")
    operator_team = create_team(name="Ops", slug="ops", owner=person)
    assert [Wallet.objects.get(team=t).balance_nusd for t in (team, side, operator_team)] == [3 * 10**9, 0, 0]


def test_every_new_team_gets_its_wallet_through_the_signal(db):
    owner = User.objects.create_user(email="o@x.test", password="x-very-secret-1")
    team = create_team(name="X", slug="x", owner=owner)
    assert Wallet.objects.filter(team=team).exists()


@pytest.mark.parametrize("value", ["-1", "abc", "0.0000000001", "20000", "NaN"])
def test_a_bad_sign_up_credit_setting_fails_loudly_at_start(value):
    with pytest.raises(subprocess.CalledProcessError) as exc:
        settings_in_subprocess({"SIGNUP_CREDIT_USD": value})
    assert "SIGNUP_CREDIT_USD" in exc.value.stderr
