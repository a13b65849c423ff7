"""Every email the product sends: branded with SITE_NAME, subjects "[SITE_NAME] …" like allauth's account mail.

Templates come in pairs, `emails/<name>_subject.txt` and `emails/<name>.txt`; both get `site_name` and
`site_url` in their context.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string


@dataclass(frozen=True)
class SiteBrand:
    """Stands in for django.contrib.sites' Site in allauth's templates (`current_site.name`, `.domain`),
    which would otherwise name the mail after whatever host the request came in on."""

    name: str
    domain: str


def site_brand() -> SiteBrand:
    return SiteBrand(name=settings.SITE_NAME, domain=urlsplit(settings.PUBLIC_BASE_URL).netloc or settings.SITE_NAME)


def subject(text: str) -> str:
    """ "[SITE_NAME] text" on one line, for our mail and allauth's alike (dashboard.auth.AccountAdapter)."""
    return f"[{settings.SITE_NAME}] {' '.join(str(text).split())}"


def send(template: str, recipients: list[str], **context) -> None:
    """Render and send; a mail server problem never breaks the action that triggered the mail."""
    if not recipients:
        return
    context = {"site_name": settings.SITE_NAME, "site_url": settings.PUBLIC_BASE_URL, **context}
    title = render_to_string(f"emails/{template}_subject.txt", context).strip()
    body = render_to_string(f"emails/{template}.txt", context)
    send_mail(subject(title), body, None, recipients, fail_silently=True)
