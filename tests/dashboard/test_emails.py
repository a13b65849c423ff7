"""Every email is branded with SITE_NAME (default "Tollgate"), never the host a request came in on, and every
subject reads "[SITE_NAME] …"."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client

from accounts.services import invite_member
from billing import topups
from billing.models import TopUp
from billing.money import NUSD_PER_CENT


def sign_up(email: str = "nia@person.test") -> None:
    response = Client().post("/signup/", {"email": email, "password1": "a-long-passphrase-1", "name": "Nia"})
    assert response.status_code == 302


@pytest.mark.parametrize("site_name", ["Tollgate", "Acme AI"])
def test_account_emails_carry_the_site_name_not_the_host(db, mailoutbox, settings, site_name):
    settings.SITE_NAME = site_name
    sign_up()
    (mail,) = mailoutbox
    assert mail.subject.startswith(f"[{site_name}] ")
    assert f"Hello from {site_name}!" in mail.body and f"Thank you for using {site_name}!" in mail.body
    assert "testserver" not in mail.subject and "Hello from testserver" not in mail.body


def test_invitations_and_billing_mail_share_the_brand_and_the_subject_form(
    owner, team, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.SITE_NAME = "Acme AI"
    topup = TopUp.objects.create(team=team, amount_nusd=2500 * NUSD_PER_CENT, stripe_session_id="cs_mail")
    with django_capture_on_commit_callbacks(execute=True):
        invite_member(actor=owner, team=team, email="new@acme.test", role="viewer")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        topups._credit(topup, amount_nusd=topup.amount_nusd, payment_intent_id="pi_mail", kind="topup", reason="t")
    subjects = [m.subject for m in mailoutbox]
    assert subjects == ["[Acme AI] You're invited to join Acme", "[Acme AI] $25.00 credit added to Acme"]
    invitation, credited = mailoutbox
    assert "on Acme AI as Viewer" in invitation.body and invitation.body.rstrip().endswith("— Acme AI")
    assert credited.body.rstrip().endswith("— Acme AI") and "Tollgate" not in credited.body
    assert f"/t/{team.public_id}/billing/" in credited.body  # the link goes to the team's Billing page


def test_a_server_error_shows_a_plain_page_with_the_request_id(owner, team, monkeypatch):
    """Never a traceback or an internal address: a reference the customer can quote; the log has the rest."""
    from dashboard import reports

    def broken(team):
        raise RuntimeError("could not connect to db.internal:5432")

    monkeypatch.setattr(reports, "ensure_wallet", broken)
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    response = client.get(f"/t/{team.public_id}/billing/")
    assert response.status_code == 500
    html = response.content.decode()
    assert "Something went wrong" in html and response["X-Request-Id"] in html
    assert "db.internal" not in html and "Traceback" not in html
