"""django-allauth glue: a sign-up creates the person's own team (with its wallet and any sign-up credit) in the
same transaction."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction

from accounts.services import TeamOrigin, create_team
from config import emails
from config.net import client_ip_from_request


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
                    origin=TeamOrigin.SIGNUP,  # the one origin that gets SIGNUP_CREDIT_USD
                )
        return user

    def send_mail(self, template_prefix, email, context):
        # Branded with SITE_NAME instead of the host the request came in on (allauth's templates read
        # current_site.name for the greeting and the sign-off; the subject prefix is the setting's).
        super().send_mail(template_prefix, email, {**context, "current_site": emails.site_brand()})

    def format_email_subject(self, subject: str) -> str:
        return emails.subject(subject)

    def get_login_redirect_url(self, request):
        return "/"

    def get_client_ip(self, request) -> str:
        """The address allauth rate-limits by: the client behind TRUSTED_PROXIES, as for API-key allow-lists."""
        return client_ip_from_request(request) or super().get_client_ip(request)
