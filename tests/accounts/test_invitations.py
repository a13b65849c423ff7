"""Invitations: single use, 7-day expiry, revocable, for existing users and new sign-ups."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from accounts.models import AuditLog, Invitation, Membership, Role
from accounts.services import (
    AccountsError,
    PermissionDenied,
    accept_invitation,
    invite_member,
    revoke_invitation,
    sign_up_with_invitation,
)
from tests.conftest import make_user


def test_invitation_is_emailed_and_only_its_hash_stored(team, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        issued = invite_member(actor=owner, team=team, email="New.Person@Example.test", role=Role.DEVELOPER)
    assert len(mail.outbox) == 1
    assert issued.accept_url in mail.outbox[0].body
    row = Invitation.objects.get()
    assert row.email == "new.person@example.test"
    assert issued.token not in row.token_hash
    assert AuditLog.objects.filter(action="invitation.created").exists()


def test_existing_user_accepts_once(team, owner):
    issued = invite_member(actor=owner, team=team, email="existing@example.test", role=Role.VIEWER)
    user = make_user("existing@example.test")
    membership = accept_invitation(token=issued.token, user=user)
    assert membership.role == Role.VIEWER
    with pytest.raises(AccountsError) as exc:
        accept_invitation(token=issued.token, user=user)
    assert exc.value.code == "invitation_accepted"


def test_new_person_signs_up_through_the_invitation(team, owner):
    issued = invite_member(actor=owner, team=team, email="fresh@example.test", role=Role.BILLING)
    membership = sign_up_with_invitation(token=issued.token, password="a-long-password")
    assert membership.user.email == "fresh@example.test"
    assert membership.user.check_password("a-long-password")
    assert membership.role == Role.BILLING


def test_invitation_expires_after_seven_days(team, owner):
    issued = invite_member(actor=owner, team=team, email="late@example.test", role=Role.DEVELOPER)
    user = make_user("late@example.test")
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)), pytest.raises(AccountsError) as exc:
        accept_invitation(token=issued.token, user=user)
    assert exc.value.code == "invitation_expired"
    assert not Membership.objects.filter(user=user).exists()


def test_revoked_invitation_cannot_be_used(team, owner):
    issued = invite_member(actor=owner, team=team, email="gone@example.test", role=Role.DEVELOPER)
    revoke_invitation(actor=owner, invitation=issued.invitation)
    with pytest.raises(AccountsError) as exc:
        accept_invitation(token=issued.token, user=make_user("gone@example.test"))
    assert exc.value.code == "invitation_revoked"


def test_invitation_for_another_address_is_refused(team, owner):
    issued = invite_member(actor=owner, team=team, email="right@example.test", role=Role.DEVELOPER)
    with pytest.raises(AccountsError) as exc:
        accept_invitation(token=issued.token, user=make_user("wrong@example.test"))
    assert exc.value.code == "invitation_wrong_user"


def test_unknown_token_is_refused(db):
    with pytest.raises(AccountsError):
        accept_invitation(token="nope", user=make_user("x@example.test"))


def test_admin_cannot_invite_an_owner_and_developer_cannot_invite(team, admin_user, developer):
    with pytest.raises(PermissionDenied):
        invite_member(actor=admin_user, team=team, email="o@example.test", role=Role.OWNER)
    with pytest.raises(PermissionDenied):
        invite_member(actor=developer, team=team, email="d@example.test", role=Role.VIEWER)


def test_reinviting_replaces_the_pending_invitation(team, owner):
    first = invite_member(actor=owner, team=team, email="twice@example.test", role=Role.DEVELOPER)
    invite_member(actor=owner, team=team, email="twice@example.test", role=Role.ADMIN)
    with pytest.raises(AccountsError):
        accept_invitation(token=first.token, user=make_user("twice@example.test"))
