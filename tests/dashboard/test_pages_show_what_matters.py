"""The pages say what matters: Usage shows what the team used, test mode reads as test mode, field errors
speak in words, and the small things (just now, the only owner, a resent invitation, the demo's keys)."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.keys import mint_key
from accounts.models import Membership, Role
from accounts.services import invite_member, resend_invitation
from dashboard.templatetags.dashboard_tags import ago
from tests.dashboard.conftest import client_for, make_receipt


@pytest.fixture
def test_key(team, owner):
    return mint_key(team=team, name="sandbox", mode="test", created_by=owner).key


@pytest.fixture
def live_key(team, owner):
    return mint_key(team=team, name="prod-backend-eu", created_by=owner).key


# --- Usage -----------------------------------------------------------------------------------------------


def test_usage_defaults_to_test_keys_when_the_team_only_made_test_requests(owner, team, test_key):
    for _ in range(3):
        make_receipt(team, test_key, is_test=True, mode="test")
    html = client_for(owner).get(f"/t/{team.public_id}/usage/").content.decode()
    assert "No usage in this range" not in html
    assert 'data-testid="usage-requests">3<' in html
    assert "test keys: nothing was charged" in html and "Would have cost" in html
    assert '<option value="test" selected>' in html


def test_usage_defaults_to_live_keys_once_the_team_made_live_requests(owner, team, test_key, live_key):
    make_receipt(team, test_key, is_test=True, mode="test")
    make_receipt(team, live_key)
    make_receipt(team, live_key)
    html = client_for(owner).get(f"/t/{team.public_id}/usage/").content.decode()
    assert 'data-testid="usage-requests">2<' in html and "· live keys" in html
    assert '<option value="live" selected>' in html
    test_view = client_for(owner).get(f"/t/{team.public_id}/usage/?mode=test").content.decode()
    assert 'data-testid="usage-requests">1<' in test_view


def test_the_latest_requests_on_usage_match_the_mode_shown(owner, team, test_key, live_key):
    live = make_receipt(team, live_key)
    test = make_receipt(team, test_key, is_test=True, mode="test")
    html = client_for(owner).get(f"/t/{team.public_id}/usage/").content.decode()
    assert live.public_id in html and test.public_id not in html


def test_the_usage_chart_labels_today(owner, team, live_key):
    make_receipt(team, live_key)
    for query in ("", "?range=7", "?range=90"):
        html = client_for(owner).get(f"/t/{team.public_id}/usage/{query}").content.decode()
        assert ">Today</text>" in html, query


# --- test mode ---------------------------------------------------------------------------------------------


def test_test_requests_are_never_listed_as_charges(owner, team, test_key, live_key):
    test = make_receipt(team, test_key, is_test=True, mode="test")
    charged = make_receipt(team, live_key)
    html = client_for(owner).get(f"/t/{team.public_id}/billing/").content.decode()
    charges = html[html.index('id="recent-h"') : html.index('id="ledger"')]
    assert charged.public_id in charges and test.public_id not in charges
    assert 'data-live-mode="live"' in charges  # and the live updates skip test receipts there too


def test_a_test_receipt_says_what_it_would_have_cost_and_that_nothing_was_charged(owner, team, test_key):
    r = make_receipt(team, test_key, is_test=True, mode="test", prompt_tokens=100, completion_tokens=50)
    html = client_for(owner).get(f"/t/{team.public_id}/receipts/{r.public_id}/").content.decode()
    assert "Would have cost" in html and "Test request: nothing was charged" in html
    assert "Would have been charged" in html and "Total charged" not in html
    assert "Reserved before the call" not in html and "$0.000045" in html


def test_a_live_receipt_still_says_total_charged(owner, team, live_key):
    r = make_receipt(team, live_key)
    html = client_for(owner).get(f"/t/{team.public_id}/receipts/{r.public_id}/").content.decode()
    assert "Total charged" in html and "Would have cost" not in html and "nothing was charged" not in html


def test_lists_mark_a_test_request_in_the_column_that_phones_keep(owner, team, test_key):
    r = make_receipt(team, test_key, is_test=True, mode="test")
    for path in ("", "receipts/", "usage/?mode=test"):
        html = client_for(owner).get(f"/t/{team.public_id}/{path}").content.decode()
        row = html[html.index(f'data-receipt="{r.public_id}"') :].split("</tr>", 1)[0]
        first_cell = row.split("</td>", 1)[0]
        assert 'data-testid="test-marker"' in first_cell and "hide-sm" not in first_cell, path
        assert "not charged" in row, path


# --- words, not field names ----------------------------------------------------------------------------------


def test_a_limit_above_the_plan_is_explained_in_words(owner, team):
    response = client_for(owner).post(
        f"/t/{team.public_id}/keys/new/",
        {"name": "ci", "mode": "live", "scopes": ["inference"], "rpm_limit": "100000"},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "The requests-per-minute limit (100,000) is above the Starter plan" in html
    errors = re.findall(r'class="(?:errors|form-errors)"[^>]*>(.*?)</(?:ul|div)>', html, re.S)
    assert errors and not any("rpm_limit" in e for e in errors)


def test_the_api_names_the_field_in_param_and_the_message_in_words(team, owner):
    client = Client()
    client.force_login(owner)
    response = client.post(
        f"/api/v1/teams/{team.public_id}/keys/", {"name": "ci", "tpm_limit": 10**9}, content_type="application/json"
    )
    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (400, "tpm_limit")
    assert error["message"].startswith("The tokens-per-minute limit (1,000,000,000) is above")


# --- the small ones ---------------------------------------------------------------------------------------------


def test_a_key_used_seconds_ago_was_used_just_now(owner, team, live_key, time_machine):
    assert ago(timezone.now() - timedelta(seconds=20)) == "just now"
    assert ago(timezone.now() - timedelta(minutes=5, seconds=3)) == "5\xa0minutes ago"
    type(live_key).objects.filter(pk=live_key.pk).update(last_used_at=timezone.now() - timedelta(seconds=5))
    html = client_for(owner).get(f"/t/{team.public_id}/keys/").content.decode()
    assert "just now" in html and "0 minutes ago" not in html


def test_the_only_owner_is_not_offered_leave_team(owner, team, developer):
    members = client_for(owner).get(f"/t/{team.public_id}/members/").content.decode()
    settings_page = client_for(owner).get(f"/t/{team.public_id}/settings/").content.decode()
    for html in (members, settings_page):
        assert "Leave team" not in html and 'data-testid="only-owner"' in html
    assert "cannot leave it: first make another member an owner" in settings_page
    assert "Leave team" in client_for(developer).get(f"/t/{team.public_id}/members/").content.decode()


def test_one_of_two_owners_is_offered_leave_team(owner, team, admin_user):
    Membership.objects.filter(team=team, user=admin_user).update(role=Role.OWNER)
    assert "Leave team" in client_for(owner).get(f"/t/{team.public_id}/settings/").content.decode()


def test_a_resent_invitation_tells_the_first_link_it_was_replaced_not_revoked(owner, team):
    first = invite_member(actor=owner, team=team, email="new@acme.test", role="viewer")
    second = resend_invitation(actor=owner, invitation=first.invitation)
    old = Client().get(f"/invitations/{first.token}/").content.decode()
    assert "A newer invitation to this address was sent after this one" in old and "revoked" not in old
    assert "Create account and join" in Client().get(f"/invitations/{second.token}/").content.decode()


def test_a_revoked_invitation_still_says_revoked(owner, team):
    from accounts.services import revoke_invitation

    issued = invite_member(actor=owner, team=team, email="new@acme.test", role="viewer")
    revoke_invitation(actor=owner, invitation=issued.invitation)
    assert "This invitation has been revoked." in Client().get(f"/invitations/{issued.token}/").content.decode()


def test_the_demo_seed_does_not_claim_keys_are_shown_once_while_printing_them_each_start(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("seed_catalog", verbosity=0)
    outputs = []
    for _ in range(2):
        out = StringIO()
        call_command("seed_demo", stdout=out)
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] and "tg_live_" in outputs[1]  # the same keys on every start
    assert "(shown once" not in outputs[1]
    assert "keys you create in the dashboard are shown once" in outputs[1]


def test_the_live_badge_reads_live_updates(owner, team):
    html = client_for(owner).get(f"/t/{team.public_id}/").content.decode()
    assert "data-live-status>Live updates: connecting…<" in html


def test_the_limits_form_shows_a_round_spend_cap_as_plain_digits(owner, team):
    key = mint_key(team=team, name="ci", created_by=owner, monthly_spend_cap_nusd=20 * 10**9).key
    html = client_for(owner).get(f"/t/{team.public_id}/keys/{key.public_id}/limits/").content.decode()
    assert 'value="20"' in html and "2E+1" not in html
