"""The one door to tenant data for people: a team the user belongs to, or 404.

"Missing" and "not yours" look the same, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser
from django.http import Http404, HttpRequest

from accounts.models import Membership, Project, Team, User
from accounts.permissions import Action, can


@dataclass(frozen=True)
class TeamAccess:
    team: Team
    role: str

    def can(self, action: Action | str) -> bool:
        return can(self.role, action)


class SignedInRequest(HttpRequest):
    """What a @login_required view receives, as the type checker should see it (at run time an HttpRequest):
    the signed-in user, the id config.middleware gives every request, and the team a team page is about (the
    dashboard's sidebar reads it)."""

    user: User
    request_id: str
    team_access: TeamAccess


def signed_in(user: User | AnonymousUser | object) -> User:
    """The person behind a request that passed authentication; 404 if there is none (as for a stranger's data)."""
    if not isinstance(user, User):
        raise Http404("Not found.")
    return user


def team_for_user(user: User | AnonymousUser, team_public_id: str) -> TeamAccess:
    if not user.is_authenticated:
        raise Http404("No such team.")
    membership = Membership.objects.select_related("team").filter(user=user, team__public_id=team_public_id).first()
    if membership is None:
        raise Http404("No such team.")
    return TeamAccess(membership.team, membership.role)


def teams_for_user(user: User) -> list[TeamAccess]:
    memberships = Membership.objects.select_related("team").filter(user=user).order_by("team__name")
    return [TeamAccess(m.team, m.role) for m in memberships]


def project_in_team(access: TeamAccess, project_public_id: str) -> Project:
    """A project of a team the user reached through `team_for_user`, or 404 (also for another team's)."""
    project = Project.objects.filter(team=access.team, public_id=project_public_id).first()
    if project is None:
        raise Http404("No such project.")
    return project
