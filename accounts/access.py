"""The one door to tenant data for people: a team the user belongs to, or 404.

"Missing" and "not yours" look the same, so ids cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404

from accounts.models import Membership, Team, User
from accounts.permissions import Action, can


@dataclass(frozen=True)
class TeamAccess:
    team: Team
    role: str

    def can(self, action: Action | str) -> bool:
        return can(self.role, action)


def team_for_user(user: User, team_public_id: str) -> TeamAccess:
    if not user.is_authenticated:
        raise Http404("No such team.")
    membership = Membership.objects.select_related("team").filter(user=user, team__public_id=team_public_id).first()
    if membership is None:
        raise Http404("No such team.")
    return TeamAccess(membership.team, membership.role)


def teams_for_user(user: User) -> list[TeamAccess]:
    memberships = Membership.objects.select_related("team").filter(user=user).order_by("team__name")
    return [TeamAccess(m.team, m.role) for m in memberships]
