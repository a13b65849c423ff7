"""Team, membership and invitation rules. Views and commands call these; nothing else writes the rows."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone
from django.utils.text import slugify

from accounts import signals
from accounts.models import AuditLog, Invitation, Membership, Role, Team, User
from accounts.permissions import Action, can, can_assign
from config import emails


class AccountsError(Exception):
    """A rule refused the change. `code` is stable for tests and API responses."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PermissionDenied(AccountsError):
    def __init__(self, message: str = "Your role in this team does not allow that.") -> None:
        super().__init__("permission_denied", message)


# --- audit ---------------------------------------------------------------------------


def audit(
    action: str,
    *,
    team: Team | None,
    actor: User | None = None,
    actor_label: str = "",
    target: str = "",
    ip: str | None = None,
    **metadata,
) -> AuditLog:
    return AuditLog.objects.create(
        team=team,
        actor=actor,
        actor_label=actor_label or (actor.email if actor else "system"),
        action=action,
        target=target,
        ip=ip or None,
        metadata=metadata,
    )


# --- teams ------------------------------------------------------------------------------


def role_of(user: User | None, team: Team) -> str | None:
    if user is None or not user.is_authenticated:
        return None
    return Membership.objects.filter(team=team, user=user).values_list("role", flat=True).first()


def require(user: User, team: Team, action: Action) -> str:
    role = role_of(user, team)
    if not can(role, action):
        raise PermissionDenied()
    return role  # type: ignore[return-value]


def unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "team"
    slug, n = base, 1
    while Team.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


class TeamOrigin(StrEnum):
    """Where a team was created; receivers of `team_created` may treat them differently (billing grants
    SIGNUP_CREDIT_USD to sign-up teams only, so creating more teams is not a way to mint free credit)."""

    SIGNUP = "signup"  # the personal team of a new account
    DASHBOARD = "dashboard"  # "Create a team" by a signed-in person
    OPERATOR = "operator"  # commands, the admin, tests


@transaction.atomic
def create_team(
    *,
    name: str,
    owner: User,
    slug: str | None = None,
    plan: str = "starter",
    ip: str | None = None,
    origin: TeamOrigin = TeamOrigin.OPERATOR,
) -> Team:
    """A team with its owner membership; `team_created` (same transaction) lets billing add the wallet."""
    slug = slug or unique_slug(name)
    if Team.objects.filter(slug=slug).exists():
        raise AccountsError("slug_taken", f"A team with slug '{slug}' already exists.")
    team = Team.objects.create(name=name, slug=slug, plan=plan)
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    audit("team.created", team=team, actor=owner, target=team.slug, ip=ip, origin=str(origin))
    signals.team_created.send(sender=Team, team=team, owner=owner, origin=TeamOrigin(origin))
    return team


def _owner_count(team: Team) -> int:
    return Membership.objects.filter(team=team, role=Role.OWNER).count()


@transaction.atomic
def change_role(*, actor: User, membership: Membership, role: str, ip: str | None = None) -> Membership:
    team = membership.team
    actor_role = require(actor, team, Action.MEMBERS_MANAGE)
    if role not in Role.values:
        raise AccountsError("invalid_role", f"Unknown role '{role}'.")
    # Only an owner may touch an owner's membership or hand out ownership.
    if (membership.role == Role.OWNER or role == Role.OWNER) and actor_role != Role.OWNER:
        raise PermissionDenied("Only an owner can change an owner or make someone an owner.")
    if not can_assign(actor_role, role):
        raise PermissionDenied()
    # Lock the team's owner rows so two demotions cannot race past the last-owner rule.
    list(Membership.objects.select_for_update().filter(team=team, role=Role.OWNER))
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(team) <= 1:
        raise AccountsError("last_owner", "A team must keep at least one owner.")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit(
        "member.role_changed", team=team, actor=actor, target=membership.user.email, ip=ip, old_role=old, new_role=role
    )
    return membership


@transaction.atomic
def remove_member(*, actor: User, membership: Membership, ip: str | None = None) -> None:
    team = membership.team
    leaving_self = membership.user_id == actor.pk
    actor_role = role_of(actor, team) if leaving_self else require(actor, team, Action.MEMBERS_MANAGE)
    if actor_role is None:
        raise PermissionDenied()
    if membership.role == Role.OWNER and actor_role != Role.OWNER:
        raise PermissionDenied("Only an owner can remove an owner.")
    list(Membership.objects.select_for_update().filter(team=team, role=Role.OWNER))
    if membership.role == Role.OWNER and _owner_count(team) <= 1:
        raise AccountsError("last_owner", "A team must keep at least one owner.")
    email = membership.user.email
    membership.delete()
    audit("member.removed", team=team, actor=actor, target=email, ip=ip)


@transaction.atomic
def transfer_ownership(*, actor: User, team: Team, to: Membership, ip: str | None = None) -> None:
    """Make `to` an owner and step the acting owner down to admin."""
    require(actor, team, Action.TEAM_TRANSFER)
    if to.team_id != team.pk:
        raise AccountsError("not_a_member", "The new owner must already be a member of the team.")
    mine = Membership.objects.select_for_update().get(team=team, user=actor)
    to.role = Role.OWNER
    to.save(update_fields=["role"])
    if mine.pk != to.pk:
        mine.role = Role.ADMIN
        mine.save(update_fields=["role"])
    audit("team.ownership_transferred", team=team, actor=actor, target=to.user.email, ip=ip)


