"""A misbehaving upstream on loopback: fallback, circuit breaking, zero charge on failure, partial charge
on client disconnect, keep-alives, and the ledger reconciling afterwards."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import orjson
import pytest

from billing.models import Hold, Receipt, Wallet
from billing.reconcile import find_discrepancies
from gateway.tokens import count_tokens
from tests.e2e.conftest import flaky_model, settled
from tests.live_server import closed_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MSGS = [{"role": "user", "content": "hello"}]


def _balance(team) -> int:
    return Wallet.objects.get(team=team).balance_nusd


@pytest.mark.parametrize("mode", ["status-500", "status-429", "status-503", "malformed", "hang"])
def test_a_failing_primary_falls_back_to_the_backup(sdk, upstream, acme, mode):
    model = flaky_model(upstream, mode, timeout=0.5, read_timeout=0.5)
    completion = sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8)
    routing = completion.model_extra["routing"]
    assert routing["provider"] == "simulator"
    assert routing["attempts"] == (2 if mode == "hang" else 3)  # a timeout is not retried on the same route
    settled()
    receipt = Receipt.objects.get(public_id=completion.usage.model_extra["receipt_id"])
    assert receipt.attempts == routing["attempts"] and receipt.provider == "simulator"
    assert find_discrepancies() == []


def test_connection_refused_falls_back(sdk, upstream, acme):
    model = flaky_model(upstream, "ok", base_url=f"http://127.0.0.1:{closed_port()}/v1")
    completion = sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8)
    assert completion.model_extra["routing"]["provider"] == "simulator"


def test_a_request_error_upstream_is_not_retried_elsewhere(sdk, upstream, acme):
    model = flaky_model(upstream, "status-400")
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8)
    assert upstream.count("status-400") == 1


@pytest.mark.parametrize("mode", ["status-500", "status-429", "hang"])
def test_a_stream_that_fails_before_its_first_chunk_falls_back(sdk, upstream, acme, mode):
    model = flaky_model(upstream, mode, timeout=0.5, read_timeout=0.5)
    stream = sdk.chat.completions.create(
        model=model, messages=MSGS, max_tokens=8, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].model_extra["routing"]["provider"] == "simulator"


def test_when_every_route_fails_it_is_502_and_costs_nothing(sdk, upstream, acme):
    model = flaky_model(upstream, "status-500", backup=False)
    before = _balance(acme)
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8)
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "upstream_error"
    receipt = Receipt.objects.get()
    assert receipt.status == "failed" and receipt.total_cost_nusd == 0
    assert receipt.request_id == failed.value.response.headers["x-request-id"]
    assert _balance(acme) == before
    assert Wallet.objects.get(team=acme).held_nusd == 0
    assert find_discrepancies() == []


def test_a_timeout_with_no_backup_is_504(sdk, upstream, acme):
    model = flaky_model(upstream, "hang", backup=False, timeout=0.3, read_timeout=0.3)
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8)
    assert failed.value.status_code == 504
    assert failed.value.body["code"] == "upstream_timeout"


def test_the_breaker_opens_and_then_requests_skip_the_broken_route(sdk, upstream, acme, settings):
    settings.GATEWAY_BREAKER_FAILURES = 2
    settings.GATEWAY_ROUTE_RETRIES = 0
    model = flaky_model(upstream, "status-500", backup=False)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8)
    assert upstream.count("status-500") == 2
    with pytest.raises(openai.APIStatusError) as unavailable:
        sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=8)
    assert unavailable.value.status_code == 503
    assert unavailable.value.body["code"] == "model_unavailable"
    assert upstream.count("status-500") == 2  # the open breaker kept the upstream out of it


def test_with_a_backup_an_open_breaker_routes_straight_to_it(sdk, upstream, acme, settings):
    settings.GATEWAY_BREAKER_FAILURES = 1
    settings.GATEWAY_ROUTE_RETRIES = 0
    model = flaky_model(upstream, "status-500")
    assert sdk.chat.completions.create(model=model, messages=MSGS).model_extra["routing"]["attempts"] == 2
    assert sdk.chat.completions.create(model=model, messages=MSGS).model_extra["routing"]["attempts"] == 1
    assert upstream.count("status-500") == 1


@pytest.mark.parametrize("mode", ["truncated", "drop-c6", "malformed"])
def test_a_stream_broken_after_delivering_output_charges_what_was_delivered(sdk, upstream, acme, mode):
    """Defect 12: the client keeps what it received, so it pays for it (as a client disconnect does)."""
    model = flaky_model(upstream, mode)
    before = _balance(acme)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in sdk.chat.completions.create(model=model, messages=MSGS, stream=True):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received).startswith("word0 ")
    receipt = Receipt.objects.get()
    assert receipt.status == "partial" and receipt.completion_tokens == count_tokens("".join(received))
    assert receipt.total_cost_nusd > 0 and _balance(acme) == before - receipt.total_cost_nusd
    assert Hold.objects.get().status == "settled"
    assert find_discrepancies() == []


def test_a_stream_broken_before_any_output_costs_nothing(sdk, upstream, acme):
    model = flaky_model(upstream, "drop-c1", backup=False)  # the role chunk, then the connection drops
    before = _balance(acme)
    with pytest.raises(openai.APIError):
        for _chunk in sdk.chat.completions.create(model=model, messages=MSGS, stream=True):
            pass
    receipt = Receipt.objects.get()
    assert receipt.status == "failed" and receipt.total_cost_nusd == 0
    assert _balance(acme) == before
    assert find_discrepancies() == []


def test_slow_streams_get_keep_alive_comments(base_url, live_key, upstream, acme, settings):
    settings.GATEWAY_KEEPALIVE_SECONDS = 0.05
    model = flaky_model(upstream, "ok-c3-d300-l300", read_timeout=2)

    async def read() -> bytes:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{base_url}/chat/completions",
                headers={"Authorization": f"Bearer {live_key}"},
                json={"model": model, "messages": MSGS, "stream": True},
            ) as response,
        ):
            assert response.status == 200
            return await response.read()

    raw = asyncio.run(read())
    assert raw.startswith(b": keep-alive\n\n")  # upstream's first byte took 300 ms
    assert b": keep-alive\n\n" in raw.split(b"data: ", 2)[2]  # and between chunks
    assert raw.endswith(b"data: [DONE]\n\n")


def test_a_client_disconnect_cancels_upstream_and_pays_for_what_was_produced(base_url, live_key, upstream, acme):
    model = flaky_model(upstream, "ok-c40-d50", read_timeout=2)
    before = _balance(acme)

    async def read_a_little() -> int:
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{base_url}/chat/completions",
                headers={"Authorization": f"Bearer {live_key}"},
                json={"model": model, "messages": MSGS, "stream": True},
            )
            seen = 0
            async for line in response.content:
                if line.startswith(b"data: {"):
                    seen += 1
                    if seen == 4:
                        break
            response.close()  # drop the connection mid-stream
            return seen

    assert asyncio.run(read_a_little()) == 4
    assert upstream.wait_for_disconnect(5)
    deadline = time.monotonic() + 5
    while not Receipt.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    receipt = Receipt.objects.get()
    assert receipt.status == "partial"
    assert 0 < receipt.completion_tokens < 40
    assert receipt.total_cost_nusd > 0
    assert _balance(acme) == before - receipt.total_cost_nusd
    assert Wallet.objects.get(team=acme).held_nusd == 0
    assert find_discrepancies() == []


def test_bad_input_to_the_consumer_is_an_openai_error_never_a_500(base_url, live_key, acme, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1000

    async def send(body: bytes, method: str = "POST"):
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                f"{base_url}/chat/completions",
                data=body,
                headers={"Authorization": f"Bearer {live_key}", "Content-Type": "application/json"},
            ) as response,
        ):
            return response.status, response.headers, orjson.loads(await response.read())

    for body, status in (
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (b'{"model": "demo-chat"}', 400),
        (b'{"model": "demo-chat", "messages": [], "x": "' + b"y" * 2000 + b'"}', 413),
    ):
        got, headers, envelope = asyncio.run(send(body))
        assert got == status, (body[:40], envelope)
        assert envelope["error"]["message"] and envelope["request_id"] == headers["x-request-id"]
    got, _headers, envelope = asyncio.run(send(b"", method="PUT"))
    assert got == 405


# --- usage an upstream reports that cannot be believed (defect 3) -----------------------------------------


@pytest.mark.parametrize("mode", ["usage-negative", "usage-huge", "usage-text"])
def test_unbelievable_usage_is_counted_locally_and_every_request_ends_with_a_receipt(sdk, upstream, acme, mode):
    model = flaky_model(upstream, mode, backup=False)
    before = _balance(acme)
    completion = sdk.chat.completions.create(model=model, messages=MSGS, max_tokens=16)
    settled()
    receipt = Receipt.objects.get(public_id=completion.usage.model_extra["receipt_id"])  # the receipt it names exists
    text = completion.choices[0].message.content
    assert receipt.status == "succeeded" and receipt.completion_tokens == count_tokens(text)
    assert 0 < receipt.prompt_tokens < 100 and receipt.total_cost_nusd <= receipt.hold_amount_nusd
    assert _balance(acme) == before - receipt.total_cost_nusd
    assert not Hold.objects.filter(status="open").exists()

    chunks = list(
        sdk.chat.completions.create(
            model=model, messages=MSGS, max_tokens=16, stream=True, stream_options={"include_usage": True}
        )
    )
    settled()
    usage = chunks[-1].usage
    streamed = Receipt.objects.get(public_id=usage.model_extra["receipt_id"])
    produced = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.completion_tokens == count_tokens(produced) == usage.completion_tokens
    assert not Hold.objects.filter(status="open").exists()
    assert find_discrepancies() == []


def test_a_200_that_carries_an_error_falls_back_to_the_backup(sdk, upstream, acme):
    model = flaky_model(upstream, "error-200")
    assert sdk.chat.completions.create(model=model, messages=MSGS).model_extra["routing"]["provider"] == "simulator"
    chunks = list(sdk.chat.completions.create(model=model, messages=MSGS, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    settled()
    assert set(Receipt.objects.values_list("status", flat=True)) == {"succeeded"}


def test_a_200_that_carries_an_error_with_no_backup_is_502_and_costs_nothing(sdk, upstream, acme):
    model = flaky_model(upstream, "error-200", backup=False)
    before = _balance(acme)
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.chat.completions.create(model=model, messages=MSGS)
    assert exc.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as exc:
        list(sdk.chat.completions.create(model=model, messages=MSGS, stream=True))
    assert exc.value.status_code == 502
    assert _balance(acme) == before and set(Receipt.objects.values_list("status", flat=True)) == {"failed"}
    assert find_discrepancies() == []
