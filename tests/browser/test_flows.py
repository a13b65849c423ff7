"""The dashboard in a real browser (Debian's chromium via Playwright) against a live uvicorn:
sign up → key → OpenAI SDK → receipt live on Usage and Billing → rotate (grace) → revoke; a viewer."""

from __future__ import annotations

import re

import openai
import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.models import Membership, Team
from billing.services import grant_credit
from tests.browser.conftest import PASSWORD, log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]


def sdk(live, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0, timeout=15)


def chat(live, key: str):
    return sdk(live, key).chat.completions.create(
        model="demo-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=16
    )


def test_sign_up_create_a_key_use_it_and_watch_the_receipt_arrive_live_then_rotate_and_revoke(page, live):
    call_command("seed_catalog", verbosity=0)
    page.goto("/signup/")
    shot(page, "signup")
    page.get_by_label("Email").fill("ada@lovelace.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Your name").fill("Ada")
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url(re.compile(r"/t/team_[^/]+/$"))
    team = Team.objects.get(memberships__user__email="ada@lovelace.test")
    assert Membership.objects.get(team=team).role == "owner"
    grant_credit(team, amount_nusd=5_000_000_000, reason="welcome credit")  # an operator's grant
    base = f"/t/{team.public_id}"

    # create a key: the secret is shown once, in a dialog with a copy button
    page.goto(f"{base}/keys/")
    shot(page, "keys-empty")
    page.get_by_role("button", name="Create your first key").click()
    dialog = page.locator("#create-key")
    dialog.get_by_label("Name").fill("laptop")
    dialog.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_test_id("new-secret")
    expect(secret_box).to_be_visible()
    shot(page, "key-created", full_page=False)
    secret = secret_box.inner_text().strip()
    assert secret.startswith("tg_live_")
    page.get_by_role("button", name="I have copied it").click()
    page.reload()  # a GET: the secret is gone for good, and no second key was created
    assert secret not in page.content()
    assert team.api_keys.count() == 1

    # Usage and Billing open in two tabs, connected live
    usage = page
    usage.goto(f"{base}/usage/")
    billing = page.context.new_page()
    billing.goto(f"{base}/billing/")
    for tab in (usage, billing):
        expect(tab.locator("body[data-live-ready]")).to_have_count(1)
    before = billing.get_by_test_id("balance").inner_text()

    reply = chat(live, secret)
    receipt_id = reply.usage.model_extra["receipt_id"]
    expect(usage.locator(f'[data-receipt="{receipt_id}"]')).to_be_visible()
    expect(billing.locator(f'[data-receipt="{receipt_id}"]')).to_be_visible()
    expect(billing.get_by_test_id("balance")).not_to_have_text(before)
    expect(usage.get_by_test_id("usage-requests")).to_have_text("1")
    from billing.models import Receipt
    from dashboard.templatetags.dashboard_tags import usd

    receipt = Receipt.objects.get(public_id=receipt_id)
    expect(usage.get_by_test_id("usage-spend")).to_have_text(usd(receipt.total_cost_nusd))
    expect(billing.get_by_test_id("balance")).to_have_text(usd(5_000_000_000 - receipt.total_cost_nusd))
    shot(usage, "usage")
    shot(billing, "billing")
    billing.goto(f"{base}/receipts/{receipt_id}/")
    expect(billing.get_by_test_id("receipt-total")).to_contain_text("$0.")
    shot(billing, "receipt")
    billing.close()

    # rotate with a one-hour grace: both secrets work
    page.goto(f"{base}/keys/")
    page.get_by_role("button", name="Rotate").click()
    page.get_by_label("Keep the old secret working for").select_option(label="1 hour")
    page.get_by_role("button", name="Rotate key").click()
    new_secret = page.get_by_test_id("new-secret").inner_text().strip()
    assert new_secret != secret
    page.get_by_role("button", name="I have copied it").click()
    expect(page.get_by_text("old secret ends in 1 h")).to_be_visible()
    shot(page, "keys-rotating")
    assert chat(live, secret).choices[0].message.content
    assert chat(live, new_secret).choices[0].message.content

    # revoke: refused at once, old and new
    page.get_by_role("button", name="Revoke").click()
    page.locator("dialog[open]").get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text("revoked", exact=True)).to_be_visible()
    for key in (secret, new_secret):
        with pytest.raises(openai.AuthenticationError):
            chat(live, key)


def test_a_viewer_sees_no_key_or_billing_actions_and_is_refused_when_posting_them(
    page, live, team, owner, viewer, settings
):
    from accounts.keys import mint_key

    settings.STRIPE_SECRET_KEY = "sk_test_unused"
    key = mint_key(team=team, name="prod", created_by=owner).key
    log_in(page, viewer.email)
    base = f"/t/{team.public_id}"
    page.goto(f"{base}/keys/")
    expect(page.get_by_text("prod", exact=True)).to_be_visible()
    for label in ("Create key", "Rotate", "Revoke", "Limits"):
        expect(page.get_by_role("button", name=label)).to_have_count(0)
    page.goto(f"{base}/billing/")
    expect(page.get_by_role("button", name="Continue to payment")).to_have_count(0)
    expect(page.get_by_role("button", name="Save auto-recharge")).to_have_count(0)
    shot(page, "billing-viewer")

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token, "Referer": live.url + base}
    for path, form in [
        (f"{base}/keys/new/", {"name": "sneaky", "mode": "live", "scopes": "inference"}),
        (f"{base}/keys/{key.public_id}/rotate/", {"grace_seconds": "0"}),
        (f"{base}/keys/{key.public_id}/revoke/", {}),
        (f"/billing/teams/{team.public_id}/topup/", {"amount_usd": "20"}),
        (f"{base}/billing/auto-recharge/", {"enabled": "on", "threshold_usd": "5", "amount_usd": "20"}),
        (f"{base}/billing/redeem/", {"code": "TG-0000-0000-0000"}),
    ]:
        assert page.request.post(path, form=form, headers=headers).status == 403, path
    key.refresh_from_db()
    assert key.revoked_at is None and key.rotated_at is None
    assert team.api_keys.count() == 1


def test_every_main_page_works_at_phone_width(browser, live, owner, team):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=live.url)
    page = context.new_page()
    log_in(page, owner.email)
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("navigation", name="Team").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys", exact=True)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways page scroll
    shot(page, "phone-keys")
    context.close()
