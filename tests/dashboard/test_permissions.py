"""Every dashboard action for every role: allowed, refused with 403 (nothing written), or 404 for outsiders."""

from __future__ import annotations

import pytest

from accounts.keys import mint_key
from accounts.models import ApiKey, Invitation, Membership, Role
from accounts.services import invite_member
from tests.dashboard.conftest import ROLES, client_for, expect, make_receipt

pytestmark = pytest.mark.django_db

READ_PAGES = {
    # page → roles that may open it
    "": set(ROLES) - {"outsider"},
    "usage/": set(ROLES) - {"outsider"},
    "members/": set(ROLES) - {"outsider"},
    "models/": set(ROLES) - {"outsider"},
    "quickstart/": set(ROLES) - {"outsider"},
    "keys/": {"owner", "admin_user", "developer", "viewer"},
    "billing/": {"owner", "admin_user", "viewer", "billing_user"},
    "receipts/": {"owner", "admin_user", "viewer", "billing_user"},
    "receipts.csv": {"owner", "admin_user", "viewer", "billing_user"},
}


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("path", list(READ_PAGES))
def test_each_page_opens_for_the_roles_that_may_see_it_and_404s_for_outsiders(people, team, who, path):
    response = client_for(people[who]).get(f"/t/{team.public_id}/{path}")
    assert response.status_code == expect(who, READ_PAGES[path])


@pytest.mark.parametrize("who", ROLES)
def test_a_receipt_page_is_billing_data(people, team, who):
    receipt = make_receipt(team)
    response = client_for(people[who]).get(f"/t/{team.public_id}/receipts/{receipt.public_id}/")
    assert response.status_code == expect(who, READ_PAGES["billing/"])


def test_pages_of_a_team_that_does_not_exist_are_404(owner, team):
    assert client_for(owner).get("/t/team_doesnotexist/keys/").status_code == 404


