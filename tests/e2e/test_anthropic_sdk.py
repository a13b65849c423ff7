"""Anthropic's Messages API through the official `anthropic` SDK against the live server (only base URL and key
changed): create, stream with text and tool use, count_tokens, errors through its exception classes; on the
simulator (translated onto chat) and on an Anthropic route (passed through natively)."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest

from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from tests.e2e.conftest import anthropic_model, settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
FIXTURES = Path(__file__).parent.parent / "gateway" / "fixtures" / "anthropic"
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
}


def test_messages_create_with_usage_costs_and_a_receipt(claude, acme):
    raw = claude.messages.with_raw_response.create(
        model="demo-chat",
        max_tokens=50,
        system="You are terse.",
        messages=[{"role": "user", "content": "echo: Hello Claude clients"}],
    )
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text == "Hello Claude clients"
    assert message.stop_reason == "end_turn" and message.model == "demo-chat"
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert raw.headers["tollgate-version"]
    settled()
    receipt = Receipt.objects.get(public_id=message.usage.model_extra["receipt_id"])
    assert receipt.endpoint == "messages"
    assert (receipt.prompt_tokens, receipt.completion_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * 10**9 - receipt.total_cost_nusd
    assert find_discrepancies() == []


def test_messages_stream_with_text(claude, acme):
    with claude.messages.stream(
        model="demo-chat", max_tokens=40, messages=[{"role": "user", "content": "Tell me a story"}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text and final.content[0].text == text
    usage = events[-2].usage  # the last message_delta carries the priced usage and the receipt
    receipt = Receipt.objects.get(public_id=usage.model_extra["receipt_id"])
    assert receipt.streamed and receipt.completion_tokens == final.usage.output_tokens == usage.output_tokens
    assert find_discrepancies() == []


def test_messages_stream_with_tool_use_and_the_tool_result_round_trip(claude, acme):
    with claude.messages.stream(
        model="demo-chat",
        max_tokens=200,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = [block for block in final.content if block.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input["city"], str)
    reply = claude.messages.create(
        model="demo-chat",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [block.model_dump() for block in final.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
        ],
    )
    assert 'The tool returned "Sunny"' in reply.content[0].text


def test_count_tokens_charges_nothing(claude, acme):
    before = Wallet.objects.get(team=acme).balance_nusd
    count = claude.messages.count_tokens(model="demo-chat", messages=[{"role": "user", "content": "Hello there"}])
    assert count.input_tokens > 0
    assert Wallet.objects.get(team=acme).balance_nusd == before
    assert not Receipt.objects.exists()


def test_errors_arrive_as_the_sdks_exception_classes(claude, live, acme):
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert missing.value.type == "not_found_error" and missing.value.request_id.startswith("req_")
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="demo-chat", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert bad.value.type == "invalid_request_error"
    stranger = anthropic.Anthropic(base_url=live.url, api_key="tg_live_not-a-key", max_retries=0)
    with stranger, pytest.raises(anthropic.AuthenticationError) as refused:
        stranger.messages.create(model="demo-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert refused.value.type == "authentication_error"
    Wallet.objects.filter(team=acme).update(balance_nusd=0)  # (behind the ledger's back: this test ends here)
    with pytest.raises(anthropic.PaymentRequiredError) as broke:
        claude.messages.create(model="demo-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert broke.value.type == "billing_error"


def test_an_anthropic_route_is_passed_through_natively(claude, acme, upstream):
    model = anthropic_model(upstream)
    upstream.script("/v1/messages", (FIXTURES / "message_tool_use.json").read_bytes())
    message = claude.messages.create(
        model=model,
        max_tokens=300,
        tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"},
    )
    (seen,) = upstream.requests
    assert seen.body["model"] == "claude-sonnet-4-5" and seen.body["tools"][0]["input_schema"]
    assert seen.body["tools"][1] == {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    assert seen.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    assert seen.headers["x-api-key"] == "sk-ant-upstream"
    assert message.content[1].type == "tool_use" and message.content[1].input == {"city": "Paris", "unit": "celsius"}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (472, 91)
    settled()
    receipt = Receipt.objects.get(public_id=message.usage.model_extra["receipt_id"])
    assert receipt.total_cost_nusd == 472 * 3_000 + 91 * 15_000
    assert find_discrepancies() == []


def test_an_anthropic_stream_is_passed_through_natively(claude, acme, upstream):
    model = anthropic_model(upstream)
    upstream.script("/v1/messages", (FIXTURES / "stream_tool_use.sse").read_bytes())
    with claude.messages.stream(
        model=model, max_tokens=300, tools=[WEATHER], messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.id.startswith("msg_") and final.model == model
    assert final.content[0].text == "Okay, let me check."
    assert final.content[1].input == {"city": "San Francisco", "unit": "fahrenheit"}
    delta = next(e for e in events if e.type == "message_delta")
    receipt = Receipt.objects.get(public_id=delta.usage.model_extra["receipt_id"])
    assert receipt.prompt_tokens == 472 and receipt.completion_tokens == final.usage.output_tokens > 0
    assert find_discrepancies() == []
