"""Test scenarios against the live server with the official `openai` SDK: each makes the SDK raise what a real
failure makes it raise, and writes the receipt a real failure writes. A live key with the header is served
normally."""

from __future__ import annotations

import math
import time

import openai
import pytest
from django.db import OperationalError

from accounts.keys import mint_key
from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from gateway.providers import simulator
from tests.e2e.conftest import USD, settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
MSGS = [{"role": "user", "content": "Tell me about toll roads"}]


@pytest.fixture
def test_key(acme, owner) -> str:
    return mint_key(team=acme, name="sandbox", mode="test", created_by=owner).plaintext


@pytest.fixture
def client(base_url, test_key):
    with openai.OpenAI(base_url=base_url, api_key=test_key, max_retries=0, timeout=20) as sdk:
        yield sdk


def world(name: str) -> dict:
    return {"extra_headers": {"Tollgate-Test-Scenario": name}}


def receipt_of(exc: openai.APIStatusError | None = None, *, request_id: str | None = None) -> Receipt:
    settled()
    rid = request_id or exc.response.headers["x-request-id"]  # type: ignore[union-attr]
    return Receipt.objects.get(request_id=rid)


def wallet_untouched(team) -> None:
    wallet = Wallet.objects.get(team=team)
    assert (wallet.balance_nusd, wallet.held_nusd) == (10 * USD, 0)
    assert find_discrepancies() == []


def test_insufficient_balance_raises_a_402_status_error_and_writes_no_receipt(client, acme):
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="demo-chat", messages=MSGS, **world("insufficient_balance"))
    assert failed.value.status_code == 402
    assert failed.value.code == "insufficient_balance"
    assert failed.value.type == "insufficient_balance"
    assert failed.value.request_id == failed.value.response.headers["x-request-id"]
    settled()
    assert not Receipt.objects.exists()
    wallet_untouched(acme)


def test_rate_limited_raises_rate_limit_error_with_retry_after_and_the_headers(client, acme):
    with pytest.raises(openai.RateLimitError) as failed:
        client.chat.completions.create(model="demo-chat", messages=MSGS, **world("rate_limited"))
    window_left = 60 - time.time() % 60  # the real limiter's: the one-minute window's reset
    headers = failed.value.response.headers
    assert failed.value.status_code == 429 and failed.value.code == "rate_limit_exceeded"
    assert abs(int(headers["retry-after"]) - math.ceil(window_left)) <= 1
    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-reset-requests" in headers and "x-ratelimit-remaining-tokens" in headers
    settled()
    assert not Receipt.objects.exists()


def test_upstream_error_raises_a_502_status_error_with_a_failed_receipt(client, acme):
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="demo-chat", messages=MSGS, **world("upstream_error"))
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    receipt = receipt_of(failed.value)
    assert (receipt.status, receipt.error_code, receipt.total_cost_nusd, receipt.is_test) == (
        "failed",
        "upstream_error",
        0,
        True,
    )
    assert receipt.attempts == 2
    wallet_untouched(acme)


def test_timeout_is_a_504_after_a_short_delay(client, acme):
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="demo-chat", messages=MSGS, **world("timeout"))
    assert time.monotonic() - started >= simulator.SCENARIO_TIMEOUT_SECONDS
    assert failed.value.status_code == 504 and failed.value.code == "upstream_timeout"
    receipt = receipt_of(failed.value)
    assert (receipt.status, receipt.error_code) == ("failed", "upstream_timeout")


def test_a_client_with_a_shorter_timeout_raises_api_timeout_error_and_the_failed_receipt_is_still_written(
    base_url, test_key, acme
):
    sdk = openai.OpenAI(base_url=base_url, api_key=test_key, max_retries=0, timeout=0.3)
    with sdk, pytest.raises(openai.APITimeoutError):
        sdk.chat.completions.create(model="demo-chat", messages=MSGS, **world("timeout"))
    for _ in range(60):  # bounded: the server gives up on its "upstream" about a second later
        try:
            if Receipt.objects.exists():
                break
        except OperationalError:
            # pytest-django's in-memory SQLite shares one cache between threads: a read that meets the server's
            # write fails at once ("table is locked") instead of waiting. Look again.
            pass
        time.sleep(0.05)
    receipt = Receipt.objects.get()
    assert (receipt.status, receipt.error_code) == ("failed", "upstream_timeout")
    wallet_untouched(acme)


def test_stream_cut_breaks_the_stream_after_a_few_chunks_with_a_partial_receipt(client, acme):
    stream = client.chat.completions.create(
        model="demo-chat",
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
        **world("stream_cut"),
    )
    request_id = stream.response.headers["x-request-id"]
    received = []
    with pytest.raises(openai.APIError) as broke:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert broke.value.body["code"] == "upstream_error"  # type: ignore[index]
    assert "".join(received)  # output arrived before the break
    receipt = receipt_of(request_id=request_id)
    assert (receipt.status, receipt.is_test, receipt.streamed) == ("partial", True, True)
    assert receipt.completion_tokens > 0
    wallet_untouched(acme)


def test_slow_streams_paced_tokens(client, acme):
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="demo-chat",
        messages=MSGS,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        **world("slow"),
    )
    arrivals, usage = [], None
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
        usage = chunk.usage or usage
    assert arrivals[0] >= simulator.SLOW_LATENCY_MS / 1000 * 0.9  # the first token comes late
    assert arrivals[-1] - arrivals[0] >= 8 / simulator.SLOW_TOKENS_PER_SECOND  # and the rest one by one
    receipt = Receipt.objects.get(public_id=usage.model_extra["receipt_id"])
    assert receipt.status == "succeeded"


def test_the_model_suffix_works_for_clients_that_cannot_set_headers(client, acme):
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="demo-chat@scenario=upstream_error", messages=MSGS)
    assert failed.value.status_code == 502
    assert receipt_of(failed.value).model_requested == "demo-chat"


def test_an_unknown_scenario_raises_bad_request_naming_the_header(client, acme):
    with pytest.raises(openai.BadRequestError) as failed:
        client.chat.completions.create(model="demo-chat", messages=MSGS, **world("asteroid"))
    assert failed.value.code == "invalid_test_scenario"
    assert failed.value.param == "Tollgate-Test-Scenario"


@pytest.mark.parametrize("name", ["upstream_error", "rate_limited", "insufficient_balance"])
def test_a_live_key_with_the_header_is_served_and_charged_normally(sdk, acme, name):
    completion = sdk.chat.completions.create(model="demo-chat", messages=MSGS, max_tokens=8, **world(name))
    settled()
    receipt = Receipt.objects.get(public_id=completion.usage.model_extra["receipt_id"])
    assert (receipt.status, receipt.is_test) == ("succeeded", False)
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * USD - receipt.total_cost_nusd
