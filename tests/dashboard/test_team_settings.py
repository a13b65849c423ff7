"""Team settings: rename and retention (owners, admins), transfer and delete (owners), leave (anyone but the
last owner). Every role cell, bad input writing nothing, and 404 for outsiders."""

from __future__ import annotations

import pytest

from accounts.models import AuditLog, Membership, Role, Team
from billing.services import grant_credit
from tests.dashboard.conftest import ROLES, client_for, expect

pytestmark = pytest.mark.django_db

EDITORS = {"owner", "admin_user"}


def url(team, tail: str = "") -> str:
    return f"/t/{team.public_id}/settings/{tail}"


@pytest.mark.parametrize("who", ROLES)
def test_every_member_can_open_the_settings_page_and_an_outsider_gets_404(people, team, who):
    response = client_for(people[who]).get(url(team))
    assert response.status_code == (404 if who == "outsider" else 200)


def test_the_sidebar_links_to_team_settings(owner, team):
    html = client_for(owner).get(f"/t/{team.public_id}/").content.decode()
    assert f'href="/t/{team.public_id}/settings/"' in html


@pytest.mark.parametrize("who", ROLES)
def test_renaming_the_team_and_storing_completions_is_for_owners_and_admins(people, team, who):
    response = client_for(people[who]).post(url(team), {"name": "Acme Labs", "store_completions": "on"})
    assert response.status_code == expect(who, EDITORS, ok=302)
    team.refresh_from_db()
    changed = who in EDITORS
    assert (team.name == "Acme Labs") == changed and team.store_completions == changed


def test_a_rename_is_audited_with_what_changed(owner, team):
    client_for(owner).post(url(team), {"name": "Acme Labs"})
    entry = AuditLog.objects.get(team=team, action="team.settings_changed")
    assert entry.actor == owner and entry.metadata["changes"] == {"name": ["Acme", "Acme Labs"]}


def test_turning_store_completions_off_again_is_saved(owner, team):
    Team.objects.filter(pk=team.pk).update(store_completions=True)
    assert client_for(owner).post(url(team), {"name": "Acme"}).status_code == 302  # unticked box = off
    team.refresh_from_db()
    assert team.store_completions is False


@pytest.mark.parametrize("name", ["", "   ", "x" * 121])
def test_a_blank_or_too_long_name_is_refused_and_nothing_is_written(owner, team, name):
    response = client_for(owner).post(url(team), {"name": name, "store_completions": "on"})
    assert response.status_code == 400
    team.refresh_from_db()
    assert team.name == "Acme" and team.store_completions is False
    assert not AuditLog.objects.filter(action="team.settings_changed").exists()


def test_non_editors_see_the_settings_read_only(viewer, team):
    html = client_for(viewer).get(url(team)).content.decode()
    assert "Save changes" not in html and "Transfer ownership" not in html and "Delete team" not in html
    assert "Leave team" in html


# --- transfer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ROLES)
def test_only_an_owner_can_transfer_ownership(people, team, developer, who):
    target = Membership.objects.get(team=team, user=developer)
    if who == "developer":
        target = Membership.objects.get(team=team, user=people["viewer"])
    response = client_for(people[who]).post(url(team, "transfer/"), {"membership": target.pk})
    assert response.status_code == expect(who, {"owner"}, ok=302)
    target.refresh_from_db()
    assert (target.role == Role.OWNER) == (who == "owner")


def test_after_a_transfer_the_old_owner_is_an_admin(owner, team, developer):
    target = Membership.objects.get(team=team, user=developer)
    client_for(owner).post(url(team, "transfer/"), {"membership": target.pk})
    roles = dict(Membership.objects.filter(team=team).values_list("user__email", "role"))
    assert roles == {owner.email: Role.ADMIN, developer.email: Role.OWNER}
    assert AuditLog.objects.filter(team=team, action="team.ownership_transferred", target=developer.email).exists()