@transaction.atomic
def update_team_settings(*, actor: User, team: Team, name: str, store_completions: bool, ip: str | None = None) -> Team:
    """Rename the team and set whether full completions are kept; audited with what changed."""
    require(actor, team, Action.TEAM_SETTINGS)
    name = name.strip()
    if not name:
        raise AccountsError("invalid_name", "Give the team a name.")
    changes: dict[str, list] = {}
    if name != team.name:
        changes["name"] = [team.name, name]
    if store_completions != team.store_completions:
        changes["store_completions"] = [team.store_completions, store_completions]
    if changes:
        team.name, team.store_completions = name, store_completions
        team.save(update_fields=["name", "store_completions"])
        audit("team.settings_changed", team=team, actor=actor, target=team.slug, ip=ip, changes=changes)
    return team


@transaction.atomic
def delete_team(*, actor: User, team: Team, ip: str | None = None) -> None:
    require(actor, team, Action.TEAM_DELETE)
    audit("team.deleted", team=None, actor=actor, target=team.slug, ip=ip, team_public_id=team.public_id)
    try:
        team.delete()
    except ProtectedError:  # the ledger is append-only (PROTECT): money history outlives no team silently
        raise AccountsError(
            "team_has_ledger", "This team has billing history, which must be kept; contact support to close it."
        ) from None


# --- invitations ------------------------------------------------------------------------


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # shown once, in the email link

    @property
    def accept_url(self) -> str:
        return f"{settings.PUBLIC_BASE_URL}/invitations/{self.token}/"


def invite_member(*, actor: User, team: Team, email: str, role: str, ip: str | None = None) -> IssuedInvitation:
    actor_role = require(actor, team, Action.MEMBERS_MANAGE)
    email = User.objects.normalize_email(email).lower()
    if role not in Role.values:
        raise AccountsError("invalid_role", f"Unknown role '{role}'.")
    if not can_assign(actor_role, role):
        raise PermissionDenied("Only an owner can invite another owner.")
    if Membership.objects.filter(team=team, user__email__iexact=email).exists():
        raise AccountsError("already_member", f"{email} is already a member of this team.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        # A fresh invitation replaces any pending one for the same address (its link then says so).
        Invitation.objects.filter(
            team=team, email__iexact=email, accepted_at=None, revoked_at=None, replaced_at=None
        ).update(replaced_at=timezone.now())
        invitation = Invitation.objects.create(
            team=team, email=email, role=role, token_hash=_hash_token(token), invited_by=actor
        )
        audit("invitation.created", team=team, actor=actor, target=email, ip=ip, role=role)
    issued = IssuedInvitation(invitation, token)
    transaction.on_commit(lambda: _send_invitation(issued, actor))
    return issued


def resend_invitation(*, actor: User, invitation: Invitation, ip: str | None = None) -> IssuedInvitation:
    """Send a fresh link with a new 7-day expiry; the old link then says a newer invitation replaced it."""
    require(actor, invitation.team, Action.MEMBERS_MANAGE)
    return invite_member(actor=actor, team=invitation.team, email=invitation.email, role=invitation.role, ip=ip)


def _send_invitation(issued: IssuedInvitation, actor: User) -> None:
    inv = issued.invitation
    emails.send(
        "invitation",
        [inv.email],
        team=inv.team,
        inviter=actor.email,
        role=inv.get_role_display(),
        accept_url=issued.accept_url,
    )


def revoke_invitation(*, actor: User, invitation: Invitation, ip: str | None = None) -> None:
    require(actor, invitation.team, Action.MEMBERS_MANAGE)
    if invitation.status != "pending":
        raise AccountsError("invitation_not_pending", "Only a pending invitation can be revoked.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit("invitation.revoked", team=invitation.team, actor=actor, target=invitation.email, ip=ip)


def invitation_problem(invitation: Invitation | None) -> str:
    """Why a link cannot be used, in words for the person who opened it."""
    if invitation is None:
        return "This invitation link is not valid."
    if invitation.status == "replaced":
        return (
            "A newer invitation to this address was sent after this one. "
            "Use the link in the most recent invitation email."
        )
    return f"This invitation has been {invitation.status}."


def find_invitation(token: str) -> Invitation | None:
    return Invitation.objects.select_related("team").filter(token_hash=_hash_token(token)).first()


def accept_invitation(*, token: str, user: User, ip: str | None = None) -> Membership:
    """Single use: the row is locked and marked accepted in the same transaction."""
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update().select_related("team").filter(token_hash=_hash_token(token)).first()
        )
        if invitation is None:
            raise AccountsError("invitation_invalid", "This invitation link is not valid.")
        status = invitation.status
        if status != "pending":
            raise AccountsError(f"invitation_{status}", invitation_problem(invitation))
        if invitation.email.lower() != user.email.lower():
            raise AccountsError("invitation_wrong_user", "This invitation was sent to a different email address.")
        membership, created = Membership.objects.get_or_create(
            team=invitation.team, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit(
            "invitation.accepted",
            team=invitation.team,
            actor=user,
            target=user.email,
            ip=ip,
            role=membership.role,
            new_member=created,
        )
        if created:
            signals.member_joined.send(sender=Membership, membership=membership, invited_by=invitation.invited_by)
        return membership


def sign_up_with_invitation(*, token: str, password: str, name: str = "", ip: str | None = None) -> Membership:
    """A new person accepts: their account is created for the invited address."""
    invitation = find_invitation(token)
    if invitation is None or invitation.status != "pending":
        raise AccountsError("invitation_invalid", invitation_problem(invitation))
    with transaction.atomic():
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise AccountsError("account_exists", "An account with this email exists: log in to accept.")
        user = User.objects.create_user(email=invitation.email, password=password, name=name)
        return accept_invitation(token=token, user=user, ip=ip)
