"""Deployment checks of our own, run by `manage.py check --deploy` (and logged at server start-up)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register

CONSOLE_BACKENDS = (".console.EmailBackend", ".locmem.EmailBackend", ".dummy.EmailBackend")


def email_backend_problem() -> str | None:
    """With DATABASE_URL (production) an e-mail backend that does not send puts password-reset and invitation
    links into the server log."""
    if settings.DATABASE_URL and settings.EMAIL_BACKEND.endswith(CONSOLE_BACKENDS):
        return (
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND}: password-reset and invitation links would go to the "
            "server log. Set EMAIL_BACKEND (e.g. django.core.mail.backends.smtp.EmailBackend) and EMAIL_HOST."
        )
    return None


@register(Tags.security, deploy=True)
def check_email_backend(app_configs, **kwargs) -> list[Error]:
    problem = email_backend_problem()
    return [Error(problem, id="tollgate.E001")] if problem else []
