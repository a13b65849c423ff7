"""django-allauth glue: a sign-up creates the person's own team and wallet in the same transaction."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction

from accounts.auth import client_ip_from_request
from accounts.services import create_team


def personal_team_name(user, requested: str = "") -> str:
    requested = (requested or "").strip()
    if requested:
        return requested[:120]
    base = (user.name or user.email.split("@", 1)[0]).strip() or "My"
    return f"{base}'s team"[:120]


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=commit)
            if commit:
                data = getattr(form, "cleaned_data", {}) or {}
                if data.get("name"):
                    user.name = data["name"].strip()[:150]
                    user.save(update_fields=["name"])
                create_team(
                    name=personal_team_name(user, data.get("team_name", "")),
                    owner=user,
                    ip=client_ip_from_request(request) if request else None,
                )
        return user

    def get_login_redirect_url(self, request):
        return "/"

    def get_client_ip(self, request) -> str:
        """The address allauth rate-limits by: the client behind TRUSTED_PROXIES, as for API-key allow-lists."""
        return client_ip_from_request(request) or super().get_client_ip(request)
