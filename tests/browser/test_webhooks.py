"""Settings → Webhooks in a real browser against the live server, with a real receiver on loopback: add an
endpoint (secret shown once), send a test event, redeliver it from the delivery log, rotate the secret (both
signatures during the grace), watch a real change (a new API key) arrive without polling, disable the endpoint."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from accounts.services import create_team
from tests.browser.conftest import PASSWORD, log_in, shot
from tests.conftest import make_user
from tests.webhooks.conftest import verifies
from tests.webhooks.receiver import running
from webhooks.models import Endpoint

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]


def v1_count(request) -> int:
    return request.header("Tollgate-Signature").count("v1=")


def test_an_owner_adds_tests_redelivers_and_rotates_a_webhook_from_the_dashboard(page, live, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on loopback, over http
    owner = make_user("hook.owner@acme.test", PASSWORD)
    team = create_team(name="Hooked", slug="hooked", owner=owner)
    with running() as receiver:
        log_in(page, owner.email)
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
        shot(page, "webhooks-empty")

        # add: the secret is shown once
        page.get_by_role("button", name="Add your first endpoint").click()
        dialog = page.locator("#create-endpoint")
        dialog.get_by_label("Endpoint URL").fill(receiver.url)
        dialog.get_by_label("Description").fill("order service")
        dialog.get_by_role("button", name="Add endpoint").click()
        secret_box = page.get_by_test_id("new-secret")
        expect(secret_box).to_be_visible()
        shot(page, "webhook-created", full_page=False)
        secret = secret_box.inner_text().strip()
        assert secret.startswith("whsec_")
        page.get_by_role("button", name="I have copied it").click()
        page.reload()
        assert secret not in page.content()
        endpoint = Endpoint.objects.get(team=team)

        # a test event, delivered and logged
        page.get_by_role("button", name="Send test event").click()
        expect(page.get_by_text("Test event delivered: HTTP 200")).to_be_visible()
        [ping] = receiver.requests
        assert json.loads(ping.body)["type"] == "ping" and verifies(ping, secret)
        row = page.locator("#delivery-log tbody tr").first
        expect(row.get_by_test_id("delivery-result")).to_contain_text("HTTP 200")
        expect(row).to_contain_text("ping")

        # redeliver it from the log: the same event, attempt 2
        row.get_by_role("button", name="Redeliver").click()
        expect(page.get_by_text("redelivered as attempt 2")).to_be_visible()
        assert len(receiver.requests) == 2
        assert receiver.requests[1].header("Tollgate-Event-Id") == ping.header("Tollgate-Event-Id")
        assert receiver.requests[1].header("Tollgate-Delivery-Attempt") == "2"
        newest = page.locator("#delivery-log tbody tr").first
        expect(newest).to_contain_text("#2")
        expect(newest).to_contain_text("manual")
        shot(page, "webhook-log")

        # rotate with a grace window: the new secret once; deliveries carry both signatures
        page.get_by_role("button", name="Rotate secret").click()
        page.locator("#rotate-secret").get_by_label("Keep signing with the old secret too for").select_option("3600")
        page.locator("#rotate-secret").get_by_role("button", name="Rotate secret").click()
        expect(page.get_by_test_id("new-secret")).to_be_visible()
        new_secret = page.get_by_test_id("new-secret").inner_text().strip()
        assert new_secret.startswith("whsec_") and new_secret != secret
        page.get_by_role("button", name="I have copied it").click()

        # a real change elsewhere in the dashboard arrives at once, signed with both secrets
        page.goto(f"/t/{team.public_id}/keys/")
        page.get_by_role("button", name="Create your first key").click()
        page.locator("#create-key").get_by_label("Name").fill("ci")
        page.locator("#create-key").get_by_role("button", name="Create key").click()
        expect(page.get_by_test_id("new-secret")).to_be_visible()
        created = receiver.requests[-1]
        assert json.loads(created.body)["type"] == "key.created"
        assert v1_count(created) == 2 and verifies(created, new_secret) and verifies(created, secret)

        # disable it from its settings form
        page.goto(f"/t/{team.public_id}/settings/webhooks/{endpoint.public_id}/")
        page.get_by_label("Enabled").uncheck()
        page.get_by_role("button", name="Save endpoint").click()
        expect(page.get_by_test_id("endpoint-status")).to_have_text("disabled")
        endpoint.refresh_from_db()
        assert endpoint.enabled is False
        page.get_by_role("link", name="← Webhooks").click()
        expect(page.locator(f'[data-endpoint="{endpoint.public_id}"]')).to_contain_text("disabled")
        shot(page, "webhooks-list")
