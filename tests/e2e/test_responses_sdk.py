"""OpenAI's Responses API through the official `openai` SDK against the live server (only base URL and key
changed): plain and streamed, a function-tool round trip, continuation by previous_response_id, json_schema
output, retrieve, input items and delete, all billed exactly like chat."""

from __future__ import annotations

import json

import openai
import pytest

from billing.models import Receipt, Wallet
from billing.reconcile import find_discrepancies
from gateway.models import StoredResponse
from tests.e2e.conftest import settled

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
}


def test_a_plain_response_has_output_text_usage_costs_and_a_receipt(sdk, acme):
    raw = sdk.responses.with_raw_response.create(model="demo-chat", input="echo: Hello from Responses")
    response = raw.parse()
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == "Hello from Responses"
    assert response.output[0].type == "message" and response.output[0].content[0].type == "output_text"
    assert raw.headers["tollgate-version"] == "2026-12-01"
    assert raw.headers["x-ratelimit-remaining-requests"]
    usage = response.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    settled()
    receipt = Receipt.objects.get(public_id=usage.model_extra["receipt_id"])
    assert receipt.endpoint == "responses" and receipt.request_id == raw.headers["x-request-id"]
    assert receipt.completion_tokens == usage.output_tokens
    assert Wallet.objects.get(team=acme).balance_nusd == 10 * 10**9 - receipt.total_cost_nusd
    assert find_discrepancies() == []


def test_a_streamed_response_sends_the_typed_events_in_order(sdk, acme):
    events = list(sdk.responses.create(model="demo-chat", input="Tell me about toll roads", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert text and done.text == text
    final = events[-1].response
    assert final.output_text == text and final.id == events[0].response.id
    receipt = Receipt.objects.get(public_id=final.usage.model_extra["receipt_id"])
    assert receipt.streamed and receipt.completion_tokens == final.usage.output_tokens
    # the SDK's own stream helper accumulates the same response
    with sdk.responses.stream(model="demo-chat", input="echo: streamed helper") as stream:
        assert stream.get_final_response().output_text == "streamed helper"
    assert find_discrepancies() == []


def test_a_function_tool_round_trip_with_function_call_output(sdk, acme):
    first = sdk.responses.create(
        model="demo-chat", input="What is the weather in Paris?", tools=[WEATHER], tool_choice="required"
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    assert "city" in json.loads(call.arguments)
    second = sdk.responses.create(
        model="demo-chat",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"}],
        tools=[WEATHER],
    )
    assert second.status == "completed"
    assert 'The tool returned "Sunny, 24 C"' in second.output_text
    # the whole conversation went upstream again, as prompt tokens
    assert second.usage.input_tokens > first.usage.input_tokens


def test_previous_response_id_continues_the_stored_conversation(sdk, acme):
    first = sdk.responses.create(model="demo-chat", input="My name is Ada.", instructions="Be brief.")
    second = sdk.responses.create(model="demo-chat", input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens - 5
    stored = StoredResponse.objects.get(response_id=second.id)
    context = json.loads(stored.context)
    assert [item["type"] for item in context] == ["message", "message"]  # Ada's input, then the reply
    assert context[1]["content"][0]["text"] == first.output_text


def test_json_schema_output_is_valid_against_the_schema(sdk, acme):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    response = sdk.responses.create(
        model="demo-chat",
        input="A city, please",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    value = json.loads(response.output_text)
    assert isinstance(value["city"], str) and isinstance(value["population"], int)
    assert response.text.format.type == "json_schema"


def test_retrieve_list_input_items_and_delete(sdk, acme):
    created = sdk.responses.create(
        model="demo-chat",
        input=[
            {"role": "user", "content": "first"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
        metadata={"topic": "tests"},
    )
    fetched = sdk.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    assert fetched.usage.model_extra["receipt_id"] == created.usage.model_extra["receipt_id"]
    assert fetched.metadata == {"topic": "tests"}
    items = list(sdk.responses.input_items.list(created.id, order="asc"))
    assert [item.content[0].text for item in items] == ["first", "second"]
    assert all(item.id.startswith("msg_") for item in items)
    sdk.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="demo-chat", input="again", previous_response_id=created.id)


def test_store_false_keeps_nothing(sdk, acme):
    response = sdk.responses.create(model="demo-chat", input="forget me", store=False)
    assert response.store is False
    settled()
    assert not StoredResponse.objects.filter(response_id=response.id).exists()
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(response.id)
