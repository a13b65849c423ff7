"""A streamed chat completion with `store: true` (or a team that stores completions) is stored when the
stream settles, and the SDK retrieves it: the same text or tool calls, finish reason and costs."""

from __future__ import annotations

import pytest

from billing.models import Receipt

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
        },
    }
]


def stream(sdk, **extra) -> list:
    return list(
        sdk.chat.completions.create(
            model="demo-chat", max_tokens=30, stream=True, stream_options={"include_usage": True}, **extra
        )
    )


def test_a_stored_stream_is_retrieved_with_its_text_finish_reason_and_usage(sdk):
    chunks = stream(
        sdk, messages=[{"role": "user", "content": "Tell a story"}], store=True, metadata={"topic": "story"}
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = next(c.choices[0].finish_reason for c in reversed(chunks) if c.choices and c.choices[0].finish_reason)
    usage = chunks[-1].usage

    stored = sdk.chat.completions.retrieve(chunks[0].id)
    assert stored.id == chunks[0].id and stored.model == "demo-chat"
    assert stored.model_extra["stored"] is True
    assert stored.choices[0].message.content == text and text
    assert stored.choices[0].finish_reason == finish
    assert stored.usage.completion_tokens == usage.completion_tokens
    assert stored.usage.model_extra["total_cost_usd"] == usage.model_extra["total_cost_usd"]
    assert stored.usage.model_extra["receipt_id"] == usage.model_extra["receipt_id"]
    assert Receipt.objects.get(public_id=usage.model_extra["receipt_id"]).streamed


def test_a_stored_stream_of_tool_calls_keeps_the_joined_calls(sdk):
    chunks = stream(
        sdk,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=WEATHER,
        tool_choice="required",
        store=True,
    )
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )

    stored = sdk.chat.completions.retrieve(chunks[0].id)
    call = stored.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == arguments and call.id.startswith("call_")
    assert stored.choices[0].message.content is None
    assert stored.choices[0].finish_reason == "tool_calls"


def test_the_team_setting_stores_streams_too_and_without_it_only_metadata_is_kept(sdk, acme):
    plain = stream(sdk, messages=[{"role": "user", "content": "Hello"}])
    assert sdk.chat.completions.retrieve(plain[0].id).model_extra["stored"] is False

    acme.store_completions = True
    acme.save(update_fields=["store_completions"])
    from gateway import teams

    teams.clear()  # the per-process cache of the setting (a few seconds in production)
    kept = stream(sdk, messages=[{"role": "user", "content": "Hello"}])
    stored = sdk.chat.completions.retrieve(kept[0].id)
    assert stored.model_extra["stored"] is True
    assert stored.choices[0].message.content == "".join(c.choices[0].delta.content or "" for c in kept if c.choices)