@pytest.mark.parametrize("choice", ["", "abc", "999999", "self", "other-team"])
def test_a_transfer_to_no_one_or_to_a_stranger_is_refused_and_nothing_changes(
    owner, team, developer, other_team, choice
):
    values = {
        "self": Membership.objects.get(team=team, user=owner).pk,
        "other-team": Membership.objects.get(team=other_team).pk,
    }
    response = client_for(owner).post(url(team, "transfer/"), {"membership": values.get(choice, choice)})
    assert response.status_code == 400
    roles = dict(Membership.objects.filter(team=team).values_list("user__email", "role"))
    assert roles == {owner.email: Role.OWNER, developer.email: Role.DEVELOPER}
    assert Membership.objects.get(team=other_team).role == Role.OWNER


# --- delete --------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ROLES)
def test_only_an_owner_can_delete_the_team(people, team, who):
    response = client_for(people[who]).post(url(team, "delete/"), {"confirm": "acme"})
    assert response.status_code == expect(who, {"owner"}, ok=302)
    assert Team.objects.filter(slug="acme").exists() == (who != "owner")
    assert Team.objects.filter(slug="evil").exists()


def test_deleting_sends_the_owner_to_their_remaining_teams_and_is_audited(owner, team):
    response = client_for(owner).post(url(team, "delete/"), {"confirm": "acme"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert AuditLog.objects.filter(action="team.deleted", target="acme", actor=owner).exists()


@pytest.mark.parametrize("typed", ["", "Acme", "acme-x", "evil"])
def test_deleting_needs_the_slug_typed_exactly(owner, team, typed):
    response = client_for(owner).post(url(team, "delete/"), {"confirm": typed})
    assert response.status_code == 400
    assert Team.objects.filter(slug="acme").exists()
    assert not AuditLog.objects.filter(action="team.deleted").exists()


def test_a_team_with_billing_history_is_not_deleted_and_says_why(owner, team):
    grant_credit(team, amount_nusd=1_000_000_000, reason="test credit")
    response = client_for(owner).post(url(team, "delete/"), {"confirm": "acme"})
    assert response.status_code == 400 and "billing history" in response.content.decode()
    assert Team.objects.filter(slug="acme").exists()
    assert not AuditLog.objects.filter(action="team.deleted").exists()


# --- leave ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin_user", "developer", "viewer", "billing_user"])
def test_a_member_can_leave_the_team(people, team, who):
    response = client_for(people[who]).post(url(team, "leave/"))
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Membership.objects.filter(team=team, user=people[who]).exists()


def test_the_last_owner_cannot_leave_and_is_told_why(owner, team, developer):
    response = client_for(owner).post(url(team, "leave/"))
    assert response.status_code == 400
    assert "A team must keep at least one owner." in response.content.decode()
    assert Membership.objects.get(team=team, user=owner).role == Role.OWNER


def test_one_of_two_owners_can_leave(owner, team, admin_user):
    Membership.objects.filter(team=team, user=admin_user).update(role=Role.OWNER)
    assert client_for(owner).post(url(team, "leave/")).status_code == 302
    assert list(Membership.objects.filter(team=team).values_list("user__email", flat=True)) == [admin_user.email]


def test_an_outsider_cannot_leave_or_change_a_team_they_are_not_in(outsider, team):
    client = client_for(outsider)
    assert client.post(url(team, "leave/")).status_code == 404
    assert client.post(url(team), {"name": "pwned"}).status_code == 404
    team.refresh_from_db()
    assert team.name == "Acme" and Membership.objects.filter(team=team).count() == 1


@pytest.mark.parametrize("tail", ["", "transfer/", "delete/", "leave/"])
def test_settings_actions_need_a_csrf_token(owner, team, tail):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner, backend="django.contrib.auth.backends.ModelBackend")
    assert client.post(url(team, tail), {"name": "x", "confirm": "acme"}).status_code == 403
    assert Team.objects.filter(slug="acme", name="Acme").exists()


def test_leave_and_transfer_and_delete_refuse_get(owner, team):
    client = client_for(owner)
    for tail in ("transfer/", "delete/", "leave/"):
        assert client.get(url(team, tail)).status_code == 405
