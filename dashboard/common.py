"""What every team page shares: the team door, role checks and rendering with the sidebar context."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.access import TeamAccess, team_for_user
from accounts.models import Membership, Role
from accounts.permissions import Action


def is_only_owner(access: TeamAccess) -> bool:
    """The team's last owner cannot leave it (accounts.services refuses), so pages do not offer it."""
    return access.role == Role.OWNER and Membership.objects.filter(team=access.team, role=Role.OWNER).count() == 1


def forbidden(request, access: TeamAccess, message: str = "Your role in this team does not allow that."):
    return page(request, "dashboard/forbidden.html", access, "", {"message": message}, status=403)


def abilities(access: TeamAccess) -> dict[str, bool]:
    """The role's abilities, so templates show only the actions the server would allow."""
    return {
        "billing_view": access.can(Action.BILLING_VIEW),
        "billing_manage": access.can(Action.BILLING_MANAGE),
        "keys_view": access.can(Action.KEYS_VIEW),
        "keys_create": access.can(Action.KEYS_MANAGE_OWN),
        "members_manage": access.can(Action.MEMBERS_MANAGE),
        "webhooks_manage": access.can(Action.WEBHOOKS_MANAGE),
        "playground": access.can(Action.PLAYGROUND_USE),
    }


def team_page(action: Action | None = None, *, methods: tuple[str, ...] = ("GET",)):
    """Log-in required; the team comes through accounts.access (404 for missing and not-yours);
    a role without `action` gets a 403 page. The view receives (request, access, **kwargs)."""

    def decorator(view):
        @login_required
        @require_http_methods(list(methods))
        @wraps(view)
        def wrapper(request, team_id: str, **kwargs):
            access = team_for_user(request.user, team_id)
            if action is not None and not access.can(action):
                return forbidden(request, access)
            request.team_access = access
            return view(request, access, **kwargs)

        return wrapper

    return decorator


def page(request, template: str, access: TeamAccess, section: str, context: dict | None = None, *, status: int = 200):
    ctx = {"access": access, "team": access.team, "section": section, "live": True, "can": abilities(access)}
    ctx.update(context or {})
    return render(request, template, ctx, status=status)
