"""Sidebar data for every page: the current team (set by the view) and the user's other teams.

A view outside dashboard/ (billing's top-up pages) gets the full sidebar by setting `request.team_access`
after looking the team up through accounts.access; dashboard views pass the same keys themselves."""

from __future__ import annotations

from django.conf import settings

from accounts.access import teams_for_user


def nav(request) -> dict:
    ctx = {"api_base_url": f"{settings.PUBLIC_BASE_URL}/v1", "site_name": settings.SITE_NAME}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        ctx["my_teams"] = lambda: teams_for_user(user)  # lazy: pages without the sidebar never query
        access = getattr(request, "team_access", None)
        live = access is not None
        if access is None and request.session.get("last_team"):
            access = _last_team(request)  # account pages (password, two-factor) keep the team's navigation
        if access is not None:
            from dashboard.common import abilities

            ctx.update({"access": access, "team": access.team, "live": live, "can": abilities(access)})
    return ctx


def _last_team(request):
    from django.http import Http404

    from accounts.access import team_for_user

    try:
        return team_for_user(request.user, request.session["last_team"])
    except Http404:  # left or deleted since
        return None
