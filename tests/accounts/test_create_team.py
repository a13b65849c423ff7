"""The create_team operations command prints one JSON object and refuses a taken slug cleanly."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import keyformat
from accounts.models import ApiKey, Membership, Team
from billing.models import LedgerEntry


def run(*args, **kwargs) -> dict:
    out = StringIO()
    call_command("create_team", *args, stdout=out, **kwargs)
    return json.loads(out.getvalue())


def test_create_team_prints_team_owner_balance_and_keys(db):
    data = run(
        "acme",
        owner="Boss@Acme.test",
        password="pw-123456",
        plan="pro",
        credits="12.50",
        key=["prod"],
        test_key=["ci"],
        scopes="inference,models:read",
        json=True,
    )
    assert data["team"]["slug"] == "acme" and data["team"]["plan"] == "pro"
    assert data["owner"] == "boss@acme.test"
    assert data["balance_usd"] == "12.5"
    assert [(k["name"], k["mode"]) for k in data["keys"]] == [("prod", "live"), ("ci", "test")]
    for k in data["keys"]:
        assert keyformat.parse_mode(k["key"]) == k["mode"]
        assert k["scopes"] == ["inference", "models:read"]
    team = Team.objects.get(slug="acme")
    assert Membership.objects.get(team=team).role == "owner"
    assert team.wallet.balance_nusd == 12_500_000_000
    assert LedgerEntry.objects.get(wallet=team.wallet).amount_nusd == 12_500_000_000
    assert ApiKey.objects.filter(team=team).count() == 2


def test_same_slug_is_refused_and_nothing_changes(db):
    run("acme", owner="a@acme.test", json=True)
    with pytest.raises(CommandError, match="already exists"):
        run("acme", owner="b@acme.test", credits="5", json=True)
    assert Team.objects.count() == 1
    assert LedgerEntry.objects.count() == 0


@pytest.mark.parametrize("credits", ["-1", "abc", "0.0000000001", "99999999"])
def test_bad_credits_are_refused(db, credits):
    with pytest.raises(CommandError):
        run("acme", owner="a@acme.test", credits=credits, json=True)
    assert not Team.objects.exists()


def test_unknown_scope_is_refused(db):
    with pytest.raises(CommandError, match="Unknown scope"):
        run("acme", owner="a@acme.test", key=["k"], scopes="inference,root", json=True)
    assert not Team.objects.exists()


def test_a_round_number_of_credits_prints_as_plain_digits(db):
    data = run("tens", owner="t@acme.test", credits="10", json=True)
    assert (data["balance_usd"], data["balance_display"]) == ("10", "$10.00")  # Decimal would print "1E+1"