def test_an_anonymous_visitor_is_sent_to_log_in(team):
    from django.test import Client

    response = Client().get(f"/t/{team.public_id}/keys/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ROLES)
def test_creating_a_key_is_for_owners_admins_and_developers(people, team, who):
    response = client_for(people[who]).post(
        f"/t/{team.public_id}/keys/new/", {"name": "ci", "mode": "live", "scopes": ["inference"]}
    )
    allowed = {"owner", "admin_user", "developer"}
    assert response.status_code == expect(who, allowed)
    assert ApiKey.objects.filter(team=team, name="ci").count() == (1 if who in allowed else 0)


@pytest.fixture
def owners_key(team, owner):
    return mint_key(team=team, name="owner key", created_by=owner).key


@pytest.fixture
def developers_key(team, developer):
    return mint_key(team=team, name="dev key", created_by=developer).key


MANAGE_OWNERS_KEY = {"owner", "admin_user"}  # a developer may manage only keys they created


@pytest.mark.parametrize("who", ROLES)
def test_rotating_a_key_follows_the_role(people, team, owners_key, who):
    old_hash = owners_key.secret_hash
    response = client_for(people[who]).post(
        f"/t/{team.public_id}/keys/{owners_key.public_id}/rotate/", {"grace_seconds": "3600"}
    )
    assert response.status_code == expect(who, MANAGE_OWNERS_KEY)
    owners_key.refresh_from_db()
    assert (owners_key.secret_hash != old_hash) == (who in MANAGE_OWNERS_KEY)


@pytest.mark.parametrize("who", ROLES)
def test_revoking_a_key_follows_the_role(people, team, owners_key, who):
    response = client_for(people[who]).post(f"/t/{team.public_id}/keys/{owners_key.public_id}/revoke/")
    assert response.status_code == expect(who, MANAGE_OWNERS_KEY, ok=302)
    owners_key.refresh_from_db()
    assert (owners_key.revoked_at is not None) == (who in MANAGE_OWNERS_KEY)


@pytest.mark.parametrize("who", ROLES)
def test_editing_a_keys_limits_follows_the_role(people, team, owners_key, who):
    response = client_for(people[who]).post(
        f"/t/{team.public_id}/keys/{owners_key.public_id}/limits/", {"rpm_limit": "10"}
    )
    assert response.status_code == expect(who, MANAGE_OWNERS_KEY, ok=302)
    owners_key.refresh_from_db()
    assert (owners_key.rpm_limit == 10) == (who in MANAGE_OWNERS_KEY)


def test_a_developer_manages_their_own_key(developer, team, developers_key):
    client = client_for(developer)
    base = f"/t/{team.public_id}/keys/{developers_key.public_id}"
    assert client.post(f"{base}/limits/", {"rpm_limit": "7"}).status_code == 302
    response = client.post(f"{base}/rotate/", {"grace_seconds": "0"})
    assert response.status_code == 200 and b"new-secret" in response.content
    assert client.post(f"{base}/revoke/").status_code == 302
    developers_key.refresh_from_db()
    assert developers_key.rpm_limit == 7 and developers_key.revoked_at is not None


def test_a_key_of_another_team_is_404_even_for_its_owner_through_this_team(owner, team, outsider, other_team):
    theirs = mint_key(team=other_team, name="theirs", created_by=outsider).key
    response = client_for(owner).post(f"/t/{team.public_id}/keys/{theirs.public_id}/revoke/")
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_the_keys_page_shows_actions_only_on_keys_the_person_may_manage(developer, team, owners_key, developers_key):
    html = client_for(developer).get(f"/t/{team.public_id}/keys/").content.decode()
    assert f"rotate-{developers_key.public_id}" in html
    assert f"rotate-{owners_key.public_id}" not in html


def test_a_viewer_sees_no_key_actions(viewer, team, owners_key):
    html = client_for(viewer).get(f"/t/{team.public_id}/keys/").content.decode()
    assert owners_key.name in html
    assert "Create key" not in html and "/rotate/" not in html and "/revoke/" not in html


# --- billing actions (forms post to billing.views) ------------------------------------------------


@pytest.mark.parametrize("who", ["developer", "viewer"])
def test_roles_without_billing_manage_are_refused_top_ups_and_auto_recharge(people, team, who, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_unused"
    client = client_for(people[who])
    topup = client.post(f"/billing/teams/{team.public_id}/topup/", {"amount_usd": "20"})
    recharge = client.post(
        f"/t/{team.public_id}/billing/auto-recharge/", {"enabled": "on", "threshold_usd": "5", "amount_usd": "20"}
    )
    redeem = client.post(f"/t/{team.public_id}/billing/redeem/", {"code": "TG-0000-0000-0000"})
    assert topup.status_code == 403 and recharge.status_code == 403 and redeem.status_code == 403
    from billing.models import TopUp, Wallet

    assert not TopUp.objects.exists()
    assert Wallet.objects.get(team=team).auto_recharge_enabled is False


def test_the_billing_page_shows_a_viewer_no_billing_actions(viewer, team):
    html = client_for(viewer).get(f"/t/{team.public_id}/billing/").content.decode()
    assert "/topup/" not in html and "/auto-recharge/" not in html and "/redeem/" not in html


def test_without_stripe_the_billing_page_says_so_in_words_and_never_names_a_setting(owner, team, settings):
    settings.STRIPE_SECRET_KEY = ""
    html = client_for(owner).get(f"/t/{team.public_id}/billing/").content.decode()
    assert "Card top-ups are not enabled on this installation. Redeem a credit code, or ask your administrator." in html
    assert "/topup/" not in html and "STRIPE" not in html and "Stripe is not configured" not in html
    assert "/redeem/" in html  # the way to add credit that works without Stripe


# --- members ---------------------------------------------------------------------------------------


MANAGERS = {"owner", "admin_user"}


@pytest.mark.parametrize("who", ROLES)
def test_inviting_is_for_owners_and_admins(people, team, who):
    response = client_for(people[who]).post(
        f"/t/{team.public_id}/members/invite/", {"email": "new@acme.test", "role": "developer"}
    )
    assert response.status_code == expect(who, MANAGERS, ok=302)
    assert Invitation.objects.filter(team=team, email="new@acme.test").exists() == (who in MANAGERS)


@pytest.mark.parametrize("who", ROLES)
def test_changing_a_role_is_for_owners_and_admins(people, team, viewer, who):
    membership = Membership.objects.get(team=team, user=viewer)
    response = client_for(people[who]).post(f"/t/{team.public_id}/members/{membership.pk}/role/", {"role": "developer"})
    assert response.status_code == expect(who, MANAGERS, ok=302)
    membership.refresh_from_db()
    assert (membership.role == Role.DEVELOPER) == (who in MANAGERS)


@pytest.mark.parametrize("who", [r for r in ROLES if r != "developer"])  # the developer removing themself is leaving
def test_removing_someone_else_is_for_owners_and_admins(people, team, developer, who):
    membership = Membership.objects.get(team=team, user=developer)
    response = client_for(people[who]).post(f"/t/{team.public_id}/members/{membership.pk}/remove/")
    assert response.status_code == expect(who, MANAGERS, ok=302)
    assert Membership.objects.filter(pk=membership.pk).exists() == (who not in MANAGERS)


def test_anyone_can_leave_a_team(developer, team):
    membership = Membership.objects.get(team=team, user=developer)
    response = client_for(developer).post(f"/t/{team.public_id}/members/{membership.pk}/remove/")
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_an_admin_cannot_demote_or_remove_an_owner(admin_user, owner, team):
    membership = Membership.objects.get(team=team, user=owner)
    client = client_for(admin_user)
    assert client.post(f"/t/{team.public_id}/members/{membership.pk}/role/", {"role": "viewer"}).status_code == 403
    assert client.post(f"/t/{team.public_id}/members/{membership.pk}/remove/").status_code == 403
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


@pytest.fixture
def pending(team, owner):
    return invite_member(actor=owner, team=team, email="pending@acme.test", role="viewer").invitation


@pytest.mark.parametrize("who", ROLES)
def test_revoking_an_invitation_is_for_owners_and_admins(people, team, pending, who):
    response = client_for(people[who]).post(f"/t/{team.public_id}/invitations/{pending.pk}/revoke/")
    assert response.status_code == expect(who, MANAGERS, ok=302)
    pending.refresh_from_db()
    assert (pending.revoked_at is not None) == (who in MANAGERS)


@pytest.mark.parametrize("who", ROLES)
def test_resending_an_invitation_is_for_owners_and_admins(people, team, pending, who):
    response = client_for(people[who]).post(f"/t/{team.public_id}/invitations/{pending.pk}/resend/")
    assert response.status_code == expect(who, MANAGERS, ok=302)
    live = Invitation.objects.filter(team=team, email="pending@acme.test", revoked_at=None, replaced_at=None)
    assert live.count() == 1
    assert (live.get().pk != pending.pk) == (who in MANAGERS)


def test_the_members_page_hides_management_from_non_managers(viewer, team, pending):
    html = client_for(viewer).get(f"/t/{team.public_id}/members/").content.decode()
    assert "Invite member" not in html and "/resend/" not in html and "/role/" not in html
