"""Membership rules: roles, the last-owner rule, ownership transfer, team deletion."""

import pytest

from accounts.models import AuditLog, Membership, Role, Team
from accounts.services import (
    AccountsError,
    PermissionDenied,
    change_role,
    delete_team,
    remove_member,
    transfer_ownership,
)


def membership(team, user):
    return Membership.objects.get(team=team, user=user)


def test_a_team_always_keeps_one_owner(team, owner):
    with pytest.raises(AccountsError) as exc:
        change_role(actor=owner, membership=membership(team, owner), role=Role.ADMIN)
    assert exc.value.code == "last_owner"
    with pytest.raises(AccountsError):
        remove_member(actor=owner, membership=membership(team, owner))
    assert membership(team, owner).role == Role.OWNER


def test_second_owner_lets_the_first_step_down(team, owner, admin_user):
    change_role(actor=owner, membership=membership(team, admin_user), role=Role.OWNER)
    change_role(actor=owner, membership=membership(team, owner), role=Role.DEVELOPER)
    assert membership(team, owner).role == Role.DEVELOPER
    assert AuditLog.objects.filter(team=team, action="member.role_changed").count() == 2


def test_admin_manages_members_but_not_owners(team, owner, admin_user, developer):
    change_role(actor=admin_user, membership=membership(team, developer), role=Role.VIEWER)
    assert membership(team, developer).role == Role.VIEWER
    with pytest.raises(PermissionDenied):
        change_role(actor=admin_user, membership=membership(team, developer), role=Role.OWNER)
    with pytest.raises(PermissionDenied):
        change_role(actor=admin_user, membership=membership(team, owner), role=Role.VIEWER)
    with pytest.raises(PermissionDenied):
        remove_member(actor=admin_user, membership=membership(team, owner))


@pytest.mark.parametrize("role_fixture", ["developer", "viewer", "billing_user"])
def test_other_roles_cannot_manage_members(request, team, admin_user, role_fixture):
    actor = request.getfixturevalue(role_fixture)
    with pytest.raises(PermissionDenied):
        change_role(actor=actor, membership=membership(team, admin_user), role=Role.VIEWER)
    with pytest.raises(PermissionDenied):
        remove_member(actor=actor, membership=membership(team, admin_user))


def test_an_outsider_cannot_touch_the_team(team, developer, outsider):
    with pytest.raises(PermissionDenied):
        remove_member(actor=outsider, membership=membership(team, developer))
    with pytest.raises(PermissionDenied):
        delete_team(actor=outsider, team=team)


def test_a_member_may_leave(team, developer):
    remove_member(actor=developer, membership=membership(team, developer))
    assert not Membership.objects.filter(team=team, user=developer).exists()


def test_transfer_ownership_steps_the_owner_down_to_admin(team, owner, developer):
    transfer_ownership(actor=owner, team=team, to=membership(team, developer))
    assert membership(team, developer).role == Role.OWNER
    assert membership(team, owner).role == Role.ADMIN


def test_only_an_owner_deletes_the_team(team, owner, admin_user):
    with pytest.raises(PermissionDenied):
        delete_team(actor=admin_user, team=team)
    delete_team(actor=owner, team=team)
    assert not Team.objects.filter(slug="acme").exists()
    assert AuditLog.objects.filter(action="team.deleted", target="acme").exists()
