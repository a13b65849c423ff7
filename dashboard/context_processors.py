"""Sidebar data for every page: the current team (set by the view) and the user's other teams."""

from __future__ import annotations

from django.conf import settings

from accounts.access import teams_for_user


def nav(request) -> dict:
    ctx = {"api_base_url": f"{settings.PUBLIC_BASE_URL}/v1"}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        ctx["my_teams"] = lambda: teams_for_user(user)  # lazy: pages without the sidebar never query
    return ctx
