"""The Playground in Chromium against the live server: a member streams a chat through /v1 with a session-bound
credential (no API key in the page), sees tokens, cost, latency and a receipt link; Stop mid-stream leaves a
`partial` receipt; test mode is free; a test scenario shows a failing world; logging out ends it."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.keys import mint_key
from billing import money
from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from billing.services import grant_credit
from gateway import providers
from tests.browser.conftest import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.timeout(120), pytest.mark.django_db(transaction=True)]
USD = money.NUSD_PER_USD


@pytest.fixture
def acme(live, team, owner):
    call_command("seed_catalog", verbosity=0)
    grant_credit(team, amount_nusd=5 * USD, reason="operator credit")
    mint_key(team=team, name="prod", created_by=owner)  # a real key exists: it must never reach the page
    mint_key(team=team, name="sandbox", mode="test", created_by=owner)
    providers.clear_cache()
    yield team
    providers.clear_cache()


def balance(team) -> int:
    return Wallet.objects.get(team=team).balance_nusd


def open_playground(page, team, email="olivia.owner@acme.test"):
    log_in(page, email)
    page.goto(f"/t/{team.public_id}/playground/")
    expect(page.get_by_role("heading", name="Playground", exact=True)).to_be_visible()


def send(page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def test_a_member_streams_a_chat_and_sees_tokens_cost_latency_and_the_receipt(page, acme):
    open_playground(page, acme)
    source = page.content()
    for secret in ("tg_live_", "tg_test_", "tg_play_"):
        assert secret not in source
    page.get_by_label("Model").select_option("demo-chat")
    page.get_by_label("System prompt").fill("You are terse.")
    page.get_by_label("Temperature").fill("0.3")
    page.get_by_label("Max tokens").fill("24")
    before = balance(acme)
    with page.expect_response(re.compile(r"/v1/chat/completions$")) as answered:
        send(page, "What is a toll road?")
    assert answered.value.request.headers["authorization"].startswith("Bearer tg_play_")
    assert answered.value.headers["content-type"].startswith("text/event-stream")
    expect(page.get_by_test_id("pg-receipt-status")).to_have_text("succeeded")
    reply = page.locator(".pg-assistant .pg-text").inner_text()
    assert reply.startswith('You said: "What is a toll road?"')
    shot(page, "playground-reply")

    receipt = Receipt.objects.get()
    assert (receipt.key_label, receipt.is_test, receipt.completion_tokens) == (
        "Playground (olivia.owner@acme.test)",
        False,
        24,
    )
    expect(page.get_by_test_id("pg-cost")).to_have_text(money.usd(receipt.total_cost_nusd))
    expect(page.get_by_test_id("pg-stats")).to_contain_text(f"{receipt.completion_tokens} out")
    expect(page.get_by_test_id("pg-stats")).to_contain_text(" ms")
    link = page.get_by_test_id("pg-receipt").get_by_role("link", name=receipt.public_id)
    expect(link).to_have_attribute("href", f"/t/{acme.public_id}/receipts/{receipt.public_id}/")
    assert balance(acme) == before - receipt.total_cost_nusd
    expect(page.get_by_test_id("pg-available")).to_have_text(money.usd(balance(acme)))  # the live update
    for secret in ("tg_live_", "tg_test_", "tg_play_"):
        assert secret not in page.content()  # the credential stays in the script's memory, out of the DOM

    # a follow-up carries the conversation, and the receipt page opens from the link
    send(page, "echo: thanks")
    expect(page.locator(".pg-assistant .pg-text").nth(1)).to_have_text("thanks")
    page.get_by_test_id("pg-receipt").get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^rcpt_"))
    assert find_discrepancies() == []


def test_stop_mid_stream_leaves_a_partial_receipt_paying_only_for_what_was_produced(page, acme, settings):
    settings.SIMULATOR_TOKENS_PER_SECOND = 20  # a slow model: there is time to press Stop
    providers.clear_cache()
    open_playground(page, acme)
    page.get_by_label("Max tokens").fill("400")
    before = balance(acme)
    send(page, "Tell me a very long story about toll roads")
    expect(page.locator(".pg-assistant .pg-text")).to_contain_text("You said")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_test_id("pg-status")).to_contain_text("Stopped")
    expect(page.get_by_test_id("pg-receipt-status")).to_have_text("partial")
    shot(page, "playground-stopped")
    receipt = Receipt.objects.get()
    assert receipt.status == "partial" and 0 < receipt.completion_tokens < 400
    expect(page.get_by_test_id("pg-cost")).to_have_text(money.usd(receipt.total_cost_nusd))
    wallet = Wallet.objects.get(team=acme)
    assert (wallet.balance_nusd, wallet.held_nusd) == (before - receipt.total_cost_nusd, 0)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert find_discrepancies() == []


def test_test_mode_writes_a_test_receipt_and_leaves_the_wallet_alone(page, acme):
    open_playground(page, acme)
    page.get_by_label("Test mode").check()
    expect(page.locator("#pg-mode-badge")).to_contain_text("test")
    before = balance(acme)
    send(page, "Hello in test mode")
    expect(page.get_by_test_id("pg-receipt-status")).to_have_text("succeeded")
    expect(page.get_by_test_id("pg-cost")).to_contain_text("(test: not charged)")
    receipt = Receipt.objects.get()
    assert receipt.is_test and receipt.key_label == "Playground (olivia.owner@acme.test)"
    assert balance(acme) == before
    assert not Wallet.objects.get(team=acme).held_nusd


def test_a_test_scenario_shows_a_failing_world(page, acme):
    open_playground(page, acme)
    page.get_by_label("Test mode").check()
    page.get_by_label("Test scenario").select_option("stream_cut")
    send(page, "Break, please")
    expect(page.locator(".pg-error")).to_contain_text("upstream_error")
    expect(page.get_by_test_id("pg-receipt-status")).to_have_text("partial")
    page.get_by_label("Test scenario").select_option("rate_limited")
    send(page, "And now?")
    expect(page.locator(".pg-error").nth(1)).to_contain_text("429 rate_limit_exceeded")
    expect(page.get_by_test_id("pg-status")).to_contain_text("Nothing was charged")
    assert Receipt.objects.count() == 1
    page.get_by_label("Test mode").uncheck()
    expect(page.get_by_label("Test scenario")).to_be_hidden()  # live requests never send it


def test_after_logging_out_elsewhere_the_page_can_no_longer_spend(page, acme):
    open_playground(page, acme)
    send(page, "First")
    expect(page.get_by_test_id("pg-receipt-status")).to_have_text("succeeded")
    other = page.context.new_page()
    other.goto(f"/t/{acme.public_id}/")
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url(re.compile(r"/login/"))
    send(page, "Second")
    expect(page.locator(".pg-error")).to_contain_text("session has ended")
    assert Receipt.objects.count() == 1


def test_a_viewer_has_no_playground(page, acme, viewer):
    log_in(page, "vic.viewer@acme.test")
    expect(page.get_by_role("link", name="Playground")).to_have_count(0)
    response = page.goto(f"/t/{acme.public_id}/playground/")
    assert response.status == 403
