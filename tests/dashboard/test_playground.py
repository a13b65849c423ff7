"""The Playground's server side: the page, its short-lived session-bound credential, /v1 with that credential (paid,
rate limited and receipted like a key), and the end of the credential with the session. The browser itself is
in tests/browser/test_playground.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts import auth, playground
from accounts.keys import mint_key
from accounts.models import AuditLog, Membership, PlaygroundToken
from billing import money
from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from billing.services import grant_credit
from gateway import catalog, providers
from tests.asgi import request
from tests.dashboard.conftest import client_for, expect

pytestmark = pytest.mark.django_db

USD = money.NUSD_PER_USD
CHAT = {"model": "demo-chat", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 16}


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.DB_THREAD_SENSITIVE = True
    settings.GATEWAY_RETRY_BACKOFF_SECONDS = 0
    for reset in (auth.clear_cache, playground.clear_cache, catalog.invalidate, providers.clear_cache):
        reset()
    yield
    for reset in (auth.clear_cache, playground.clear_cache, catalog.invalidate, providers.clear_cache):
        reset()


@pytest.fixture
def acme(team):
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=10 * USD, reason="test credit")
    return team


def url(team, tail: str = "") -> str:
    return f"/t/{team.public_id}/playground/{tail}"


def mint(client: Client, team, mode: str = "live") -> str:
    response = client.post(url(team, "token/"), {"mode": mode})
    assert response.status_code == 200, response.content
    return response.json()["token"]


def v1(token: str, client: Client | None, body=None, *, path="/v1/chat/completions", **kwargs):
    headers = {"Authorization": f"Bearer {token}"}
    if client is not None:
        headers["Cookie"] = f"sessionid={client.cookies['sessionid'].value}"
    if body is None:
        return async_to_sync(request)("GET", path, headers=headers)
    import orjson

    return async_to_sync(request)("POST", path, body=orjson.dumps(body), headers=headers, **kwargs)


# --- the page and who may use it ------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "admin_user", "developer", "viewer", "billing_user", "outsider"])
def test_the_page_and_its_credential_are_for_members_who_may_spend(people, team, acme, who):
    client = client_for(people[who])
    allowed = {"owner", "admin_user", "developer"}
    assert client.get(url(team)).status_code == expect(who, allowed)
    assert client.post(url(team, "token/"), {"mode": "live"}).status_code == expect(who, allowed)
    if who not in allowed:
        assert not PlaygroundToken.objects.exists()


def test_the_page_holds_no_key_and_loads_only_its_own_script(owner, acme):
    mint_key(team=acme, name="ci", created_by=owner)
    response = client_for(owner).get(url(acme))
    html = response.content.decode()
    assert response.status_code == 200
    for secret in ("tg_live_", "tg_test_", "tg_play_"):
        assert secret not in html
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert '<script src="/static/js/playground.js"' in html and "<script>" not in html
    assert 'id="pg-model"' in html and "demo-chat" in html and "demo-embed" not in html  # chat models only
    assert "Playground" in client_for(owner).get(f"/t/{acme.public_id}/").content.decode()  # in the navigation


def test_a_credential_is_short_lived_shown_once_and_stored_as_hashes_only(owner, acme):
    client = client_for(owner)
    response = client.post(url(acme, "token/"), {"mode": "live"})
    body = response.json()
    assert response["Cache-Control"].startswith("no-store")
    assert body["token"].startswith("tg_play_") and body["mode"] == "live"
    assert 0 < body["expires_in"] <= 15 * 60
    row = PlaygroundToken.objects.get()
    assert body["token"] not in (row.token_hash, row.session_hash)
    assert client.cookies["sessionid"].value not in row.session_hash
    assert AuditLog.objects.filter(action="playground.token_issued", actor=owner, team=acme).count() == 1
    assert client.post(url(acme, "token/"), {"mode": "gold"}).status_code == 400
    assert client.get(url(acme, "token/")).status_code == 405


def test_a_session_keeps_a_bounded_number_of_credentials(owner, acme):
    client = client_for(owner)
    for _ in range(12):
        mint(client, acme)
    assert PlaygroundToken.objects.count() == playground.MAX_TOKENS_PER_SESSION


# --- /v1 with the credential ------------------------------------------------------------------------------


def test_a_live_credential_is_billed_rate_limited_and_receipted_like_a_key(owner, acme):
    client = client_for(owner)
    token = mint(client, acme, "live")
    response = v1(token, client, CHAT)
    assert response.status_code == 200, response.content
    assert response["x-ratelimit-limit-requests"] == "60"  # the team's plan, as for its keys
    usage = response.json()["usage"]
    receipt = Receipt.objects.get(public_id=usage["receipt_id"])
    assert (receipt.key_label, receipt.api_key_id, receipt.is_test) == (
        "Playground (olivia.owner@acme.test)",
        None,
        False,
    )
    assert receipt.total_cost_nusd > 0
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * USD - receipt.total_cost_nusd
    assert find_discrepancies() == []

    key = mint_key(team=acme, name="ci", created_by=owner).plaintext
    shared = v1(key, None, CHAT)  # the team's one bucket: the key sees the Playground's request
    assert shared["x-ratelimit-remaining-requests"] == "58"


def test_a_test_credential_writes_a_test_receipt_and_moves_no_money(owner, acme):
    client = client_for(owner)
    response = v1(mint(client, acme, "test"), client, CHAT)
    assert response.status_code == 200
    receipt = Receipt.objects.get()
    assert receipt.is_test and receipt.key_label.startswith("Playground (")
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * USD


def test_a_stream_the_browser_leaves_is_a_partial_receipt(owner, acme, settings):
    settings.SIMULATOR_TOKENS_PER_SECOND = 200
    client = client_for(owner)
    body = {**CHAT, "stream": True, "max_tokens": 400, "messages": [{"role": "user", "content": "A long story"}]}
    response = v1(mint(client, acme), client, body, disconnect_after=3)
    assert response.status_code == 200
    receipt = Receipt.objects.get()
    assert receipt.status == "partial" and 0 < receipt.completion_tokens < 400
    assert receipt.key_label.startswith("Playground (")
    assert Wallet.objects.get(team=acme).held_nusd == 0


def test_a_team_without_credit_gets_the_402_a_key_would(owner, team):
    call_command("seed_catalog", quiet=True)
    client = client_for(owner)
    response = v1(mint(client, team), client, CHAT)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_balance"


# --- bound to the session -------------------------------------------------------------------------------------


def test_without_its_session_cookie_the_credential_is_refused(owner, acme):
    token = mint(client_for(owner), acme)
    response = v1(token, None, CHAT)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "browser session" in response.json()["error"]["message"]
    assert not Receipt.objects.exists()


def test_another_session_of_the_same_person_cannot_use_it(owner, acme):
    token = mint(client_for(owner), acme)
    elsewhere = client_for(owner)  # a second log-in: another session
    assert v1(token, elsewhere, CHAT).status_code == 401


def test_logging_out_ends_it_at_once(owner, acme):
    client = client_for(owner)
    token = mint(client, acme)
    assert v1(token, client, CHAT).status_code == 200
    cookie = client.cookies["sessionid"].value
    client.post("/logout/")
    assert not PlaygroundToken.objects.exists()
    headers = {"Authorization": f"Bearer {token}", "Cookie": f"sessionid={cookie}"}
    import orjson

    after = async_to_sync(request)("POST", "/v1/chat/completions", body=orjson.dumps(CHAT), headers=headers)
    assert after.status_code == 401


def test_it_expires_after_fifteen_minutes(owner, acme):
    client = client_for(owner)
    token = mint(client, acme)
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        playground.clear_cache()
        response = v1(token, client, CHAT)
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_it_never_outlives_the_session(owner, acme):
    client = client_for(owner)
    session = client.session
    session.set_expiry(60)
    session.save()
    mint(client, acme)
    row = PlaygroundToken.objects.get()
    assert row.expires_at <= timezone.now() + timedelta(seconds=61)


def test_a_password_change_elsewhere_ends_it(owner, acme):
    client = client_for(owner)
    token = mint(client, acme)
    owner.set_password("a-brand-new-passphrase")
    owner.save()
    playground.clear_cache()
    assert v1(token, client, CHAT).status_code == 401


def test_a_member_who_is_removed_or_demoted_loses_it(owner, developer, acme):
    client = client_for(developer)
    token = mint(client, acme)
    assert v1(token, client, CHAT).status_code == 200
    Membership.objects.filter(user=developer).update(role="viewer")
    playground.clear_cache()
    assert v1(token, client, CHAT).status_code == 401
    Membership.objects.filter(user=developer).delete()
    playground.clear_cache()
    assert v1(token, client, CHAT).status_code == 401


def test_it_works_for_inference_only(owner, acme):
    client = client_for(owner)
    token = mint(client, acme)
    for path in ("/v1/models", "/v1/balance", "/v1/key"):
        response = v1(token, client, path=path)
        assert response.status_code == 401, path
        assert "Playground" in response.json()["error"]["message"]


# --- the receipt the page shows -------------------------------------------------------------------------------


def test_the_page_reads_back_its_own_receipt_with_the_cost_written_by_billing(owner, admin_user, developer, acme):
    client = client_for(owner)
    response = v1(mint(client, acme), client, CHAT)
    rid = response["x-request-id"]
    receipt = Receipt.objects.get(request_id=rid)
    body = client.get(url(acme, f"requests/{rid}/receipt/")).json()
    assert body["id"] == receipt.public_id and body["status"] == "succeeded"
    assert body["cost"] == money.usd(receipt.total_cost_nusd)
    assert (body["prompt_tokens"], body["completion_tokens"]) == (
        response.json()["usage"]["prompt_tokens"],
        response.json()["usage"]["completion_tokens"],
    )
    assert body["url"] == f"/t/{acme.public_id}/receipts/{receipt.public_id}/"
    # another member's Playground receipt is not theirs to read here
    assert client_for(admin_user).get(url(acme, f"requests/{rid}/receipt/")).status_code == 404
    dev = client_for(developer)
    dev_response = v1(mint(dev, acme), dev, CHAT)
    dev_body = dev.get(url(acme, f"requests/{dev_response['x-request-id']}/receipt/")).json()
    assert dev_body["url"] == ""  # a developer cannot open receipt pages: the id only


def test_an_outsider_can_read_nothing(owner, outsider, acme):
    client = client_for(owner)
    rid = v1(mint(client, acme), client, CHAT)["x-request-id"]
    stranger = client_for(outsider)
    assert stranger.get(url(acme, f"requests/{rid}/receipt/")).status_code == 404
    assert stranger.post(url(acme, "token/"), {"mode": "live"}).status_code == 404


def test_usage_by_key_names_the_playground(owner, acme):
    client = client_for(owner)
    v1(mint(client, acme), client, CHAT)
    page = client.get(f"/t/{acme.public_id}/usage/").content.decode()
    assert "Playground (olivia.owner@acme.test)" in page and "(deleted key)" not in page
