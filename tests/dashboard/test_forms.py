"""Bad input on every dashboard form: the page answers 400 with the error shown, and nothing is written."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from accounts.keys import mint_key
from accounts.models import ApiKey, AuditLog, Invitation, Membership, Role, Team, User
from accounts.services import invite_member
from tests.dashboard.conftest import client_for

pytestmark = pytest.mark.django_db

GOOD_KEY = {"name": "ci", "mode": "live", "scopes": ["inference"]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "   "}, "This field is required."),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"mode": "prod"}, "Select a valid choice"),
        ({"scopes": []}, "This field is required"),
        ({"scopes": ["admin:everything"]}, "Select a valid choice"),
        ({"rpm_limit": "0"}, "greater than or equal to 1"),
        ({"rpm_limit": "many"}, "Enter a whole number"),
        ({"tpm_limit": "-5"}, "greater than or equal to 1"),
        ({"monthly_spend_cap_usd": "-1"}, "greater than or equal to 0"),
        ({"monthly_spend_cap_usd": "1.0000001"}, "decimal places"),
        ({"ip_allowlist": "10.0.0.0/8\nnot-an-ip"}, "Not an IP address or range: not-an-ip"),
        ({"allowed_models": ["no-such-model"]}, "Select a valid choice"),
        ({"expires_on": "2001-01-01"}, "Pick a date in the future."),
        ({"expires_on": "soon"}, "Enter a valid date"),
    ],
)
def test_creating_a_key_with_bad_input_writes_nothing(owner, team, change, message):
    response = client_for(owner).post(f"/t/{team.public_id}/keys/new/", {**GOOD_KEY, **change})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiKey.objects.exists()
    assert b"new-secret" not in response.content


def test_a_rate_limit_above_the_plan_is_refused_by_the_keys_service(owner, team):
    response = client_for(owner).post(f"/t/{team.public_id}/keys/new/", {**GOOD_KEY, "rpm_limit": "100000"})
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_a_created_key_is_shown_once_and_never_kept_in_the_session(owner, team):
    client = client_for(owner)
    response = client.post(
        f"/t/{team.public_id}/keys/new/", {**GOOD_KEY, "rpm_limit": "30", "monthly_spend_cap_usd": "12.5"}
    )
    assert response.status_code == 200
    key = ApiKey.objects.get()
    plaintext = response.context["minted"].plaintext
    html = response.content.decode()
    assert plaintext in html and "only time the secret is shown" in html
    assert response["Cache-Control"].startswith("no-store")
    assert key.rpm_limit == 30 and key.monthly_spend_cap_nusd == 12_500_000_000
    session = client.session
    assert all(plaintext not in str(v) for v in session.values())
    again = client.get(f"/t/{team.public_id}/keys/").content.decode()
    assert plaintext not in again and key.masked in again


def test_rotating_with_an_unknown_grace_window_changes_nothing(owner, team):
    key = mint_key(team=team, name="ci", created_by=owner).key
    for grace in ("999999999", "-1", "soon"):
        response = client_for(owner).post(f"/t/{team.public_id}/keys/{key.public_id}/rotate/", {"grace_seconds": grace})
        assert response.status_code == 302
    key.refresh_from_db()
    assert key.rotated_at is None


def test_rotating_shows_the_new_secret_and_the_old_one_ends_after_the_grace(owner, team):
    key = mint_key(team=team, name="ci", created_by=owner).key
    with time_machine.travel(timezone.now(), tick=False) as clock:
        response = client_for(owner).post(
            f"/t/{team.public_id}/keys/{key.public_id}/rotate/", {"grace_seconds": "86400"}
        )
        assert response.status_code == 200
        assert response.context["rotated"].plaintext.startswith("tg_live_")
        clock.shift(timedelta(hours=19))
        listing = client_for(owner).get(f"/t/{team.public_id}/keys/").content.decode()
        assert "old secret ends in 5 h" in listing
        clock.shift(timedelta(hours=6))
        listing = client_for(owner).get(f"/t/{team.public_id}/keys/").content.decode()
        assert "old secret ends" not in listing


def test_a_revoked_key_cannot_be_rotated(owner, team):
    key = mint_key(team=team, name="ci", created_by=owner).key
    client = client_for(owner)
    client.post(f"/t/{team.public_id}/keys/{key.public_id}/revoke/")
    response = client.post(f"/t/{team.public_id}/keys/{key.public_id}/rotate/", {"grace_seconds": "0"}, follow=True)
    assert "revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.rotated_at is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rpm_limit": "0"}, "greater than or equal to 1"),
        ({"ip_allowlist": "300.1.1.1"}, "Not an IP address"),
        ({"monthly_spend_cap_usd": "abc"}, "Enter a number"),
    ],
)
def test_editing_limits_with_bad_input_writes_nothing(owner, team, change, message):
    key = mint_key(team=team, name="ci", created_by=owner, rpm_limit=5).key
    response = client_for(owner).post(f"/t/{team.public_id}/keys/{key.public_id}/limits/", change)
    assert response.status_code == 400 and message in response.content.decode()
    key.refresh_from_db()
    assert key.rpm_limit == 5 and key.ip_allowlist == [] and key.monthly_spend_cap_nusd is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"email": "not-an-email", "role": "developer"}, "Enter a valid email address"),
        ({"email": "x@acme.test", "role": "emperor"}, "Select a valid choice"),
        ({"email": "olivia.owner@acme.test", "role": "viewer"}, "already a member"),
    ],
)
def test_inviting_with_bad_input_writes_nothing(owner, team, data, message):
    response = client_for(owner).post(f"/t/{team.public_id}/members/invite/", data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not Invitation.objects.exists()


def test_an_admin_cannot_invite_an_owner(admin_user, team):
    response = client_for(admin_user).post(
        f"/t/{team.public_id}/members/invite/", {"email": "boss@acme.test", "role": "owner"}
    )
    assert response.status_code == 400
    assert not Invitation.objects.exists()


def test_a_bad_role_or_the_last_owner_stepping_down_changes_nothing(owner, team):
    mine = Membership.objects.get(team=team, user=owner)
    client = client_for(owner)
    assert client.post(f"/t/{team.public_id}/members/{mine.pk}/role/", {"role": "king"}).status_code == 302
    response = client.post(f"/t/{team.public_id}/members/{mine.pk}/role/", {"role": "viewer"})
    assert response.status_code == 400 and "at least one owner" in response.content.decode()
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


def test_creating_a_team_needs_a_name(owner):
    client = client_for(owner)
    before = Team.objects.count()
    assert client.post("/teams/new/", {"name": "  "}).status_code == 400
    assert Team.objects.count() == before
    response = client.post("/teams/new/", {"name": "Side project"})
    team = Team.objects.get(name="Side project")
    assert response["Location"] == f"/t/{team.public_id}/"
    assert Membership.objects.get(team=team).user == owner


@pytest.mark.parametrize("query", ["start=yesterday", "start=2026-05-02&end=2026-05-01", "status=lost"])
def test_bad_receipt_filters_show_an_error_not_everything(owner, team, query):
    response = client_for(owner).get(f"/t/{team.public_id}/receipts/?{query}")
    assert response.status_code == 400


@pytest.mark.parametrize("query", ["range=custom", "range=custom&start=2026-05-02&end=2026-05-01", "range=12"])
def test_bad_usage_ranges_are_refused(owner, team, query):
    assert client_for(owner).get(f"/t/{team.public_id}/usage/?{query}").status_code == 400


def test_forms_need_the_csrf_token(owner, team):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner, backend="django.contrib.auth.backends.ModelBackend")
    response = client.post(f"/t/{team.public_id}/keys/new/", GOOD_KEY)
    assert response.status_code == 403
    assert not ApiKey.objects.exists()


# --- sign-up, invitations ------------------------------------------------------------------------------


def test_signing_up_creates_a_personal_team_with_a_wallet_and_sends_a_verification_email(db, mailoutbox):
    response = Client().post(
        "/signup/", {"email": "new@person.test", "password1": "a-long-passphrase-1", "name": "Nia", "team_name": ""}
    )
    assert response.status_code == 302
    user = User.objects.get(email="new@person.test")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER and membership.team.name == "Nia's team"
    assert membership.team.wallet.balance_nusd == 0
    assert any("confirm" in m.subject.lower() or "verify" in m.subject.lower() for m in mailoutbox)


@pytest.mark.parametrize(
    "data",
    [
        {"email": "olivia.owner@acme.test", "password1": "a-long-passphrase-1"},
        {"email": "nobody", "password1": "a-long-passphrase-1"},
        {"email": "short@person.test", "password1": "abc"},
    ],
)
def test_a_bad_sign_up_creates_no_account_and_no_team(owner, team, data):
    teams, users = Team.objects.count(), User.objects.count()
    response = Client().post("/signup/", data)
    assert response.status_code == 200  # allauth re-renders the form with its errors
    assert response.context["form"].errors
    assert (Team.objects.count(), User.objects.count()) == (teams, users)


@pytest.fixture
def invitation(owner, team):
    return invite_member(actor=owner, team=team, email="newbie@acme.test", role="viewer")


def test_a_new_person_signs_up_through_an_invitation_and_lands_in_the_team(invitation, team):
    client = Client()
    url = f"/invitations/{invitation.token}/"
    assert "Create account and join" in client.get(url).content.decode()
    response = client.post(
        url, {"name": "Newbie", "password1": "a-long-passphrase-1", "password2": "a-long-passphrase-1"}
    )
    assert response.status_code == 302 and response["Location"] == f"/t/{team.public_id}/"
    user = User.objects.get(email="newbie@acme.test")
    assert Membership.objects.get(team=team, user=user).role == Role.VIEWER
    assert client.get(response["Location"]).status_code == 200  # logged in


@pytest.mark.parametrize(
    "data, message",
    [
        ({"password1": "a-long-passphrase-1", "password2": "different-passphrase"}, "The two passwords differ."),
        ({"password1": "abc", "password2": "abc"}, "too short"),
    ],
)
def test_a_bad_invitation_sign_up_creates_nobody(invitation, data, message):
    response = Client().post(f"/invitations/{invitation.token}/", data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not User.objects.filter(email="newbie@acme.test").exists()


def test_an_existing_user_accepts_an_invitation_after_logging_in(owner, team, outsider):
    issued = invite_member(actor=owner, team=team, email=outsider.email, role="developer")
    url = f"/invitations/{issued.token}/"
    assert "Log in to accept" in Client().get(url).content.decode()
    response = client_for(outsider).post(url)
    assert response.status_code == 302
    assert Membership.objects.get(team=team, user=outsider).role == Role.DEVELOPER


def test_an_invitation_for_someone_else_is_refused(invitation, outsider, team):
    response = client_for(outsider).post(f"/invitations/{invitation.token}/")
    assert response.status_code == 400 and "different email" in response.content.decode()
    assert not Membership.objects.filter(team=team, user=outsider).exists()


def test_unknown_and_used_invitation_links_say_so(invitation, team):
    assert Client().get("/invitations/nope/").status_code == 404
    Invitation.objects.filter(pk=invitation.invitation.pk).update(expires_at=timezone.now() - timedelta(days=1))
    response = Client().get(f"/invitations/{invitation.token}/")
    assert response.status_code == 410 and "expired" in response.content.decode()


def test_every_dashboard_change_is_audited(owner, team):
    client_for(owner).post(f"/t/{team.public_id}/keys/new/", GOOD_KEY)
    assert AuditLog.objects.filter(team=team, action="key.created", actor=owner).exists()
